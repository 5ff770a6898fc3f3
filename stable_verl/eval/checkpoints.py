"""Evaluate checkpoints of runs in the store; results and samples go under each run's ``eval/``.

    runs/<run_id>/eval/global_step_N/<benchmark>/{results.json, samples.jsonl, _MANIFEST.json}

Every pending checkpoint goes through one evaluation process (one vLLM engine, weights reloaded per
checkpoint, see :mod:`.worker`). A result already in the store with the same sampling settings and
prompt count is reused, so reruns only evaluate what is missing.

Where it runs follows the stages' launcher: locally, the flow downloads each checkpoint's HF folder and runs the
worker as a subprocess; with ``launcher.kind=ray_job``, as a Ray Job (:mod:`stable_verl.launch.ray_job`) whose
entrypoint (:mod:`.node_eval`) fetches the HF folders and the benchmark files from the store on its node, runs the
worker there and uploads the results, to the same paths, from there. The flow keeps the leases and reads the results
back from the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from stable_verl import site
from stable_verl.artifacts import ArtifactStore, RunLayout, config_hash, step_dir
from stable_verl.artifacts.lease import Lease, LeaseHeld
from stable_verl.config import cpu_env
from stable_verl.config.eval_settings import score_row
from stable_verl.config.params import LauncherParams
from stable_verl.config.selector import RunSelector, Steps, choose_steps
from stable_verl.eval import node_eval
from stable_verl.eval.results import EvalTarget, upload_result
from stable_verl.eval.worker import EvalEngine, EvalSettings, eval_args, eval_argv, eval_env
from stable_verl.launch.ray_job import RayJobLauncher
from stable_verl.launch.runner import LaunchSpec, launch, python_module, run_streaming
from stable_verl.launch.stall import DEFAULT_STALL_S, Limits
from stable_verl.tasks.datasets import write_task_data
from stable_verl.tasks.reward_fn import RewardFn
from stable_verl.tasks.user_task import Task, TaskData, digest, normalised_benchmark
from stable_verl.train.model_source import ensure_hf_model
from stable_verl.train.node_inputs import NodeInputs, checkpoint_model
from stable_verl.train.stages import fetch_checkpoint, local_run_dir
from stable_verl.verl_ext.inputs import NODE_DIR_EXPR
from stable_verl.verl_ext.store_sync import store_env

__all__ = ["EvalTarget", "evaluate_checkpoints", "select_targets"]


@dataclass
class EvalOutcome:
    """Scores per target and benchmark, and where the time went."""

    results: dict[EvalTarget, dict[str, dict]]
    """target -> benchmark -> results.json contents."""
    evaluated: list[EvalTarget]
    """Targets evaluated now (the others were already in the store)."""
    busy: list[EvalTarget] = dataclasses.field(default_factory=list)
    """Targets left out: another owner held their run's evaluation lease (they have no results here)."""
    eval_s: float = 0.0
    """The evaluation process (vLLM start-up, generation, scoring)."""
    download_s: float = 0.0
    upload_s: float = 0.0

    def rows(self, metric: str) -> list[dict]:
        """One flat row per (run, step, benchmark), for tables: the score, its standard error, the format rate."""
        return [
            score_row(t.run_id, t.step, b, r, metric)
            for t, by_bench in self.results.items()
            for b, r in by_bench.items()
        ]


def select_targets(
    store: ArtifactStore,
    runs: list[str],
    steps: Steps,
    selector: RunSelector | None = None,
    benchmarks: list[str] | None = None,
) -> list[EvalTarget]:
    """Checkpoints to evaluate: per listed run 'last', 'all' or the listed steps (SFT runs: always their last), then
    those of the runs ``selector`` picks from the store (pending ones only, unless it says otherwise)."""
    targets = []
    for rid in runs:
        run = RunLayout(store, rid)
        available = run.checkpoint_steps()
        if not available:
            raise ValueError(f"run {rid} has no complete checkpoint in {store.uri()}")
        targets += [EvalTarget(rid, s) for s in choose_steps(run, available, steps)]
    if selector is not None:
        found = selector.checkpoints(store, steps, benchmarks or [])
        targets += [t for t in (EvalTarget(rid, s) for rid, s in found) if t not in targets]
    return targets


