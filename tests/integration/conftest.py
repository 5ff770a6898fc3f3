"""Session fixtures for the integration tests.

* ``coldstart_e2e``: one cold-start comparison run end to end (coldstart_e2e.py) with S3 faults injected, used by
  test_coldstart_flow.py only, with ``e2e_report`` (its clean init's RL stage, read back through the store).
* ``small_regime`` / ``sft_model``: the verl run tests' own small SFT run of the tiny MoE (the regime pinned here so
  no YAML edit moves it), a tracked stage in a local store of its own, without Prefect or S3, so a failure of the
  e2e flow does not turn the MiniRL, routing and evaluation tests into errors. :func:`run_rl` runs one tracked RL
  stage from it and reads it back through the store.
* ``minirl_run``: the MiniRL off-policy run on that model (``minirl_rows``, ``rl_checkpoint``).
* ``tiny_grid``: the stability-grid flow from that SFT run, with two cells (CISPO at N = 1, MiniRL + R2 at N = 2)
  whose runs the CISPO and R2 tests read back; one verl run serves the grid test and a method test.
* ``cluster`` / ``two_gpu_cluster``: a two-node Ray cluster of the module's own (tests/support/ray_cluster.py), for
  the Ray Jobs tests; its worker declares 1 logical GPU, or 2 (two RL stages at once).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flows.stability_grid import stability_grid_flow, summary
from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.config.params import RLFlowParams, SFTFlowParams, StabilityGridParams
from stable_verl.config.stages import RLStage
from stable_verl.launch import procs
from stable_verl.tasks.datasets import TaskSpec
from stable_verl.train.assets import planned_assets
from stable_verl.train.model_source import ensure_hf_model
from stable_verl.train.stages import fetch_checkpoint, run_rl_stage, run_sft_stage
from stable_verl.verl_ext.expert_audit import ENV as AUDIT_ENV
from tests.faults.s3_proxy import CLEAN, S3FaultProxy
from tests.support.coldstart_e2e import CI_FAULTS, E2E, run_e2e
from tests.support.ray_cluster import LocalRayCluster, start_cluster

E2E_TEACHER = "stepwise"  # the e2e init whose clean RL stage ``e2e_report`` summarises

# The verl run tests' small regime, every value they rely on written out.
COMMON_SETTINGS = [
    "seed=0",
    "model.kind=moe",  # tiny Qwen3-MoE, 8 experts top-2: the routing tests need the routers
    "model.num_layers=2",
    "task.difficulty=1",
    "task.max_operand=null",  # 0..19
    "task.n_rl_train=64",
    "task.n_sft=256",
    "task.n_bench=32",
]
SFT_SETTINGS = [
    "sft.teacher=stepwise",
    "sft.steps=40",  # enough for well-formed answers, so RL has reward variance (about 1 min of verl SFT)
    "sft.batch_size=16",
    "sft.micro_batch_size=8",
    "sft.lr=1e-3",
    "sft.lr_schedule=cosine",
]
RL_SETTINGS = [
    "rl.recipe=grpo",
    "rl.total_steps=3",
    "rl.train_batch_size=8",
    "rl.rollout_n=4",
    "rl.micro_batch_size=16",
    "rl.lr=1e-4",
    "rl.rollout_dtype=float32",
    "rl.train_dtype=float32",
    "rl.format_bonus=0.1",
    "rl.save_freq=3",  # the last step: a tracked stage's output is its last checkpoint
]


@dataclass(frozen=True)
class SmallRegime:
    """The small regime's stage parameters and the local store its runs go to."""

    store: ArtifactStore
    common: tuple[str, ...]
    """The settings every stage of the regime shares (workdir, store root, COMMON_SETTINGS)."""
    sft: SFTFlowParams
    rl_params: RLFlowParams
    """RL from the base model; :func:`run_rl` starts from the SFT run instead."""

    @property
    def rl(self) -> RLStage:
        return self.rl_params.rl

    @property
    def task(self) -> TaskSpec:
        return self.sft.task

    @property
    def data(self) -> dict[str, Path]:
        """The task's parquet splits (built by the SFT stage)."""
        return planned_assets(Path(self.sft.workdir).resolve(), self.sft.model, self.sft.task, self.sft.seed).data


