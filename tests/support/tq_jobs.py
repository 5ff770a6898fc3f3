"""A Ray Job that uses TransferQueue as verl 0.9.1 does, without training: the entrypoint of
tests/integration/test_tq_two_jobs.py (issue 28), ``python -m tests.support.tq_jobs ROLE DIR [--scoped]``.

verl's TaskRunner (an actor of the job's driver) calls ``tq.init(config.transfer_queue)``, which starts the
controller and the storage units; its other actors (agent-loop, reward workers) reach the same TransferQueue with
no ``init`` of their own (``tq.kv_*`` calls ``_init_from_existing``). Here a ``Runner`` actor does the former and a
``Worker`` actor the latter; ``--scoped`` installs :mod:`stable_verl.verl_ext.tq_scope` in both first, as the
stable-verl verl plugin does in every verl process.

Role ``first``: initialise, put one sample, report (``first.json``), wait for the second job's report, close
TransferQueue (as verl does at the end of a run) and end. Role ``second``: once ``first.json`` exists,
initialise, put one sample, report (``second.json``), wait until the first job has ended, then read its own
sample back with a time limit and report how that went (``second-after.json``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray

PARTITION = "train"
GET_TIMEOUT_S = 20.0  # a get from a live TransferQueue answers in well under a second
WAIT_S = 600.0  # a guard that ends a job the test left behind; the test itself waits by progress


def _tq(scoped: bool) -> Any:
    if scoped:
        from stable_verl.verl_ext import tq_scope

        tq_scope.install()
    import transfer_queue as tq

    return tq


def _controller_id() -> str:
    from transfer_queue import interface

    return interface._TQ_CONTROLLER._actor_id.hex()


@ray.remote(num_cpus=0)
class Runner:
    """verl's TaskRunner's part: ``tq.init`` (a controller and one storage unit), a put, a get, ``tq.close``."""

    def __init__(self, scoped: bool) -> None:
        self.tq = _tq(scoped)

    def init_and_put(self, key: str) -> dict:
        import torch
        from omegaconf import OmegaConf
        from tensordict import TensorDict

        # One storage unit on a node with (logical) GPUs, as stable-verl's verl stages configure it on a cluster
        # (ppo_cpu_overrides, verl_command.cluster_overrides): the test cluster's head declares no CPUs.
        storage = {"num_data_storage_units": 1, "required_node_resource": "GPU"}
        self.tq.init(OmegaConf.create({"backend": {"SimpleStorage": storage}}))
        value = torch.tensor([[float(len(key))]])
        self.tq.kv_put(key=key, partition_id=PARTITION, fields=TensorDict({"x": value}, batch_size=[1]), tag={})
        return {"controller": _controller_id(), "job": ray.get_runtime_context().get_job_id()}

    def get(self, key: str, timeout_s: float) -> str:
        """``ok <value>``, ``error <exception>``, or ``no answer in <timeout_s> s`` (the get is left hanging)."""
        result: list[str] = []

        def get() -> None:
            try:
                data = self.tq.kv_batch_get(keys=[key], partition_id=PARTITION)
                result.append(f"ok {[float(row.sum()) for row in data['x']]}")  # rows may be nested
            except Exception as e:  # reported to the test as the outcome
                result.append(f"error {type(e).__name__}: {e}")

        thread = threading.Thread(target=get, daemon=True)
        thread.start()
        thread.join(timeout_s)
        return result[0] if result else f"no answer in {timeout_s:.0f} s"

    def close(self) -> None:
        self.tq.close()


@ray.remote(num_cpus=0)
class Worker:
    """A verl worker's part (agent loop, reward loop): TransferQueue reached without ``init``, as they do."""

    def __init__(self, scoped: bool) -> None:
        self.tq = _tq(scoped)

    def keys(self) -> dict:
        listed = self.tq.kv_list(partition_id=PARTITION) or {}
        return {"keys": sorted(listed.get(PARTITION, {})), "controller": _controller_id()}


def _wait_for(path: Path, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear in {timeout_s:.0f} s")
        time.sleep(0.5)


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # the other job never reads half a file


def main(role: str, folder: Path, scoped: bool) -> None:
    if role == "second":
        _wait_for(folder / "first.json")
    ray.init()
    runner, worker = Runner.remote(scoped), Worker.remote(scoped)
    report = ray.get(runner.init_and_put.remote(role))
    report["worker"] = ray.get(worker.keys.remote())
    _write(folder / f"{role}.json", report)
    if role == "first":
        _wait_for(folder / "second.json")
        ray.get(runner.close.remote())  # verl's TaskRunner.run ends with tq.close()
        (folder / "first.closed").touch()
        return  # the driver's end ends its actors, the job's end
    _wait_for(folder / "first.ended")  # written by the test once Ray reports the first job finished
    outcome = ray.get(runner.get.remote(role, GET_TIMEOUT_S))
    _write(folder / "second-after.json", {"get": outcome})
    if outcome.startswith("ok"):
        ray.get(runner.close.remote())


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), "--scoped" in sys.argv[3:])
