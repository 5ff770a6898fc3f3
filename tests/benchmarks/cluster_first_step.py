"""Submit-to-first-step of one RL stage, local subprocess vs Ray Job on a two-node cluster, side by side.

    python tests/benchmarks/cluster_first_step.py [steps] [rounds]

Starts the test cluster of tests/support/ray_cluster.py, then runs the same small RL stage (the default
RLFlowParams, ``steps`` steps, a fresh local store each) locally and as a Ray Job, ``rounds`` times in alternating
order, and prints per run: submit -> first step, the stage's wall time and verl's. Not part of ``make bench``: it starts
Ray and verl (minutes).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stable_verl.config.params import RLFlowParams
from stable_verl.launch.progress import progress_printer
from stable_verl.train.assets import prepare_assets
from stable_verl.train.stages import run_rl_stage
from tests.support.ray_cluster import start_cluster


def one_stage(params: RLFlowParams) -> dict[str, float]:
    marks: dict[str, float] = {}

    def echo(line: str) -> None:
        if "verl started" in line:
            marks.setdefault("submitted", time.monotonic())

    def step(n: int) -> None:
        marks.setdefault(f"step{n}", time.monotonic())

    on_line = progress_printer("rl", params.rl.total_steps, echo=lambda _: None, on_step=step)
    t0 = time.monotonic()
    result = run_rl_stage(params, params.store.open(), echo=echo, on_line=on_line)
    wall = time.monotonic() - t0
    return {"first_step_s": marks["step1"] - marks["submitted"], "wall_s": wall, "verl_s": result.verl_s}


def main(steps: int = 2, rounds: int = 2) -> int:
    root = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    cluster = start_cluster(root / "ray-logs")
    try:
        base = [f"workdir={root / 'work'}", f"rl.total_steps={steps}", "rl.format_bonus=0.1"]
        p = RLFlowParams.from_config(None, base)
        prepare_assets(Path(p.workdir).resolve(), p.model, p.task, p.seed)
        launchers = {
            "local": [],
            "ray_job": ["launcher.kind=ray_job", f"launcher.ray_address={cluster.dashboard_url}"],
        }
        rows = []
        for n in range(rounds):
            for kind in list(launchers)[:: 1 if n % 2 == 0 else -1]:
                store = f"store.root={root / f'store-{kind}-{n}'}"
                rows.append((kind, one_stage(RLFlowParams.from_config(None, [*base, *launchers[kind], store]))))
                print(kind, rows[-1][1], flush=True)
        print(f"\n| launcher | submit -> step 1 (s) | stage wall (s) | verl (s) |  ({steps} steps)")
        for kind, r in rows:
            print(f"| {kind} | {r['first_step_s']:.1f} | {r['wall_s']:.1f} | {r['verl_s']:.1f} |")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))
