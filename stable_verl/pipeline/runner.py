"""Run a verl entry point as a subprocess: own process group, streamed log, hard timeout, loud failure.

Two CPU failure modes make verl hang instead of exiting (Ray resource starvation, a dead vLLM
engine), so every run has a wall-clock limit. On timeout, error or interrupt the whole process
group (torchrun children, the Ray driver and the daemons it started) is terminated, then killed.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class VerlRunError(RuntimeError):
    """A verl subprocess failed or timed out; the message ends with the tail of its log."""


@dataclass(frozen=True)
class RunResult:
    returncode: int
    seconds: float
    log_path: Path


def kill_process_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM every process in ``proc``'s group, then SIGKILL what is left after ``grace_s``.

    Also called after a normal exit, to reap stragglers (e.g. Ray daemons) left in the group.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the group is empty
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_streaming(
    argv: Sequence[str],
    log_path: str | Path,
    env: dict[str, str],
    timeout_s: float,
    cwd: str | Path | None = None,
    on_line: Callable[[str], None] | None = None,
    name: str = "verl",
) -> RunResult:
    """Run ``argv`` to completion, appending its output to ``log_path``; raise ``VerlRunError`` on failure.

    ``on_line`` receives every output line (e.g. to print progress); it must be cheap.
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
            start_new_session=True,  # own process group: we can kill everything it spawns
        )
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
    seconds = time.monotonic() - start
    if timed_out.is_set():
        raise VerlRunError(_failure(name, f"timed out after {timeout_s:.0f} s (killed)", log_path, tail))
    if proc.returncode != 0:
        raise VerlRunError(_failure(name, f"exited with code {proc.returncode}", log_path, tail))
    return RunResult(proc.returncode, seconds, log_path)


def _failure(name: str, what: str, log_path: Path, tail: collections.deque[str]) -> str:
    lines = "\n".join(f"    {t}" for t in tail)
    return f"{name} {what}; full log: {log_path}\n  last lines:\n{lines}"


def python_module(module: str, *args: str) -> list[str]:
    """argv for ``python -m module args`` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", module, *args]
