"""Process-tree kills: the session, the groups inside it, and descendants that moved to a new session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from stable_verl.pipeline.launch import procs

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
    leader.wait(timeout=10)
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
        leader.wait(timeout=10)
        assert seen == [signal.SIGTERM] and procs.active() == {}
        time.sleep(0.5)
        assert not any(_alive(c) for c in children)
    finally:
        signal.signal(signal.SIGTERM, previous)
        procs.kill_tree(leader.pid, grace_s=0)
        procs.unregister(leader.pid)
