"""What an RL team brings, written here the way they would have it (shared by the user-input integration tests).

- a Hugging Face MoE folder: a tiny Qwen3-MoE saved with ``save_pretrained``, its tokenizer with a chat template;
- RL prompts and benchmarks in verl's RL schema with ``data_source: openai/gsm8k`` (the arithmetic task's answers
  are already GSM8K's ``#### n``);
- a reward given by file path, without ``**kwargs``, that defers to verl's own ``default_compute_score`` and adds a
  key of its own (``chars``), so its metrics are told apart from verl's default's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from stable_verl.artifacts import ArtifactStore
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model

REWARD = '''
from verl.utils.reward_score import default_compute_score


def score(data_source, solution_str, ground_truth, extra_info=None):
    """The team's reward: verl's GSM8K scorer, and a length note kept in results.json."""
    right = default_compute_score(data_source, solution_str, ground_truth)
    return {"score": float(right), "chars": float(len(solution_str))}
'''


def save_user_model(folder: Path, tokenizer) -> Path:
    """The user's model folder (``save_pretrained`` weights, config, tokenizer with its chat template)."""
    return save_tiny_model(folder, TinyModelSpec(), tokenizer, seed=5)


def as_gsm8k(split: Path, dest: Path) -> Path:
    """A generated RL split as a user's GSM8K-form file (``data_source: openai/gsm8k``) at ``dest``."""
    pd.read_parquet(split).assign(data_source="openai/gsm8k").to_parquet(dest)
    return dest


def write_reward(folder: Path) -> Path:
    """The user's reward file, ``folder/my_reward.py`` (function ``score``)."""
    path = folder / "my_reward.py"
    path.write_text(REWARD)
    return path


CLI = str(Path(sys.executable).parent / "stable-verl")


def run_coldstart_cli(tmp_path: Path, config: dict, **env: str) -> tuple[ArtifactStore, list[str], list[str]]:
    """``stable-verl run coldstart`` on ``config`` (written as YAML under ``tmp_path``, its store at
    ``tmp_path/store``), as a user runs it; asserts exit 0 and returns the store with its SFT and RL run ids."""
    (tmp_path / "coldstart.yaml").write_text(json.dumps(config))  # JSON is YAML
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), **env}
    done = subprocess.run(
        [CLI, "run", "coldstart", "--config", str(tmp_path / "coldstart.yaml")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = ArtifactStore(str(tmp_path / "store"))
    runs = store.ls("runs")
    return store, sorted(r for r in runs if r.startswith("sft-")), sorted(r for r in runs if r.startswith("rl-"))
