"""The entrypoint of an evaluation Ray Job: the checkpoints' HF folders from the store, the worker, results to it.

``python -m stable_verl.eval.node_eval --result <out> <run id> <step> [...] -- <stable_verl.eval.worker args>``

On a cluster (``launcher.kind=ray_job``) checkpoint evaluation runs on the node Ray picks for this entrypoint (one
that has the GPUs it asks for), which shares no filesystem with the flow. On that node it:

1. materialises the job's inputs from the store (``STABLE_VERL_INPUTS``, :mod:`stable_verl.verl_ext.inputs`): each
   checkpoint's HF folder alone (not its FSDP shards and optimizer state), the benchmark files, a user's reward file;
2. runs :func:`stable_verl.eval.worker.main` in this process over the worker arguments, their node paths
   (``${oc.env:STABLE_VERL_NODE_DIR}/...``) resolved to this node's folder;
3. uploads each ``--result`` (the worker's ``<out>/<benchmark>/``) to the run's ``eval/`` folder in the store, as a
   local evaluation does (:func:`stable_verl.eval.results.upload_result`).

The store is the job's ``STABLE_VERL_SYNC_ROOT`` and ``STABLE_VERL_S3_ENDPOINT``; credentials are the node's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stable_verl.artifacts import ArtifactStore
from stable_verl.env import NODE_DIR, S3_ENDPOINT, SYNC_ROOT
from stable_verl.eval import worker
from stable_verl.eval.results import EvalTarget, upload_result
from stable_verl.verl_ext import inputs


def result_args(results: list[tuple[str, EvalTarget]]) -> list[str]:
    """The ``--result`` arguments of ``(out dir, target)`` pairs (the worker's out dirs as the node names them)."""
    return [a for out, t in results for a in ("--result", out, t.run_id, str(t.step))]


def run(results: list[tuple[str, EvalTarget]], worker_args: list[str]) -> int:
    """Steps 1-3 of the module docstring; returns the worker's exit code."""
    node_dir = NODE_DIR.get()
    if not node_dir:
        raise inputs.MissingNodeDir(
            f"an evaluation Ray Job needs {NODE_DIR.name} on the node that runs it (docs/how-to/cluster.md)"
        )
    root = SYNC_ROOT.get()
    if root is None:
        raise SystemExit(f"node_eval: the job's environment names no store ({SYNC_ROOT.name})")
    inputs.materialise_from_env()
    code = worker.main(inputs.resolve_node_paths(worker_args, node_dir))
    if code != 0:
        return code
    store = ArtifactStore.from_env(root, endpoint_url=S3_ENDPOINT.get())
    for out, target in results:
        local = Path(inputs.resolve_node_paths([out], node_dir)[0])
        for bench in sorted(p for p in local.iterdir() if (p / "results.json").is_file()):
            upload_result(store, target, bench.name, bench)
            print(f"[eval] {target.run_id} step {target.step} {bench.name}: results uploaded", flush=True)
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
