"""Process-tree bookkeeping for verl subprocesses: nothing verl started may outlive its stage.

verl runs in its own session (``start_new_session=True``), but not everything it starts stays in that
process group: Ray puts every worker in a group of its own (same session), and torchrun puts its
trainer in a new session (a child of torchrun). :func:`kill_tree` therefore signals the leader's
session *and* every descendant of it.

Running leaders are registered here (and work that is not a local process, such as a Ray Job, registers a
stop function with :func:`register_stop`), so that a Prefect ``on_cancellation``/``on_crashed`` hook and the
SIGTERM handler of :func:`install_sigterm_handler` can kill whatever is still running, even when the
code that started it never reaches its ``finally``.

A process killed outright (SIGKILL, the OOM killer) runs no hook, and its verl tree lives on, orphaned. A launcher
that runs in a run's local folder therefore records its leader there (:func:`record_leader`); the next attempt of
the run, which holds the run's lease, kills what an earlier attempt left running (:func:`kill_recorded_leader`)
before it starts: one trainer per run, also after kill -9.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LEADER_FILE = "leader.json"
"""In a run's local folder: the pid and start time of the process tree an attempt is running there."""

_lock = threading.Lock()
_active: dict[int, str] = {}  # leader pid (= its session and process group id) -> what it runs
_stops: dict[str, Callable[[], None]] = {}  # name (a Ray Job's submission id) -> how to stop it


def register(pid: int, name: str) -> None:
    """Record a running leader (started with ``start_new_session=True``)."""
    with _lock:
        _active[pid] = name


def unregister(pid: int) -> None:
    with _lock:
        _active.pop(pid, None)


def register_stop(name: str, stop: Callable[[], None]) -> None:
    """Record running work that is not a local process tree, with the function that stops it."""
    with _lock:
        _stops[name] = stop


def unregister_stop(name: str) -> None:
    with _lock:
        _stops.pop(name, None)


def active() -> dict[int, str]:
    """Running leaders: pid -> name."""
    with _lock:
        return dict(_active)


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, sid) of a live process, from /proc (None if gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def start_time(pid: int) -> int | None:
    """The start time of a live process, in clock ticks since boot: with the pid, it names one process (pids are
    reused). None if gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def runqueue_wait_s(pid: int) -> float:
    """Seconds the threads of a live process have spent runnable but waiting for a CPU (Linux's
    ``/proc/<pid>/task/<tid>/schedstat``, second field); 0.0 where the kernel does not say. A process starved of CPU
    by other work waits here; a hung one sleeps and does not."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    waited_ns = 0
    for tid in tids:
        try:
            waited_ns += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that just ended, or no schedstat in this kernel
            continue
    return waited_ns / 1e9


def _processes() -> Iterator[tuple[int, tuple[str, int, int, int]]]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            yield int(entry), st


def _exiting(pid: int) -> bool:
    """Whether a process whose main thread shows as ended (``Z``) still has live threads: it is still exiting (or
    running), cannot be waited for yet, and counts as live. Read only for the rare zombie."""
    try:
        tids = [tid for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid]
    except OSError:
        return False
    for tid in tids:
        try:
            state = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # the thread has just ended
            continue
        if state not in ("Z", "X"):
            return True
    return False


def tree(leader: int) -> set[int]:
    """Live processes of ``leader``'s session or process group, plus all their descendants. Not live: a zombie, or a
    process being reaped; live: one whose main thread has ended while others still run (:func:`_exiting`)."""
    procs = {pid: st for pid, st in _processes() if st[0] not in ("Z", "X") or (st[0] == "Z" and _exiting(pid))}
    members = {pid for pid, (_, _, pgid, sid) in procs.items() if leader in (pgid, sid)}
    if leader in procs:
        members.add(leader)
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(members)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in members:
                members.add(child)
                todo.append(child)
    return members


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_tree(leader: int, grace_s: float = 10.0) -> None:
    """SIGTERM ``leader``'s tree (:func:`tree`), wait up to ``grace_s``, then SIGKILL what is left."""
    pids = tree(leader)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        pids = {p for p in pids | tree(leader) if (st := _stat(p)) is not None and st[0] not in ("Z", "X")}
        if not pids:
            return
        time.sleep(0.1)
    _signal_all(pids | tree(leader), signal.SIGKILL)


def record_leader(folder: Path, pid: int, name: str) -> None:
    """Note in ``folder`` that ``pid`` (a leader started with ``start_new_session=True``) runs ``name`` there."""
    record = {"pid": pid, "start_time": start_time(pid), "name": name}
    (folder / LEADER_FILE).write_text(json.dumps(record) + "\n")


def forget_leader(folder: Path, pid: int) -> None:
    """Remove ``folder``'s leader record if it names ``pid`` (its tree was stopped)."""
    path = folder / LEADER_FILE
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads(path.read_text())["pid"] == pid:
            path.unlink()


def kill_recorded_leader(folder: Path, grace_s: float = 10.0) -> str | None:
    """Kill the tree recorded in ``folder`` by an earlier attempt if any of it still runs; say what was killed.

    The recorded leader counts only if it is the same process (same start time); if it is gone, what is left of
    its session and group (Ray daemons, workers) is killed: no other process can have taken their ids.
    """
    path = folder / LEADER_FILE
    try:
        record = json.loads(path.read_text())
        pid, started, name = int(record["pid"]), record["start_time"], str(record["name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    now = start_time(pid)
    if now is not None and now != started:  # the pid now names another process: the tree is gone
        path.unlink(missing_ok=True)
        return None
    members = tree(pid)  # the leader's session and group outlive it: what is left of them, if it is gone
    if members:
        kill_tree(pid, grace_s)
    path.unlink(missing_ok=True)
    return f"{name} (pid {pid}, {len(members)} process(es))" if members else None


def kill_active(grace_s: float = 10.0) -> list[int | str]:
    """Stop every registered job (in registration order), then kill the trees of every registered leader; returns
    their names and pids. Stops come first: a flow's queued stages register one (``flows/cells.py``) before any
    stage starts, so no queued stage starts in a thread freed by a killed tree."""
    with _lock:
        stops = dict(_stops)
    for name, stop in stops.items():
        with contextlib.suppress(Exception):  # best effort: the others must still be stopped
            stop()
        unregister_stop(name)
    leaders = list(active())
    for pid in leaders:
        kill_tree(pid, grace_s)
        unregister(pid)
    return [*stops, *leaders]


def install_sigterm_handler() -> None:
    """On SIGTERM, kill every registered tree first, then run the previous handler (e.g. Prefect's).

    Call it at the start of a flow (Prefect restores its own handler when the flow ends). Installing
    twice does not chain twice; outside the main thread (where Python cannot set handlers) it does nothing.
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if getattr(previous, "_kills_verl", False):
            return

        def _on_sigterm(signum: int, frame) -> None:
            kill_active(grace_s=5.0)
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        _on_sigterm._kills_verl = True  # type: ignore[attr-defined]
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass
