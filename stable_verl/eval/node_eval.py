"""The entrypoint of an evaluation Ray Job: the checkpoints' HF folders from the store, the worker, results to it.

``python -m stable_verl.eval.node_eval --result <out> <run id> <step> [...] -- <stable_verl.eval.worker args>``

On a cluster (``launcher.kind=ray_job``) checkpoint evaluation runs on the node Ray picks for this entrypoint (one
that has the GPUs it asks for), which shares no filesystem with the flow. On that node it:

1. materialises the job's inputs from the store (``STABLE_VERL_INPUTS``, :mod:`stable_verl.verl_ext.inputs`): each
   checkpoint's HF folder alone (not its FSDP shards and optimizer state), the benchmark files, a user's reward file;
2. runs :mod:`stable_verl.eval.worker` as a child over the worker arguments, their node paths
   (``${oc.env:STABLE_VERL_NODE_DIR}/...``) resolved to this node's folder, its output teed to the job's and to a
   log file on the node (:mod:`stable_verl.launch.teed`);
3. uploads each ``--result`` (the worker's ``<out>/<benchmark>/``) to the run's ``eval/`` folder in the store, as a
   local evaluation does (:func:`stable_verl.eval.results.upload_result`);
4. uploads the node's log, whatever the outcome, to ``logs/<Ray submission id>-node.log`` of every run evaluated
   (the id the flow's error names when the job fails, e.g. ``eval-<hash>-a1``).

The store is the job's ``STABLE_VERL_SYNC_ROOT`` and ``STABLE_VERL_S3_ENDPOINT``; credentials are the node's own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.env import NODE_DIR, S3_ENDPOINT, SYNC_ROOT
from stable_verl.eval import worker
from stable_verl.eval.results import EvalTarget, upload_result
from stable_verl.launch.runner import python_module
from stable_verl.launch.teed import run_teed
from stable_verl.verl_ext import inputs

RAY_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"
"""Set by Ray in a job's entrypoint: its config as JSON, ``metadata.job_submission_id`` its submission id."""


def result_args(results: list[tuple[str, EvalTarget]]) -> list[str]:
    """The ``--result`` arguments of ``(out dir, target)`` pairs (the worker's out dirs as the node names them)."""
    return [a for out, t in results for a in ("--result", out, t.run_id, str(t.step))]


def job_name() -> str:
    """The submission id of the Ray Job this entrypoint runs in (Ray's job config in its environment), else 'eval'."""
    try:
        return str(json.loads(os.environ[RAY_JOB_CONFIG])["metadata"]["job_submission_id"])
    except (KeyError, TypeError, ValueError):
        return "eval"


def run(results: list[tuple[str, EvalTarget]], worker_args: list[str]) -> int:
    """Steps 1-4 of the module docstring; returns the worker's exit code (SIGTERM: 143)."""
    node_dir = NODE_DIR.get()
    if not node_dir:
        raise inputs.MissingNodeDir(
            f"an evaluation Ray Job needs {NODE_DIR.name} on the node that runs it (docs/how-to/cluster.md)"
        )
    root = SYNC_ROOT.get()
    if root is None:
        raise SystemExit(f"node_eval: the job's environment names no store ({SYNC_ROOT.name})")
    store = ArtifactStore.from_env(root, endpoint_url=S3_ENDPOINT.get())
    log_path = Path(node_dir) / "eval" / "logs" / f"{job_name()}.log"
    try:
        inputs.materialise_from_env()
        argv = python_module(worker.__name__, *inputs.resolve_node_paths(worker_args, node_dir))
        teed = run_teed(argv, os.environ, log_path)
        if teed.exit_code != 0:
            return teed.exit_code
        with open(log_path, "a", encoding="utf-8") as log:
            for out, target in results:
                local = Path(inputs.resolve_node_paths([out], node_dir)[0])
                for bench in sorted(p for p in local.iterdir() if (p / "results.json").is_file()):
                    upload_result(store, target, bench.name, bench)
                    line = f"[eval] {target.run_id} step {target.step} {bench.name}: results uploaded"
                    print(line, flush=True)
                    log.write(line + "\n")
    finally:  # the log as the node saw it, whatever the Jobs API's log stream delivered to the flow
        if log_path.is_file():
            text = log_path.read_text(errors="replace")
            for run_id in dict.fromkeys(t.run_id for _, t in results):
                store.write_text(RunLayout(store, run_id).log(f"{log_path.stem}-node"), text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        raise SystemExit("usage: python -m stable_verl.eval.node_eval --result OUT RUN STEP [...] -- <worker args>")
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="stable_verl.eval.node_eval")
    parser.add_argument("--result", nargs=3, action="append", default=[], metavar=("OUT", "RUN_ID", "STEP"))
    ours = parser.parse_args(args[:split])
    results = [(out, EvalTarget(run_id, int(step))) for out, run_id, step in ours.result]
    return run(results, args[split + 1 :])


if __name__ == "__main__":
    sys.exit(main())
