"""Process-tree kills: the session, the groups inside it, and descendants that moved to a new session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from stable_verl.launch import procs
from tests.support import progress

# A leader (own session) whose children mimic Ray (own process group, same session) and torchrun's trainer
# (own session, child of the leader); it prints their pids and sleeps.
TREE = """
import os, subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
ray_like = subprocess.Popen(sleep, process_group=0)
torchrun_like = subprocess.Popen(sleep, start_new_session=True)
print(ray_like.pid, torchrun_like.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    st = procs._stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _spawn_tree() -> tuple[subprocess.Popen, list[int]]:
    leader = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True, start_new_session=True)
    with leader.stdout:  # the pids are all it prints
        children = [int(p) for p in leader.stdout.readline().split()]
    return leader, children


def test_tree_finds_other_groups_and_sessions_below_the_leader():
    leader, children = _spawn_tree()
    try:
        assert {leader.pid, *children} <= procs.tree(leader.pid)
        assert {os.getpgid(c) for c in children} & {leader.pid} == set()  # neither is in the leader's group
    finally:
        procs.kill_tree(leader.pid, grace_s=0)
        leader.wait()


def test_kill_tree_leaves_nothing_running():
    leader, children = _spawn_tree()
    procs.kill_tree(leader.pid, grace_s=5)
    leader.wait(timeout=10)  # bounds on a kill, which is prompt: what the test asserts
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(c) for c in children)


def test_sigterm_handler_kills_registered_trees_then_runs_the_previous_handler():
    leader, children = _spawn_tree()
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        procs.register(leader.pid, "verl test")
        procs.install_sigterm_handler()
        procs.install_sigterm_handler()  # idempotent: does not wrap itself
        os.kill(os.getpid(), signal.SIGTERM)
        leader.wait(timeout=10)  # the handler kills at once: a bound on an instant operation
        assert seen == [signal.SIGTERM] and procs.active() == {}
        time.sleep(0.5)
        assert not any(_alive(c) for c in children)
    finally:
        signal.signal(signal.SIGTERM, previous)
        procs.kill_tree(leader.pid, grace_s=0)
        procs.unregister(leader.pid)


# A flow process that starts TREE with the local launcher in ``argv[1]`` (a run's local folder), then waits.
FLOW = """
import os, sys, time
from stable_verl.launch.runner import LaunchSpec, LocalLauncher
LocalLauncher().start(LaunchSpec([sys.executable, "-c", sys.argv[2]], dict(os.environ), cwd=sys.argv[1]))
print("started", flush=True)
time.sleep(600)
"""


def test_a_tree_left_by_a_flow_killed_outright_is_killed_by_the_next_attempt(tmp_path):
    flow = subprocess.Popen([sys.executable, "-c", FLOW, str(tmp_path), TREE], stdout=subprocess.PIPE, text=True)
    with flow.stdout:  # "started" is all it prints
        assert flow.stdout.readline().strip() == "started"
    leader = json.loads((tmp_path / procs.LEADER_FILE).read_text())["pid"]
    three = lambda: len(procs.tree(leader)) >= 3  # noqa: E731 - the leader and its two children
    progress.wait_for(three, what="the leader's two children", watch_pids=[leader], poll_s=0.1)
    left = procs.tree(leader)
    try:
        flow.kill()  # SIGKILL, as the OOM killer would: no hook runs, the verl tree is orphaned
        flow.wait()
        time.sleep(0.5)
        assert len(left) == 3 and all(_alive(pid) for pid in left)
        killed = procs.kill_recorded_leader(tmp_path, grace_s=5)
        assert killed is not None and f"pid {leader}" in killed
        deadline = time.monotonic() + 10  # a bound on the kill, which is prompt: what the test asserts
        while any(_alive(pid) for pid in left) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in left)
        assert not (tmp_path / procs.LEADER_FILE).exists()
    finally:
        procs.kill_tree(leader, grace_s=0)


def test_a_record_whose_pid_names_another_process_now_kills_nothing(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        record = {"pid": sleeper.pid, "start_time": procs.start_time(sleeper.pid) - 1, "name": "verl rl"}
        (tmp_path / procs.LEADER_FILE).write_text(json.dumps(record))  # the recorded process is gone; pid reused
        assert procs.kill_recorded_leader(tmp_path, grace_s=0) is None
        time.sleep(0.2)
        assert _alive(sleeper.pid) and not (tmp_path / procs.LEADER_FILE).exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_local_launcher_records_its_leader_while_it_runs(tmp_path):
    from stable_verl.launch.runner import LaunchSpec, LocalLauncher

    launcher = LocalLauncher()
    launcher.start(LaunchSpec([sys.executable, "-c", "import time; time.sleep(600)"], dict(os.environ), cwd=tmp_path))
    record = json.loads((tmp_path / procs.LEADER_FILE).read_text())
    assert record["pid"] == launcher.proc.pid and record["start_time"] == procs.start_time(launcher.proc.pid)
    launcher.stop()
    launcher.proc.stdout.close()  # never streamed: stream() closes it in a run
    assert not (tmp_path / procs.LEADER_FILE).exists()


def test_stops_come_before_the_trees_so_no_queued_stage_starts_in_a_freed_thread():
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    order = []
    procs.register(leader.pid, "verl rl")
    procs.register_stop("grid: queued cells", lambda: order.append(("queued cells stopped", _alive(leader.pid))))
    try:
        assert procs.kill_active(grace_s=1) == ["grid: queued cells", leader.pid]
        assert order == [("queued cells stopped", True)]  # while the running stage's tree was still alive
        leader.wait(timeout=10)  # killed with a 1 s grace: a bound on an instant operation
        assert procs.active() == {}
    finally:
        procs.kill_tree(leader.pid, grace_s=0)
        leader.wait()
