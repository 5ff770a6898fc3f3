"""Leases on the real store, a local folder and the moto S3 server: one owner at a time, heartbeats renew the
expiry, a stale lease is taken over, a released one is free; and the train stage waits for another owner's lease."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from stable_verl.artifacts import ArtifactStore, RunLayout
from stable_verl.artifacts.lease import Lease, LeaseHeld, lease_path
from stable_verl.train.lifecycle import VerlJob, run_tracked

RUN = "rl-minirl-0000abcd"
QUIET = lambda _: None  # noqa: E731


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "store"))
    return request.getfixturevalue("moto_s3").store()


def _lease(store: ArtifactStore, owner: str, ttl_s: float = 30.0) -> Lease:
    return Lease(store, "eval", RUN, owner=owner, ttl_s=ttl_s, settle_s=0.05)


def test_a_second_owner_is_refused_until_release(store):
    a, b = _lease(store, "a"), _lease(store, "b")
    with a.hold():
        state = store.read_json(lease_path("eval", RUN))
        assert state["owner"] == "a" and state["expires"] > time.time() + 25
        with pytest.raises(LeaseHeld, match=r"eval lease on rl-minirl-0000abcd is held by a \(since .*expires in"):
            b.acquire()
        assert b.try_acquire(QUIET).owner == "a"  # nothing of b's was written over a's
        assert store.read_json(lease_path("eval", RUN))["owner"] == "a"
        assert Lease(store, "train", RUN, owner="b", settle_s=0.05).try_acquire(QUIET) is None  # another purpose
    assert not store.exists(lease_path("eval", RUN))  # released: the object is gone
    with b.hold():
        assert b.read().owner == "b"


def test_heartbeat_renews_the_expiry(store):
    a = _lease(store, "a", ttl_s=1.5)  # heartbeats every 0.5 s
    with a.hold():
        first = a.read()
        time.sleep(2.5)  # past the first expiry: only heartbeats keep it alive
        renewed = a.read()
        assert renewed.owner == "a" and not renewed.expired() and renewed.expires > first.expires + 1.5
        assert renewed.acquired_at == first.acquired_at and renewed.heartbeat >= first.heartbeat
        with pytest.raises(LeaseHeld):
            _lease(store, "b").acquire()
        assert not a.lost


def test_a_stale_lease_is_taken_over_and_its_old_holder_learns_it(store):
    a = _lease(store, "a", ttl_s=1.0)
    a.acquire()
    a._stop.set()  # the holder hangs: no more heartbeats
    time.sleep(1.2)
    said = []
    b = _lease(store, "b")
    b.acquire(echo=said.append)
    assert b.read().owner == "b" and "taking over the stale eval lease" in said[0] and "of a" in said[0]
    assert a.heartbeat() is False and a.lost  # the old holder does not write over b's lease
    a.release()  # and its release leaves b's lease alone
    assert b.read().owner == "b"
    b.release()


def test_a_lease_of_a_dead_process_of_this_machine_is_stale_at_once(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is gone (and not reused this quickly)
    killed = _lease(store, f"{socket.gethostname()}/pid {dead.pid}/0000abcd", ttl_s=600)
    killed.acquire()
    killed._stop.set()
    elsewhere = Lease(store, "train", RUN, owner=f"other-host/pid {dead.pid}/1", ttl_s=600, settle_s=0.05)
    elsewhere.acquire()
    elsewhere._stop.set()
    said: list[str] = []
    assert _lease(store, "b").try_acquire(said.append) is None  # taken over without waiting 600 s
    assert "its process is gone" in said[0]
    other = Lease(store, "train", RUN, owner="b", settle_s=0.05).try_acquire(QUIET)
    assert other is not None and other.owner.startswith("other-host/")  # another machine's pid says nothing here


def test_waiting_for_a_holder_that_releases(store):
    a, b = _lease(store, "a"), _lease(store, "b")
    a.acquire()
    threading.Timer(1.0, a.release).start()
    said = []
    t0 = time.monotonic()
    b.acquire(wait_s=20, poll_s=0.2, echo=said.append)
    assert 0.8 < time.monotonic() - t0 < 10 and b.read().owner == "b"
    assert said and said[0].startswith("[lease] waiting up to 20 s: eval lease on") and "held by a" in said[0]
    b.release()


def test_racing_writers_end_with_one_holder(store):
    # Both find the lease free and write; the settle-and-read-back leaves exactly one of them holding it.
    leases = [Lease(store, "eval", RUN, owner=f"w{i}", settle_s=0.5) for i in range(3)]
    outcomes: dict[str, object] = {}
    threads = [threading.Thread(target=lambda x=x: outcomes.__setitem__(x.owner, x.try_acquire(QUIET))) for x in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    holders = [owner for owner, other in outcomes.items() if other is None]
    assert len(holders) == 1 and store.read_json(lease_path("eval", RUN))["owner"] == holders[0]


TRAINER = """
import pathlib, sys, json, os
root = pathlib.Path(sys.argv[1])
(root / "global_step_1").mkdir(parents=True)
(root / "global_step_1" / "w.bin").write_bytes(b"w")
(root / "latest_checkpointed_iteration.txt").write_text("1")
open(os.environ["VERL_FILE_LOGGER_PATH"], "w").write(json.dumps({"step": 1, "data": {}}) + "\\n")
"""


def test_train_stage_waits_for_the_run_holder_then_skips_what_it_completed(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    run = RunLayout(store, RUN)
    job = VerlJob(
        "rl", "stand-in", 1, lambda root: [sys.executable, "-c", TRAINER, str(root)], dict(os.environ), 60, {}
    )
    other = Lease(store, "train", RUN, owner="other flow run", settle_s=0.05)
    other.acquire()

    def finish_and_release() -> None:  # the other flow run trains the run to completion, then releases
        run.update_run(kind="rl", status="complete", checkpoints=[1], latest_step=1)
        other.release()

    threading.Timer(1.5, finish_and_release).start()
    said: list[str] = []
    result = run_tracked(run, job, tmp_path / "local", echo=said.append)
    assert result.skipped and any("waiting up to 60 s: train lease" in s and "other flow run" in s for s in said)
    assert not store.exists(lease_path("train", RUN))
    # Free lease, fresh run: it trains, and leaves no lease behind.
    fresh = RunLayout(store, "rl-minirl-0000ffff")
    assert not run_tracked(fresh, job, tmp_path / "fresh", echo=QUIET).skipped
    assert fresh.read_run()["status"] == "complete" and not store.exists(lease_path("train", fresh.run_id))