def benchmark_files(workdir: Path, task: Task, names: list[str], n_prompts: int | None) -> dict[str, Path]:
    """The benchmark files (the built-in task's held-out splits, generated; or the user's files, normalised to verl's
    RL schema), cut to their first ``n_prompts`` rows if given."""
    if isinstance(task, TaskData):
        rows = {name: normalised_benchmark(task, name) for name in names}
        root = workdir / "benchmarks" / config_hash({name: digest(r) for name, r in rows.items()})
        data = {}
        for name, r in rows.items():
            data[name] = root / f"{name}.parquet"
            if not data[name].exists():
                root.mkdir(parents=True, exist_ok=True)
                pq.write_table(pa.Table.from_pylist(r), data[name])
    else:
        root = workdir / "benchmarks" / config_hash(dataclasses.asdict(task))
        marker = root / "data.json"
        if not marker.exists():
            written = write_task_data(root / "data", task)
            marker.write_text(json.dumps({k: str(v) for k, v in written.items()}))
        data = {k: Path(v) for k, v in json.loads(marker.read_text()).items()}
    if n_prompts is None:
        return {name: data[name] for name in names}
    files = {}
    for name in names:
        files[name] = root / f"{name}-first{n_prompts}.parquet"
        if not files[name].exists():
            pd.read_parquet(data[name]).head(n_prompts).to_parquet(files[name], index=False)
    return files


def fetch_hf_model(run: RunLayout, step: int, workdir: Path) -> Path:
    """The HF folder of checkpoint ``step`` of ``run``, downloaded alone (not the FSDP shards and optimizer state);
    a checkpoint without one (shards only) is fetched whole and merged (:func:`~.model_source.ensure_hf_model`).

    A local copy counts if every file of the folder has the size the store's manifest lists."""
    try:
        prefix, folder = checkpoint_model(run, step)
    except ValueError:
        return ensure_hf_model(fetch_checkpoint(run, step, workdir))
    local = local_run_dir(workdir, run.run_id) / "checkpoints" / step_dir(step)
    manifest = run.store.read_manifest(prefix)
    wanted = [f for f in manifest.files if f.path.startswith(f"{folder}/")]
    if not all((local / f.path).is_file() and (local / f.path).stat().st_size == f.size for f in wanted):
        run.store.get_dir(prefix, local, only=lambda rel: rel.startswith(f"{folder}/"))
    return local / folder


def resolve_dtype(store: ArtifactStore, targets: list[EvalTarget], settings: EvalSettings) -> EvalSettings:
    """``settings`` with dtype 'auto' made concrete: float32 when every run trained the built-in tiny model (its
    config.yaml's ``model`` has no ``path``), bfloat16 when one trained your own model."""
    if settings.dtype != "auto":
        return settings
    return settings.resolved(RunLayout(store, rid).read_config() for rid in dict.fromkeys(t.run_id for t in targets))


def eval_reward(task: Task) -> RewardFn | None:
    """The reward evaluation scores with: the user's task's own (the one RL trains with), None for the built-in task
    (its reward without the format bonus: avg@k counts exact answers)."""
    return task.reward if isinstance(task, TaskData) else None


def _stored_result(
    run: RunLayout, step: int, bench: str, settings: EvalSettings, n: int, reward: RewardFn | None = None
) -> dict | None:
    """The store's results.json for this checkpoint and benchmark if complete and made with these settings.

    Results without ``avg@k_stderr`` predate per-sample seeds (their samples came from the global generator
    and depended on the batch), so they are evaluated again.
    """
    prefix = run.eval_dir(step, bench)
    if not run.store.is_complete(prefix):
        return None
    results = run.store.read_json(run.eval_results(step, bench))
    same = settings.recorded_in(results) and results.get("num_prompts") == n
    same = same and results.get("reward") == (reward.identity() if reward is not None else None)
    return results if same and f"avg@{settings.k}_stderr" in results else None


