"""S3 faults: a short cold-start flow (one init: SFT -> MiniRL -> evaluation -> report) run twice against a moto
S3 server behind the fault-injecting proxy (tests/faults/s3_proxy.py): clean, then with :data:`SOAK_FAULTS`.

Counts of the faulty run: the S3 requests attempted, the faults injected by kind, the retries (every failed
attempt the flow survived was retried by botocore, s3fs or the store; the store's own retries are counted apart),
the corrupt manifests (every file's sha256 checked) and the complete runs with missing files, and whether the
final metrics equal the clean run's. SFT and the evaluation of given weights repeat exactly on CPU; RL does not
(vLLM's sampling), so RL metrics are compared by steps and keys, and whether their values matched is reported.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.retry import reset_retry_counts, retry_counts
from tests.faults.audit import audit_store
from tests.faults.s3_proxy import CLEAN, FaultRates, S3FaultProxy
from tests.soak.common import Count
from tests.support.coldstart_e2e import OVERRIDES as E2E_OVERRIDES
from tests.support.prefect_startup import raise_startup_limit

raise_startup_limit()  # before Prefect is imported: its temporary server may start slowly on a busy machine

SOAK_FAULTS = FaultRates(error=0.10, drop=0.03, slow=0.05, delay_s=0.5)
OVERRIDES = [  # the CI e2e's small regime, one init, one benchmark
    "teachers=[stepwise]",
    *(o for o in E2E_OVERRIDES if not o.startswith(("teachers=", "eval.benchmarks="))),
    "eval.benchmarks=[bench_id]",
]


def _flow(workdir: Path, endpoint_url: str, bucket: str) -> tuple[ArtifactStore, dict]:
    from flows.coldstart import coldstart_comparison_flow
    from stable_verl.config.params import ColdstartParams

    root = f"s3://{bucket}/soak-{uuid.uuid4().hex[:8]}"
    params = ColdstartParams.from_config(
        "configs/coldstart.yaml",
        [f"workdir={workdir}", f"store.root={root}", f"store.endpoint_url={endpoint_url}", *OVERRIDES],
    )
    return params.store.open(), coldstart_comparison_flow(params)


def _final_metrics(store: ArtifactStore, result: dict) -> dict[str, dict]:
    """Per stage (by kind): its run id, metrics rows, and evaluation results of its last checkpoint."""
    out = {}
    for stage in result["stages"]:
        run = RunLayout(store, stage["run_id"])
        step = run.latest_checkpoint()
        evals = {b: store.read_json(run.eval_results(step, b)) for b in ("bench_id",)}
        out[stage["kind"]] = {"run_id": stage["run_id"], "rows": run.read_metrics(), "eval": evals}
    return out


def _same_structure(a: list[dict], b: list[dict]) -> bool:
    return [(r["step"], sorted(r)) for r in a] == [(r["step"], sorted(r)) for r in b]


def _timing(key: str) -> bool:
    """A wall-clock or machine figure (``timing_s/...``, ``perf/...``, ``.../mfu``), which no rerun repeats."""
    return key.startswith("timing") or "perf/" in key or key.endswith("mfu")


def _without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not _timing(k)} for r in rows]


def _differing_keys(a: list[dict], b: list[dict]) -> set[str]:
    keys = {k for ra, rb in zip(a, b, strict=False) for k in ra.keys() | rb.keys() if ra.get(k) != rb.get(k)}
    return {k for k in keys if not _timing(k)}


def _eval_scores(evals: dict) -> dict:
    return {
        b: {k: v for k, v in r.items() if k.startswith("avg@") or k in ("num_prompts", "k")} for b, r in evals.items()
    }


def run() -> list[Count]:
    """Start moto, the proxy and a Prefect test server; run the flow clean, then under faults; count."""
    import s3fs
    from prefect.testing.utilities import prefect_test_harness

    from tests.support.s3 import BUCKET, FAKE_ENV, UNSET_ENV, start_moto_server

    os.environ.update(FAKE_ENV)
    for name in UNSET_ENV:
        os.environ.pop(name, None)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.chdir(Path(__file__).resolve().parents[2])  # configs/coldstart.yaml
    server, port = start_moto_server()
    upstream = f"http://127.0.0.1:{port}"
    try:
        s3fs.S3FileSystem(
            skip_instance_cache=True, key="test", secret="test", client_kwargs={"endpoint_url": upstream}
        ).mkdir(BUCKET)
        with prefect_test_harness(server_startup_timeout=None), S3FaultProxy(upstream, CLEAN, seed=0) as proxy:
            work = Path(tempfile.mkdtemp(prefix="soak-s3-faults-"))
            t0 = time.monotonic()
            clean_store, clean = _flow(work / "clean", proxy.endpoint_url, BUCKET)
            clean_s = time.monotonic() - t0
            print(f"soak s3_faults: clean flow {clean_s:.0f} s, {proxy.stats().requests} S3 requests", file=sys.stderr)
            proxy.reset()
            reset_retry_counts()
            proxy.set_rates(SOAK_FAULTS)
            t0 = time.monotonic()
            store, faulty = _flow(work / "faulty", proxy.endpoint_url, BUCKET)
            faulty_s = time.monotonic() - t0
            proxy.set_rates(CLEAN)
            stats, store_retries = proxy.stats(), sum(retry_counts().values())
            print(
                f"soak s3_faults: faulty flow {faulty_s:.0f} s, {stats}, store retries {retry_counts()}",
                file=sys.stderr,
            )
            audit = audit_store(store)
            mine, theirs = _final_metrics(store, faulty), _final_metrics(clean_store, clean)
    finally:
        server.stop()
    sft_equal = _without_timings(mine["sft"]["rows"]) == _without_timings(theirs["sft"]["rows"])
    same_runs = {k: v["run_id"] for k, v in mine.items()} == {k: v["run_id"] for k, v in theirs.items()}
    same_steps = all(_same_structure(mine[k]["rows"], theirs[k]["rows"]) for k in theirs)
    sft_eval_equal = _eval_scores(mine["sft"]["eval"]) == _eval_scores(theirs["sft"]["eval"])
    rl_equal = _without_timings(mine["rl"]["rows"]) == _without_timings(theirs["rl"]["rows"])
    for kind in theirs:
        differ = sorted(_differing_keys(mine[kind]["rows"], theirs[kind]["rows"]))
        print(f"soak s3_faults: {kind} metrics differing from the clean run's: {differ}", file=sys.stderr)
    return [
        Count("clean_flow_s", round(clean_s)),
        Count("faulty_flow_s", round(faulty_s)),
        Count("operations_attempted", stats.requests),
        Count("operations_forwarded", stats.forwarded),
        Count("faults_5xx", stats.faults["error"]),
        Count("faults_dropped", stats.faults["drop"]),
        Count("faults_slow", stats.faults["slow"]),
        Count("retries_all_layers", stats.failed),
        Count("retries_by_store", store_retries),
        Count("manifests_verified", audit.manifests),
        Count("files_sha256_verified", audit.files_verified),
        Count("corrupt_manifests", len(audit.corrupt), expect=0),
        Count("complete_runs", audit.complete_runs, expect=2),
        Count("complete_runs_missing_files", len(audit.complete_runs_missing_files), expect=0),
        Count("final_metrics_equal_clean", int(same_runs and same_steps and sft_equal and sft_eval_equal), expect=1),
        Count("rl_metric_values_equal_clean", int(rl_equal)),
    ]
