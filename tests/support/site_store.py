"""A small store the way the pipeline writes one, for the page tests: two runs and a comparison, real files.

SFT run (complete, one checkpoint, SFT losses) -> RL run started from its checkpoint (failed, two complete
checkpoints and one whose upload never finished, RL metrics, two evaluations with results and samples, one
evaluation still uploading, a log) -> a comparison with a real PNG, a table and a report. Plus what old or foreign
writers leave: a config.yaml and a command.json written raw (unredacted) with a secret in them.
"""

from __future__ import annotations

import json
from pathlib import Path

from stable_verl.artifacts import ArtifactStore, ComparisonLayout, RunLayout

SFT = "sft-stepwise-0000aaaa"
RL = "rl-minirl-0000bbbb"
CMP = "coldstart-0000cccc"
#: A secret in the environment (HF_TOKEN) and one that only a config file holds (under a credential key).
ENV_SECRET = "hf_abcdefghijklmnopqrstuvwxyz012345"
FILE_SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def _folder(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


def _png(path: Path) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2), dpi=50)
    fig.subplots().plot([0, 1, 2], [0.2, 0.5, 0.4])
    fig.savefig(path)
    return path.read_bytes()


def populate(store: ArtifactStore, tmp: Path) -> None:
    sft = RunLayout(store, SFT)
    sft.write_run({"kind": "sft", "name": "stepwise", "status": "complete", "total_steps": 4, "latest_step": 4})
    sft.write_metrics([{"step": s, "train/loss": 2.0 / s, "val/loss": 2.2 / s} for s in range(1, 5)])
    sft.upload_checkpoint(_folder(tmp / "sft4", {"huggingface/model.safetensors": b"w" * 64, "data.pt": b"d"}), 4)

    rl = RunLayout(store, RL)
    rl.write_run(
        {"kind": "rl", "name": "minirl", "status": "failed", "total_steps": 6, "attempts": 2}
        | {"parent_checkpoint": sft.checkpoint(4), "error": "VerlRunError: verl rl exited with code -9"}
    )
    config = f"rl:\n  recipe: minirl\n  lr: 1.0e-06\naws_secret_access_key: {FILE_SECRET}\nnote: {ENV_SECRET}\n"
    store.write_bytes(rl.config_yaml, config.encode())  # raw: as an old or foreign writer left it
    command = {"overrides": ["python", "-m", "verl.trainer.main_ppo", f"+hf.token_in_url=https://u:{ENV_SECRET}@h"]}
    store.write_bytes(rl.command_json, json.dumps(command).encode())
    rows = [
        {
            "step": s,
            "reward/acc": 0.1 * s,
            "actor/train_infer_kl_k3": 10.0**-s,
            "actor/entropy_per_token": 1.0 - 0.1 * s,
            "response_length/mean": 20.0 + s,
            "actor/pg_loss": -0.1 * s,
        }
        for s in range(1, 7)
    ]
    rl.write_metrics(rows)
    for step in (2, 4):
        rl.upload_checkpoint(_folder(tmp / f"rl{step}", {"actor/model world.pt": bytes([step]) * 32}), step)
    store.write_bytes(f"{rl.checkpoint(6)}/actor/model world.pt", b"half")  # upload cut short: no manifest
    for step, score in ((2, 0.25), (4, 0.5)):
        results = {"avg@4": score, "avg@4_stderr": 0.05, "format_rate": 0.9, "num_prompts": 2, "k": 4}
        results["model"] = "/somewhere/on/the/machine/huggingface"
        samples = "".join(
            json.dumps({"prompt": f"1 + {i} <b>=</b>?", "ground_truth": str(1 + i), "response": "#### 2", "score": 1.0})
            + "\n"
            for i in range(3)
        )
        files = {"results.json": json.dumps(results), "samples.jsonl": samples}
        store.put_dir(_folder(tmp / f"ev{step}", files), rl.eval_dir(step, "bench_id"), metadata={"step": step})
    store.write_json(rl.eval_results(6, "bench_id"), {"avg@4": 0.75})  # evaluation still uploading
    store.write_text(f"{rl.prefix}/logs/attempt-1.log", "step:1 - loss:1.0\n")

    report = _folder(
        tmp / "report",
        {
            "report.md": "# cold start\n\n![curves](plots/curves.png)\n",
            "table.csv": "init,benchmark,final_mean\nstepwise,bench_id,0.5\n",
            "grid.json": "{}",
        },
    )
    (report / "plots").mkdir()
    _png(report / "plots" / "curves.png")
    store.put_dir(report, ComparisonLayout(store, CMP).prefix, metadata={"runs": [rl.uri(), "s3://elsewhere/runs/x"]})