def evaluate_checkpoints(
    store: ArtifactStore,
    targets: list[EvalTarget],
    benchmarks: dict[str, Path],
    settings: EvalSettings,
    workdir: Path,
    timeout_s: float | None = None,
    echo: Callable[[str], None] = print,
    lease_wait_s: float = 0.0,
    reward: RewardFn | None = None,
    engine: EvalEngine | None = None,
    launcher: LauncherParams | None = None,
    stall_s: float = DEFAULT_STALL_S,
) -> EvalOutcome:
    """Evaluate the targets missing from the store in one process, upload them, return every target's scores.

    Each run with checkpoints to evaluate is leased (``leases/eval/<run_id>.json``) until its results are uploaded;
    a run whose lease another owner holds for longer than ``lease_wait_s`` is left out (``outcome.busy``).
    ``reward`` scores the samples (None: the built-in task's; see :func:`eval_reward`); ``engine`` lays out vLLM;
    ``launcher`` says where the process runs (None or 'local': here; 'ray_job': a Ray Job on the cluster).
    The process fails when it stops making progress for ``stall_s`` (:mod:`~.launch.stall`), or past the optional
    total limit ``timeout_s``.
    """
    settings = resolve_dtype(store, targets, settings)
    sizes = {name: len(pd.read_parquet(path)) for name, path in benchmarks.items()}
    results: dict[EvalTarget, dict[str, dict]] = {}

    def stored(t: EvalTarget) -> dict[str, dict] | None:
        run = RunLayout(store, t.run_id)
        found = {b: _stored_result(run, t.step, b, settings, n, reward) for b, n in sizes.items()}
        return found if all(r is not None for r in found.values()) else None  # type: ignore[return-value]

    with contextlib.ExitStack() as leases:
        pending, busy = [], []
        for rid in dict.fromkeys(t.run_id for t in targets):
            todo = [t for t in targets if t.run_id == rid]
            results |= {t: r for t in todo if (r := stored(t)) is not None}
            if all(t in results for t in todo):  # a holder killed after uploading them left its lease behind
                Lease(store, "eval", rid).clear_stale(echo)
                continue
            lease = Lease(store, "eval", rid)
            try:
                leases.enter_context(lease.hold(lease_wait_s, echo=echo))
            except LeaseHeld as held:
                echo(f"[eval] {rid}: skipped, another evaluation holds it: {held}")
                busy += [t for t in todo if t not in results]
                continue
            for t in todo:  # again under the lease: a holder we waited for may have stored them
                if t not in results and (r := stored(t)) is not None:
                    results[t] = r
            pending += [t for t in todo if t not in results]
        outcome = EvalOutcome(results, evaluated=pending, busy=busy)
        if pending:
            _evaluate_pending(
                store,
                pending,
                benchmarks,
                settings,
                sizes,
                workdir,
                Limits(stall_s, timeout_s),
                echo,
                outcome,
                reward,
                engine,
                launcher,
            )
        else:
            echo(f"[eval] nothing to evaluate: {len(results)} of {len(targets)} checkpoint(s) already evaluated")
    outcome.results = {t: outcome.results[t] for t in targets if t in outcome.results}
    return outcome


def trusts_remote_code(run: RunLayout) -> bool:
    """Whether ``run`` was trained from a user model with ``model.trust_remote_code`` (its config.yaml says)."""
    if not run.store.exists(run.config_yaml):
        return False
    model = (yaml.safe_load(run.store.read_text(run.config_yaml)) or {}).get("model") or {}
    return bool(model.get("trust_remote_code", False))


def _evaluate_pending(
    store: ArtifactStore,
    pending: list[EvalTarget],
    benchmarks: dict[str, Path],
    settings: EvalSettings,
    sizes: dict[str, int],
    workdir: Path,
    limits: Limits,
    echo: Callable[[str], None],
    outcome: EvalOutcome,
    reward: RewardFn | None = None,
    engine: EvalEngine | None = None,
    launcher: LauncherParams | None = None,
) -> None:
    """One evaluation process over ``pending`` (here, or as a Ray Job); results uploaded and added to ``outcome``."""
    scored_by = {} if reward is None else {"reward": reward.identity()}  # the built-in's folder as before
    out_root = workdir / "eval" / config_hash({"settings": dataclasses.asdict(settings), "sizes": sizes, **scored_by})
    echo(f"[eval] {len(pending)} checkpoint(s) x {len(benchmarks)} benchmark(s), avg@{settings.k}, one vLLM engine")
    trust = any(trusts_remote_code(RunLayout(store, rid)) for rid in dict.fromkeys(t.run_id for t in pending))
    if launcher is not None and launcher.on_cluster:
        _evaluate_on_cluster(
            store, pending, benchmarks, settings, out_root, limits, echo, outcome, reward, engine, trust, launcher
        )
    else:
        _evaluate_here(store, pending, benchmarks, settings, out_root, workdir, limits, outcome, reward, engine, trust)
    for rid in dict.fromkeys(t.run_id for t in pending):
        site.refresh_run(RunLayout(store, rid))  # site hook: the run pages show the new evaluations