@dataclass(frozen=True)
class RLRun:
    """An RL run read back through the store: metrics rows, command line, last checkpoint (a local copy)."""

    run_id: str
    rows: list[dict]
    command: str
    checkpoint: str
    sft_model: str | None = None
    """The HF model the run started from (a local copy)."""

    @property
    def steps(self) -> list[int]:
        return [r["step"] for r in self.rows]

    @property
    def grad_norm(self) -> list[float]:
        return [r["actor/grad_norm"] for r in self.rows]

    @property
    def rollout_probs_diff_max(self) -> list[float]:
        """training/rollout_probs_diff_max per step (vLLM vs FSDP token probs at the same weights)."""
        return [r["training/rollout_probs_diff_max"] for r in self.rows]


def read_rl_run(store: ArtifactStore, run_id: str, workdir: Path, sft_model: Path | None = None) -> RLRun:
    """The RL run ``run_id`` of ``store``, its last checkpoint fetched into ``workdir`` (if not already there)."""
    run = RunLayout(store, run_id)
    checkpoint = fetch_checkpoint(run, run.latest_checkpoint(), workdir)
    command = store.read_text(run.command_json)
    return RLRun(run_id, run.read_metrics(), command, str(checkpoint), str(sft_model) if sft_model else None)


@pytest.fixture(scope="session")
def small_regime(tmp_path_factory) -> SmallRegime:
    root = tmp_path_factory.mktemp("small-regime")
    common = [f"workdir={root / 'work'}", f"store.root={root / 'store'}", *COMMON_SETTINGS]
    sft = SFTFlowParams.from_config(None, [*common, *SFT_SETTINGS])
    rl = RLFlowParams.from_config(None, [*common, *RL_SETTINGS])
    return SmallRegime(sft.store.open(), tuple(common), sft, rl)


@pytest.fixture(scope="session")
def sft_run(small_regime) -> str:
    """verl SFT of the tiny MoE in ``small_regime``'s store: its run id."""
    return run_sft_stage(small_regime.sft, small_regime.store).run_id


@pytest.fixture(scope="session")
def sft_model(small_regime, sft_run) -> Path:
    """The HF directory of the SFT run's last checkpoint, fetched from the store."""
    run = RunLayout(small_regime.store, sft_run)
    return ensure_hf_model(fetch_checkpoint(run, run.latest_checkpoint(), Path(small_regime.sft.workdir).resolve()))


def run_rl(regime: SmallRegime, sft_run: str, rl: RLStage) -> RLRun:
    """One tracked RL stage with ``rl`` from ``sft_run``'s last checkpoint, read back through the store."""
    params = RLFlowParams(**{**dict(regime.rl_params), "rl": rl, "init_run": sft_run})
    result = run_rl_stage(params, regime.store)
    return read_rl_run(regime.store, result.run_id, Path(params.workdir).resolve())


# Below the largest pi_theta/mu_old of every step: with fp8 rollouts (and the stale second mini-batch) the uncapped
# weight reached 1.08-1.25 per step (max over tokens), so a cap of 1.05 binds on 2-11% of the tokens each step.
MINIRL_TIS_CAP = 1.05


@pytest.fixture(scope="session")
def minirl_run(small_regime, sft_run) -> RLRun:
    """MiniRL off-policy (N=2), no routing replay, vLLM weights rounded through fp8, vLLM's routes fetched for
    the routing-mismatch metric, the TIS cap lowered so that it binds; checkpoint at step 3. The
    no-replay arm of the R3 comparison."""
    rl = dataclasses.replace(
        small_regime.rl,
        recipe="minirl_offpolicy",
        recipe_overrides=["rollout_routes=true", f"minirl.tis_cap={MINIRL_TIS_CAP}"],
        rollout_precision="fp8",
        save_freq=small_regime.rl.total_steps,
    )
    return run_rl(small_regime, sft_run, rl)


@pytest.fixture(scope="session")
def minirl_rows(minirl_run) -> tuple[list[dict], str]:
    """(metrics rows, command.json text) of ``minirl_run``."""
    return minirl_run.rows, minirl_run.command


@pytest.fixture(scope="session")
def rl_checkpoint(minirl_run) -> Path:
    """``minirl_run``'s last checkpoint (``global_step_3``: FSDP shards + ``actor/huggingface``)."""
    return Path(minirl_run.checkpoint)


@pytest.fixture(scope="session")
def coldstart_e2e(prefect_harness, moto_s3, tmp_path_factory) -> Iterator[E2E]:
    """The e2e flow with S3 faults injected (CI_FAULTS) into every request; the tests read the store back through
    the same proxy, faults off."""
    secret = "e2e-secret-0123456789abcdef"
    with S3FaultProxy(moto_s3.endpoint_url, CI_FAULTS, seed=0) as proxy:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
            e2e = run_e2e(tmp_path_factory.mktemp("coldstart"), proxy.endpoint_url, moto_s3.bucket, secret)
        proxy.set_rates(CLEAN)
        e2e.faults = proxy.stats()
        yield e2e


