"""How a verl stage runs: one small interface (start / stream / stop), and the local subprocess behind it.

:class:`Launcher` is the seam between the tracked stage lifecycle and where verl actually runs:
:class:`LocalLauncher` (a subprocess in its own session, today's default) or
:class:`~stable_verl.launch.ray_job.RayJobLauncher` (a Ray Job on an existing cluster).
:func:`launch` drives either one the same way: the log goes to a file and ``on_line``, the stall rule of
:mod:`~.launch.stall` stops it when it stops making progress (two CPU failure modes make verl hang instead of
exiting: Ray resource starvation, a dead vLLM engine), an optional total limit too, and an error or interrupt
(Ctrl-C, Prefect cancellation) stops it before the exception propagates.
While it runs it is registered in :mod:`stable_verl.launch.procs` for cancellation hooks.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stable_verl.launch import procs
from stable_verl.launch.log_errors import failure_summary
from stable_verl.launch.stall import DEFAULT_STALL_S, StallWatch, tree_cpu_times


class VerlRunError(RuntimeError):
    """A verl run failed, timed out or was stopped; the message ends with the tail of its log."""


@dataclass(frozen=True)
class RunResult:
    returncode: int
    seconds: float
    log_path: Path


@dataclass(frozen=True)
class LaunchSpec:
    """What to run: the command line and the environment stable-verl sets (on top of the launcher's own)."""

    argv: Sequence[str]
    env: Mapping[str, str]
    """Local: the whole environment. Ray Job: only these variables, as the job's ``runtime_env.env_vars``."""
    name: str = "verl"
    cwd: str | Path | None = None
    key: str = ""
    """Identity of the work (a run id): a launcher may refuse to start what is already running under it."""
    attempt: int = 1
    num_gpus: float = 0
    """GPUs the entrypoint process itself needs (SFT's torchrun: its trainers), 0 for a Ray driver."""
    metadata: Mapping[str, str] = field(default_factory=dict)


class Launcher(ABC):
    """Start a verl command somewhere, stream its output until it ends, stop it. Not reentrant: one run each."""

    kind: str = ""

    def check(self, spec: LaunchSpec) -> None:  # noqa: B027 - optional hook
        """Raise before anything local changes if ``spec`` must not start (e.g. it is already running)."""

    @abstractmethod
    def start(self, spec: LaunchSpec) -> str:
        """Start ``spec``; returns a line saying where it runs (a pid, a job id)."""

    @abstractmethod
    def stream(self, on_line: Callable[[str], None], halt: Callable[[], str | None]) -> int | None:
        """Feed every output line to ``on_line`` until the run ends (returns its exit code, 0 = success) or
        ``halt()``, polled about every second, says why it must stop (returns None, the run still going)."""

    def cpu_times(self) -> dict[int, float] | None:
        """CPU seconds each live process of the run used or waited for on a run queue (None: no local process tree
        to measure)."""
        return None

    @abstractmethod
    def stop(self) -> None:
        """Stop the run and everything it started; idempotent, also after a normal end (reaps stragglers)."""

    def describe_failure(self) -> str:
        """What went wrong, in a few words, after a non-zero ``stream`` result."""
        return ""


def launch(
    launcher: Launcher,
    spec: LaunchSpec,
    log_path: str | Path,
    timeout_s: float | None = None,
    on_line: Callable[[str], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    stall_s: float | None = DEFAULT_STALL_S,
    silent_s: float | None = None,
) -> RunResult:
    """Run ``spec`` with ``launcher`` to completion, appending its output to ``log_path``.

    Raises ``VerlRunError`` (with the log's tail) on failure, a stall (no progress for ``stall_s``,
    :mod:`~.launch.stall`; the stages' default unless told) or past the total limit ``timeout_s`` (off unless told);
    on any exception the run is stopped first. None: no such limit. ``silent_s``: CPU use alone keeps the run
    alive at most this long without a new step or line (verl's stages: :data:`~.launch.stall.DEFAULT_SILENT_S`;
    None: no limit). ``on_line`` receives every output line and must be cheap; ``on_start`` the launcher's start
    line.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: collections.deque[str] = collections.deque(maxlen=40)
    start = time.monotonic()
    watch = StallWatch(stall_s or float("inf"), timeout_s, cpu_times=launcher.cpu_times, silent_s=silent_s)
    halted: list[str] = []

    def halt() -> str | None:
        if not halted and (why := watch.check()) is not None:
            halted.append(why)
        return halted[0] if halted else None

    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(spec.argv)}\n")
        log.flush()

        def line(text: str) -> None:
            log.write(text + "\n")
            tail.append(text)
            watch.on_line(text)
            if on_line is not None:
                on_line(text)

        where = launcher.start(spec)
        if on_start is not None:
            on_start(where)
        try:
            code = launcher.stream(line, halt)
        finally:  # also on KeyboardInterrupt, Prefect cancellation, a lost connection, ...
            launcher.stop()
            log.flush()
    seconds = time.monotonic() - start
    if code is None:
        raise VerlRunError(_failure(spec.name, f"{halted[0] if halted else 'stopped'} (stopped)", log_path, tail))
    if code != 0:
        what = launcher.describe_failure() or f"exited with code {code}"
        raise VerlRunError(_failure(spec.name, what, log_path, tail))
    return RunResult(code, seconds, log_path)


def _failure(name: str, what: str, log_path: Path, tail: collections.deque[str]) -> str:
    """One line that says what happened and where the log is, then the cause found in the log and its tail."""
    return f"{name} {what}; full log: {log_path}\n{failure_summary(log_path, tail)}"


class LocalLauncher(Launcher):
    """A subprocess in its own session; stopping it kills its whole tree (torchrun children, Ray, its workers).

    With a ``cwd`` (a run's local folder), the leader is recorded there while it runs, and :meth:`check` kills a
    tree an earlier attempt left running there (its flow process was killed outright, e.g. by the OOM killer).
    """

    kind = "local"

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.folder: Path | None = None

    def check(self, spec: LaunchSpec) -> None:
        if spec.cwd is not None and (killed := procs.kill_recorded_leader(Path(spec.cwd))):
            print(f"[{spec.name}] killed {killed}, left running by an earlier attempt", file=sys.stderr, flush=True)

    def start(self, spec: LaunchSpec) -> str:
        self.proc = subprocess.Popen(
            list(spec.argv),
            cwd=spec.cwd,
            env=dict(spec.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            errors="replace",
            start_new_session=True,  # own session: we can find and kill everything it spawns
        )
        procs.register(self.proc.pid, spec.name)
        if spec.cwd is not None:
            self.folder = Path(spec.cwd)
            procs.record_leader(self.folder, self.proc.pid, spec.name)
        return f"pid {self.proc.pid} (its own session and process group)"

    def stream(self, on_line: Callable[[str], None], halt: Callable[[], str | None]) -> int | None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        halted, done = threading.Event(), threading.Event()

        def _watchdog() -> None:  # reading stdout blocks: a thread ends it by killing the tree
            while not done.wait(1.0):
                if halt() is not None and proc.poll() is None:
                    halted.set()
                    kill_process_group(proc)
                    return

        thread = threading.Thread(target=_watchdog, name="verl-watchdog", daemon=True)
        thread.start()
        try:
            with proc.stdout:
                for text in proc.stdout:
                    on_line(text.rstrip("\n"))
            proc.wait()
        finally:
            done.set()
        return None if halted.is_set() else proc.returncode

    def cpu_times(self) -> dict[int, float] | None:
        return None if self.proc is None else tree_cpu_times([self.proc.pid])

    def stop(self) -> None:
        if self.proc is not None:
            kill_process_group(self.proc)
            procs.unregister(self.proc.pid)
            if self.folder is not None:
                procs.forget_leader(self.folder, self.proc.pid)


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
    timeout_s: float | None = None,
    cwd: str | Path | None = None,
    on_line: Callable[[str], None] | None = None,
    name: str = "verl",
    on_start: Callable[[int], None] | None = None,
    stall_s: float | None = DEFAULT_STALL_S,
) -> RunResult:
    """Run ``argv`` locally (:class:`LocalLauncher`) to completion; ``on_start`` receives the leader's pid. Limits
    as :func:`launch`."""
    launcher = LocalLauncher()
    started = None if on_start is None else (lambda _: on_start(launcher.proc.pid))  # type: ignore[union-attr]
    spec = LaunchSpec(argv, env, name=name, cwd=cwd)
    launcher.check(spec)  # with a cwd: kill what an earlier attempt left running there
    return launch(launcher, spec, log_path, timeout_s, on_line=on_line, on_start=started, stall_s=stall_s)


def python_module(module: str, *args: str) -> list[str]:
    """argv for ``python -m module args`` with this interpreter (the project's venv)."""
    return [sys.executable, "-m", module, *args]