def _evaluate_here(
    store: ArtifactStore,
    pending: list[EvalTarget],
    benchmarks: dict[str, Path],
    settings: EvalSettings,
    out_root: Path,
    workdir: Path,
    limits: Limits,
    outcome: EvalOutcome,
    reward: RewardFn | None,
    engine: EvalEngine | None,
    trust: bool,
) -> None:
    """The HF folders downloaded into ``workdir``, the worker as a local subprocess, its results uploaded from here."""
    t0 = time.monotonic()
    jobs = []
    for t in pending:
        model_dir = fetch_hf_model(RunLayout(store, t.run_id), t.step, workdir)
        jobs.append((model_dir, out_root / t.run_id / f"global_step_{t.step}"))
    outcome.download_s = time.monotonic() - t0
    run_result = run_streaming(
        eval_argv(jobs, benchmarks, settings, reward, engine, trust_remote_code=trust),
        out_root / "eval.log",
        eval_env(),
        limits.timeout_s,
        name="evaluation",
        stall_s=limits.stall_s,
    )
    outcome.eval_s = run_result.seconds
    t0 = time.monotonic()
    for t, (_, out_dir) in zip(pending, jobs, strict=True):
        outcome.results[t] = {bench: upload_result(store, t, bench, out_dir / bench) for bench in benchmarks}
    outcome.upload_s = time.monotonic() - t0


def _evaluate_on_cluster(
    store: ArtifactStore,
    pending: list[EvalTarget],
    benchmarks: dict[str, Path],
    settings: EvalSettings,
    out_root: Path,
    limits: Limits,
    echo: Callable[[str], None],
    outcome: EvalOutcome,
    reward: RewardFn | None,
    engine: EvalEngine | None,
    trust: bool,
    launcher: LauncherParams,
) -> None:
    """The worker as a Ray Job (:mod:`.node_eval`): its node fetches each checkpoint's HF folder, the benchmark files
    and a user's reward file from the store, evaluates and uploads; the flow reads the results back from the store.

    The job's environment holds the CPU settings, the inputs' store prefixes and the store's root and endpoint, no
    credentials (the node's own). It asks for ``engine.tensor_parallel_size`` GPUs, so it runs on a GPU node."""
    engine = engine or EvalEngine()
    nodes = NodeInputs()
    node_out = PurePosixPath(NODE_DIR_EXPR, "eval", out_root.name)
    jobs: list[tuple[PurePath, PurePath]] = []
    for t in pending:
        prefix, folder = checkpoint_model(RunLayout(store, t.run_id), t.step)  # the HF folder only
        jobs.append((nodes.checkpoint(prefix, folder), node_out / t.run_id / f"global_step_{t.step}"))
    node_bench = nodes.benchmarks(benchmarks)
    node_reward = reward
    if reward is not None and reward.file is not None:  # the node's copy; its identity (the file's bytes) is the same
        node_reward = reward.model_copy(update={"path": str(nodes.code(reward.file))})
    for prefix in nodes.publish(store):
        echo(f"[eval] uploaded the evaluation's inputs to {store.uri(prefix)}")
    results = [(str(out), t) for (_, out), t in zip(jobs, pending, strict=True)]
    argv = python_module(
        node_eval.__name__,
        *node_eval.result_args(results),
        "--",
        *eval_args(jobs, node_bench, settings, node_reward, engine, trust_remote_code=trust),
    )
    env = {**eval_env(cpu_env.cluster_env(launcher.cpu)), **nodes.env(), **store_env(store)}
    key = "eval-" + config_hash({"store": store.uri(), "targets": [dataclasses.asdict(t) for t in pending]})
    spec = LaunchSpec(
        argv,
        env,
        name="evaluation",
        key=key,
        num_gpus=engine.tensor_parallel_size,
        metadata={"kind": "eval", "runs": " ".join(dict.fromkeys(t.run_id for t in pending)), "store": store.uri()},
    )
    job = RayJobLauncher(launcher.ray_address, python=launcher.python)

    def progress(line: str) -> None:  # the worker's own lines (a checkpoint's scores, its upload), not vLLM's
        if "[eval]" in line:
            echo(line)

    started = lambda where: echo(f"[eval] evaluation started: {where}")  # noqa: E731
    outcome.eval_s = launch(
        job, spec, out_root / "eval.log", limits.timeout_s, on_line=progress, on_start=started, stall_s=limits.stall_s
    ).seconds
    for t in pending:
        run = RunLayout(store, t.run_id)
        missing = [b for b in benchmarks if not store.is_complete(run.eval_dir(t.step, b))]
        if missing:
            raise RuntimeError(
                f"Ray job {job.job_id} succeeded but left no results of {run.uri(run.eval_dir(t.step, missing[0]))}"
            )
        outcome.results[t] = {b: store.read_json(run.eval_results(t.step, b)) for b in benchmarks}