@pytest.fixture(scope="session")
def e2e_report(coldstart_e2e) -> RLRun:
    """The e2e run's clean init: its RL run (metrics from S3, last checkpoint and SFT model fetched locally)."""
    e2e, workdir = coldstart_e2e, Path(coldstart_e2e.params.workdir)
    init = next(i for i in e2e.result["inits"] if i["teacher"] == E2E_TEACHER)
    sft_run = RunLayout(e2e.store, init["sft_run"])
    sft_model = ensure_hf_model(fetch_checkpoint(sft_run, sft_run.latest_checkpoint(), workdir))
    return read_rl_run(e2e.store, init["rl_run"], workdir, sft_model)


# The tiny grid: two cells of the small regime's RL settings (fp8 rollouts: the grid's stress), each cell's recipe
# and N set by the grid, scored at its last step beside the init.
GRID_SETTINGS = [
    "minibatches=[1,2]",
    "arms_by_n={1:[cispo],2:[minirl_r2]}",  # R2 needs N >= 2; CISPO is the paper's on-policy baseline
    "seeds=[0]",
    "eval.benchmarks=[bench_id,bench_hard]",
    "eval.k=2",
    "eval.n_prompts=8",
    "eval.steps=[3]",
]


@dataclass
class TinyGrid:
    """Two attempts of the grid flow (the second finds every cell complete), and the R2 cell's expert audit."""

    params: StabilityGridParams
    store: ArtifactStore
    audit: Path
    """The expert-audit folder of the first attempt (only a routing-replay cell writes to it)."""
    results: list[dict] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def run(self, arm: str) -> tuple[list[dict], str]:
        """(metrics rows, command.json text) of the first attempt's cell of ``arm``."""
        cells = self.results[0]["cells"]  # labels: "<arm>@N=<n>/seed<s>"
        run = RunLayout(self.store, next(c["run_id"] for c in cells if c["cell"].split("@")[0] == arm))
        return run.read_metrics(), self.store.read_text(run.command_json)


@pytest.fixture(scope="session")
def tiny_grid(prefect_harness, small_regime, sft_run, tmp_path_factory) -> TinyGrid:
    params = StabilityGridParams.from_config(
        None, [*small_regime.common, *RL_SETTINGS, f"init_run={sft_run}", *GRID_SETTINGS]
    )
    grid = TinyGrid(params, params.store.open(), tmp_path_factory.mktemp("grid") / "expert_audit")
    for attempt in range(2):
        with pytest.MonkeyPatch.context() as mp:
            if attempt == 0:
                mp.setenv(AUDIT_ENV, str(grid.audit))  # inherited by verl's Ray workers
            t0 = time.monotonic()
            grid.results.append(stability_grid_flow(params))
            grid.seconds.append(time.monotonic() - t0)
    print(f"\ntiny grid attempts: {[round(s) for s in grid.seconds]} s\n{summary(grid.results[0])}")
    return grid


def _cluster(tmp_path_factory, worker_gpus: int) -> Iterator[LocalRayCluster]:
    """A started two-node cluster; stopping it must leave none of its processes behind."""
    started = start_cluster(tmp_path_factory.mktemp("ray-cluster-logs"), worker_gpus=worker_gpus)
    try:
        yield started
    finally:
        started.stop()
        leftover = {pid for node in started.nodes for pid in procs.tree(node.pid)}
        assert not leftover, f"cluster processes outlived the cluster: {leftover}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, moto_s3) -> Iterator[LocalRayCluster]:
    """A real two-node Ray cluster for the module (a cluster per module: its jobs and nodes' folders are its own),
    its worker declaring 1 logical GPU: one RL stage at a time.

    After ``moto_s3``: its fake AWS credentials are in the environment each node starts with."""
    yield from _cluster(tmp_path_factory, worker_gpus=1)


@pytest.fixture(scope="module")
def two_gpu_cluster(tmp_path_factory, moto_s3) -> Iterator[LocalRayCluster]:
    """``cluster`` with 2 logical GPUs on its worker: two RL stages (1 GPU each) at once."""
    yield from _cluster(tmp_path_factory, worker_gpus=2)
