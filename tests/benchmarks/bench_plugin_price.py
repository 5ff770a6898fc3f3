"""The price of our verl plugins: one RL step with them vs with verl's built-ins, same data, seed and work.

* **ours**: what the RL stage of recipe ``minirl`` runs (``verl_command.ppo_overrides``): the ``stable_sync``
  trainer (at verl's replay-buffer poll interval, :data:`VERLS_POLL`), the routing FSDP engine and worker
  subclasses (routing replay off, as in ``minirl``), the ``minirl`` advantage estimator and the ``minirl`` loss
  with its diagnostics, stable-verl's verl plugin loaded by its entry point.
* **base**: verl's ``sync`` trainer, its ``FSDPEngineWithLMHead`` and ``ActorRolloutRefWorker``, its ``grpo``
  estimator without the std division (the same advantages) and its ``vanilla`` loss, with the same aggregation,
  clip ratios and rollout correction (token IS weights, as ``minirl`` asks verl for). verl's entry-point discovery
  is off and only the CPU platform is loaded (``stable_verl.verl_ext.cpu.verl_plugin.PLATFORM_ONLY_ENV``).

Both runs load the CPU platform and vLLM's CPU shims, start from the tiny base MoE on the same prompts with the same
seed, and sample every response to the full length (``rollout.ignore_eos``), so each step does the same work
whatever the weights became. Runs go in pairs, ours first in one pair and base first in the next, so linear drift
of the machine cancels; a run's figure is the median of verl's ``timing_s/<phase>`` over its steps after the first
(warm-up), a pair's ratio is ours / base, and each figure is the median ratio over pairs with the lowest and highest.

* ``plugin_price_rl_step``: ``timing_s/step`` (rollout, old log-probs, advantages, update, weight sync).
* ``plugin_price_update_actor``: ``timing_s/update_actor`` alone, where the loss and its diagnostics run (the
  rollout dominates a step and could hide them).

About 75 s of verl/vLLM start-up per run plus ~2.5 s a step (8 prompts x 4 responses x 48 tokens): ~7 min in
all on the 2-core machine.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from stable_verl.config import cpu_env
from stable_verl.config.stages import RLStage
from stable_verl.launch.runner import run_streaming
from stable_verl.models.tiny import TinyModelSpec
from stable_verl.tasks.datasets import TaskSpec
from stable_verl.train import verl_command
from stable_verl.train.assets import prepare_assets
from stable_verl.verl_ext.cpu.verl_plugin import PLATFORM_ONLY_ENV
from tests.benchmarks.common import Figure

STEPS = 12  # per run; step 1 is warm-up (~13 s: first rollout, first update), steps 2..12 are timed
PAIRS = 2
SEED = 0
PHASES = {"plugin_price_rl_step": "timing_s/step", "plugin_price_update_actor": "timing_s/update_actor"}
TARGET = 1.10
RUN_TIMEOUT_S = 600

COMMON = ["actor_rollout_ref.rollout.ignore_eos=True"]  # every response max_response_length tokens: equal work
# Ours polls the replay buffer every 0.2 s, verl's sync trainer every 2 s: at verl's interval in both arms the figure
# prices the plugins' work, not the shorter wait (which alone made ours faster: a step is ~2 s of rollout here).
VERLS_POLL = "+trainer.v1.sampler.poll_interval_s=2.0"
# verl's built-ins with MiniRL's estimator, aggregation and clips: grpo without std = group-mean advantages.
BASE_RECIPE = ["norm_adv_by_std=false", "loss_agg_mode=seq-mean-token-sum", "dual_clip=3.0"]
# Present in one arm's metrics only: the minirl loss's and the stable_sync trainer's keys, and the vanilla loss's.
OURS_ONLY = ("actor/tis/weight_mean", "actor/entropy_per_token")
BASE_ONLY = ("actor/pg_clipfrac",)


def _stages() -> dict[str, RLStage]:
    """The two arms' RL stages: recipe ``minirl``, and verl's built-ins with the same rollout correction."""
    settings = {"total_steps": STEPS, "save_freq": -1, "timeout_s": RUN_TIMEOUT_S}
    ours = RLStage(recipe="minirl", overrides=[*COMMON, VERLS_POLL], **settings)
    rollout_correction = [o for o in ours.recipe_config.overrides() if o.startswith("algorithm.rollout_correction.")]
    assert rollout_correction, "recipe minirl no longer asks verl for its rollout correction"
    base_overrides = [*COMMON, *rollout_correction, "trainer.v1.trainer_mode=sync"]
    base = RLStage(recipe="grpo", recipe_overrides=BASE_RECIPE, overrides=base_overrides, **settings)
    return {"ours": ours, "base": base}


def _env(arm: str, metrics_file: Path) -> dict[str, str]:
    env = cpu_env.verl_env()
    for key in PLATFORM_ONLY_ENV:
        env.pop(key, None)  # ours: verl's default discovery loads the stable_verl entry point
    if arm == "base":
        env.update(PLATFORM_ONLY_ENV)
    env["VERL_FILE_LOGGER_PATH"] = str(metrics_file)
    return env


def _one_run(arm: str, stage: RLStage, data: dict[str, Path], model_dir: Path, root: Path) -> dict[str, float]:
    """One verl run of ``arm``; per phase, the median of its timing over steps 2..STEPS."""
    run_dir = root / arm
    run_dir.mkdir(parents=True)
    metrics_file = run_dir / "metrics.jsonl"
    overrides = verl_command.ppo_overrides(
        stage, model_dir, data["rl_train"], data["rl_val"], run_dir / "checkpoints", seed=SEED
    )
    argv = verl_command.ppo_argv(overrides)
    run_streaming(argv, run_dir / "verl.log", _env(arm, metrics_file), RUN_TIMEOUT_S, cwd=run_dir, name=arm)
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    steps = {row["step"]: row["data"] for row in rows}
    assert sorted(steps) == list(range(1, STEPS + 1)), f"{arm}: steps {sorted(steps)}"
    last = steps[STEPS]
    present, absent = (OURS_ONLY, BASE_ONLY) if arm == "ours" else (BASE_ONLY, OURS_ONLY)
    wrong = [k for k in present if k not in last] + [k for k in absent if k in last]
    assert not wrong, f"{arm}: not the arm it claims to be ({wrong} in the wrong place; log {run_dir / 'verl.log'})"
    return {name: statistics.median(steps[s][key] for s in range(2, STEPS + 1)) for name, key in PHASES.items()}


def run() -> list[Figure]:
    stages = _stages()
    ratios: dict[str, list[float]] = {name: [] for name in PHASES}
    with tempfile.TemporaryDirectory(prefix="bench-plugin-price-") as tmp:
        root = Path(tmp)
        assets = prepare_assets(root / "work", TinyModelSpec(), TaskSpec(), SEED)
        for pair in range(PAIRS):
            order = ("ours", "base") if pair % 2 == 0 else ("base", "ours")
            times = {
                arm: _one_run(arm, stages[arm], assets.data, assets.model_dir, root / f"pair{pair}") for arm in order
            }
            for name in PHASES:
                ratios[name].append(times["ours"][name] / times["base"][name])
    return [
        Figure(name, statistics.median(values), "<=", TARGET, (min(values), max(values)))
        for name, values in ratios.items()
    ]
