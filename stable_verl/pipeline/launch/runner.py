"""Run a verl entry point as a subprocess: own session, streamed log, hard timeout, loud failure.

Two CPU failure modes make verl hang instead of exiting (Ray resource starvation, a dead vLLM
engine), so every run has a wall-clock limit. On timeout, error or interrupt the whole process
tree (torchrun children, the Ray driver, its daemons and workers) is terminated, then killed; while
it runs, the leader is registered in :mod:`stable_verl.pipeline.launch.procs` for cancellation hooks.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stable_verl.pipeline.launch import procs
from stable_verl.pipeline.launch.log_errors import failure_summary


class VerlRunError(RuntimeError):
    """A verl subprocess failed or timed out; the message ends with the tail of its log."""


@dataclass(frozen=True)
class RunResult:
    returncode: int
    seconds: float
    log_path: Path


def kill_process_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM ``proc``'s whole tree (its session and descendants), then SIGKILL what is left after ``grace_s``.

    Also called after a normal exit, to reap stragglers (e.g. Ray daemons) left behind.
    """
    procs.kill_tree(proc.pid, grace_s)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        procs.kill_tree(proc.pid, 0)
        proc.wait()


def run_streaming(
    argv: Sequence[str],
    log_path: str | Path,
    env: dict[str, str],
    timeout_s: float,
    cwd: str | Path | None = None,
    on_line: Callable[[str], None] | None = None,
    name: str = "verl",
    on_start: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``argv`` to completion, appending its output to ``log_path``; raise ``VerlRunError`` on failure.

    ``on_line`` receives every output line (e.g. to print progress); it must be cheap. ``on_start``
    receives the pid of the started leader (= its session and process-group id).
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: collections.deque[str] = collections.deque(maxlen=40)
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            errors="replace",
            start_new_session=True,  # own session: we can find and kill everything it spawns
        )
        procs.register(proc.pid, name)
        if on_start is not None:
            on_start(proc.pid)
        timed_out = threading.Event()

        def _watchdog() -> None:
            if proc.poll() is None:
                timed_out.set()
                kill_process_group(proc)

        timer = threading.Timer(timeout_s, _watchdog)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            proc.wait()
        except BaseException:  # KeyboardInterrupt, Prefect cancellation, ...
            kill_process_group(proc)
            raise
        finally:
            timer.cancel()
            kill_process_group(proc)  # stragglers that outlived the leader
            procs.unregister(proc.pid)
    seconds = time.monotonic() - start
    if timed_out.is_set():
        raise VerlRunError(_failure(name, f"timed out after {timeout_s:.0f} s (killed)", log_path, tail))
    if proc.returncode != 0:
        raise VerlRunError(_failure(name, f"exited with code {proc.returncode}", log_path, tail))
    return RunResult(proc.returncode, seconds, log_path)


def _failure(name: str, what: str, log_path: Path, tail: collections.deque[str]) -> str:
    """One line that says what happened and where the log is, then the cause found in the log and its tail."""
    return f"{name} {what}; full log: {log_path}\n{failure_summary(log_path, tail)}"


def python_module(module: str, *args: str) -> list[str]:
    """argv for ``python -m module args`` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", module, *args]
