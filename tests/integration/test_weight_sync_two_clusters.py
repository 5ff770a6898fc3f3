"""Two local Ray clusters' verl weight syncs on one machine: what hung a phase-1 cell beside a soak run (2026-12-04).

Each cluster is a local run's (tests/support/weight_sync_cluster.py): verl's sender in a Ray task, verl's receiver in
a child of a Ray actor, as vLLM's engine is, one weight through verl's CPU (shared-memory) path, without training;
well under a minute a cluster. Cluster A's sender binds, then cluster B's, then A's receiver connects and receives.

* verl 0.9.1 as shipped: both clusters' first job is ``01000000``, so both name one socket; B's sender deletes A's and
  binds its own, and A's vLLM receives B's weights (A's sender would wait for ever). If this starts failing, verl
  names the socket per cluster and ``weight_sync_scope`` can go.
* with :mod:`stable_verl.verl_ext.weight_sync_scope` (what the stable-verl plugin installs at ``import verl``): each
  cluster has its own socket, and each receiver gets its own cluster's weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stable_verl.launch.runner import kill_process_group
from tests.support import progress

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended: two Ray clusters, about 2 min

VALUES = {"a": 1.0, "b": 2.0}


def _socket(handle: str) -> Path:
    return Path(handle.removeprefix("ipc://"))


def _run_two(folder: Path, scoped: bool) -> dict:
    """Run clusters a and b as above; their senders' and receivers' reports."""
    flag = [] if scoped else ["--unscoped"]
    procs: dict[str, subprocess.Popen] = {}
    reports: dict[str, dict] = {}

    def read(name: str) -> dict | None:
        path = folder / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def wait(ready, what: str):
        def checked():
            for name, proc in procs.items():
                if proc.poll() not in (None, 0):
                    log = (folder / f"{name}.log").read_text()[-3000:]
                    raise AssertionError(f"cluster {name} failed (exit code {proc.returncode}):\n{log}")
            return ready()

        return progress.wait_for(checked, what=what, watch_pids=[p.pid for p in procs.values()])

    try:
        bound: dict[str, int] = {}
        for name, value in VALUES.items():
            cmd = [sys.executable, "-m", "tests.support.weight_sync_cluster", name, str(value), str(folder), *flag]
            with open(folder / f"{name}.log", "w") as log:
                procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            reports[f"{name}.sender"] = wait(lambda n=name: read(f"{n}.sender"), f"cluster {name}'s sender")
            path = _socket(reports[f"{name}.sender"]["path"])

            def bound_anew(path: Path = path) -> bool:  # B's sender deletes A's socket if they share the path
                return path.exists() and path.stat().st_ino not in bound.values()

            wait(bound_anew, f"cluster {name}'s sender binding {path}")
            bound[name] = path.stat().st_ino
        (folder / "a.go").touch()
        reports["a.receiver"] = wait(lambda: read("a.receiver"), "cluster a's receiver")
        if scoped:
            (folder / "b.go").touch()
            reports["b.receiver"] = wait(lambda: read("b.receiver"), "cluster b's receiver")
            wait(lambda: all(p.poll() is not None for p in procs.values()), "both clusters' end")
            reports["exit"] = [p.returncode for p in procs.values()]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                kill_process_group(proc, grace_s=5)
    return reports


def test_unscoped_two_local_clusters_share_one_socket_and_one_gets_the_others_weights(tmp_path):
    got = _run_two(tmp_path, scoped=False)
    a, b = got["a.sender"], got["b.sender"]
    assert a["job"] == b["job"] == "01000000"  # every fresh local cluster's first job
    assert a["path"] == b["path"] == got["a.receiver"]["path"]  # one socket for both runs
    assert got["a.receiver"]["got"] == [VALUES["b"]] * 4, got  # a's vLLM loaded b's weights
    print(f"\nWEIGHT-SYNC-UNSCOPED {json.dumps(got)}")


def test_scoped_local_clusters_each_sync_their_own_weights(tmp_path):
    got = _run_two(tmp_path, scoped=True)
    assert got["a.sender"]["job"] == got["b.sender"]["job"]  # the same job id ...
    assert got["a.sender"]["path"] != got["b.sender"]["path"]  # ... two sockets
    for name, value in VALUES.items():
        assert got[f"{name}.receiver"]["path"] == got[f"{name}.sender"]["path"]  # both ends agree
        assert got[f"{name}.receiver"]["got"] == [value] * 4, got
        assert "-raylet" in got[f"{name}.sender"]["path"]
    assert got["exit"] == [0, 0], got
    print(f"\nWEIGHT-SYNC-SCOPED {json.dumps(got)}")
