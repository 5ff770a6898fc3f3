"""One local verl-like weight sync on a Ray cluster of its own, as a local RL run does it, without training: the
program of tests/integration/test_weight_sync_two_clusters.py, ``python -m tests.support.weight_sync_cluster NAME
VALUE DIR [--unscoped]``.

It starts a local Ray cluster (``ray.init()``, as a local stage does, so its first job is ``01000000``). A Ray task
plays verl's trainer: it names the socket as verl's ``ServerAdapter`` does (``vllm_rollout.py``: the Ray job id,
replica :data:`REPLICA`, rank 0), reports the path that verl's ``BucketedWeightSender`` ended up with
(``DIR/NAME.sender.json``) and sends one weight filled with VALUE through shared memory (verl's CPU path). A Ray actor
plays verl's vLLM server: once ``DIR/NAME.go`` exists it sets ``VERL_RAY_JOB_ID`` and ``VERL_REPLICA_RANK`` as the
server does and starts a child process, as vLLM starts its engine; the child names the socket with verl's own
``vLLMColocateWorkerExtension._get_zmq_handle``, receives with ``BucketedWeightReceiver`` and reports the path and the
value it got (``DIR/NAME.receiver.json``).

``import verl`` loads the stable-verl plugin, which scopes the socket (:mod:`stable_verl.verl_ext.weight_sync_scope`);
``--unscoped`` puts verl's own two constructors back in every process first: verl 0.9.1 as shipped.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import ray

WAIT_S = 600.0  # a guard that ends a program the test left behind; the test itself waits by progress
REPLICA = 7
"""The rollout replica both ends name: not 0, so that even unscoped this never touches the socket of a real local run
(one replica, ``replica-0``) going on beside the test."""


def _verl_ends(scoped: bool):
    """verl's module with both ends of the socket, scoped by the plugin unless ``scoped`` is false."""
    import verl  # noqa: F401  (loads the stable-verl plugin)
    from verl.workers.rollout.vllm_rollout import bucketed_weight_transfer as ends

    from stable_verl.verl_ext import weight_sync_scope

    if not scoped:
        for name in weight_sync_scope.ENDS:
            cls = getattr(ends, name)
            init = vars(cls)["__init__"]
            cls.__init__ = getattr(init, "__wrapped__", init)
    assert weight_sync_scope.installed(ends) is scoped
    return ends


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # the test never reads half a file


@ray.remote(num_cpus=0)
def send(name: str, value: float, folder: str, scoped: bool) -> None:
    """verl's trainer side: name the socket as ``ServerAdapter`` does, then send one weight."""
    import torch

    ends = _verl_ends(scoped)
    job_id = ray.get_runtime_context().get_job_id()
    handle = f"ipc:///tmp/rl-colocate-zmq-{job_id}-replica-{REPLICA}-rank-0.sock"  # vllm_rollout.py: ServerAdapter
    sender = ends.BucketedWeightSender(zmq_handle=handle, bucket_size_mb=1, use_shm=True)
    _write(Path(folder) / f"{name}.sender.json", {"job": job_id, "path": sender.zmq_handle})
    asyncio.run(sender.async_send_weights(iter([("w", torch.full((4,), value))])))


def _receive(name: str, folder: str, scoped: bool) -> None:
    """vLLM's engine side (a child of the server actor): verl's own path, then receive and report."""
    import torch

    ends = _verl_ends(scoped)
    from verl.workers.rollout.vllm_rollout.utils import vLLMColocateWorkerExtension

    worker = SimpleNamespace(local_rank=0, model_runner=None)  # what _get_zmq_handle reads of vLLM's worker
    handle = vLLMColocateWorkerExtension._get_zmq_handle(worker)
    got: list[float] = []
    receiver = ends.BucketedWeightReceiver(zmq_handle=handle, device=torch.device("cpu"), use_shm=True)
    receiver.receive_weights(lambda weights, is_last: got.extend(v for _, t in weights for v in t.tolist()))
    _write(Path(folder) / f"{name}.receiver.json", {"path": receiver.zmq_handle, "got": got})


@ray.remote(num_cpus=0)
class Server:
    """verl's vLLM server actor: sets the job id for its engine's processes, then starts one."""

    def receive(self, name: str, folder: str, scoped: bool) -> int:
        import os

        os.environ["VERL_RAY_JOB_ID"] = ray.get_runtime_context().get_job_id()  # vllm_async_server.py
        os.environ["VERL_REPLICA_RANK"] = str(REPLICA)
        child = multiprocessing.get_context("spawn").Process(target=_receive, args=(name, folder, scoped))
        child.start()
        child.join()
        return child.exitcode


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear in {WAIT_S:.0f} s")
        time.sleep(0.2)


def main(name: str, value: float, folder: Path, scoped: bool) -> None:
    ray.init(num_cpus=1, include_dashboard=False)
    sent = send.remote(name, value, str(folder), scoped)
    server = Server.remote()
    _wait_for(folder / f"{name}.go")
    exitcode = ray.get(server.receive.remote(name, str(folder), scoped))
    ray.get(sent)
    print(f"{name}: done, receiver exit code {exitcode}", flush=True)


if __name__ == "__main__":
    from tests.support import weight_sync_cluster  # by its name: vLLM-like children are spawned, not forked

    weight_sync_cluster.main(sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]), "--unscoped" not in sys.argv[4:])
