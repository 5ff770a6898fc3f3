"""Waits in tests that end when the work stops making progress, not when a guessed number of seconds runs out.

Built on the stages' stall rule (:class:`~stable_verl.launch.stall.StallWatch`): a child process, or something a test
waits for, goes on while within the last ``stall_s`` seconds it printed a line of a new shape, its process tree used
or waited for CPU (Ray's own daemons left out, as for a stage), or a progress token the test names changed (a log's
size, the number of nodes up). A healthy run on a machine five times slower is slower, not stalled; a hung one is
stopped ``stall_s`` after it stopped working, with what it last printed.

* :func:`run`: ``subprocess.run`` with captured output (text), failing when the child stops making progress.
* :func:`wait_for`: poll a condition while a process tree, or a progress token, keeps moving.
* :class:`Output`: a child's output drained in a thread (it never blocks on a full pipe), awaited line by line.

Both take an optional total ``timeout_s``, off by default: use it only where the bound is what the test asserts.
"""

from __future__ import annotations

import collections
import re
import subprocess
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import IO, Any, TypeVar

from stable_verl.launch import procs
from stable_verl.launch.runner import kill_process_group
from stable_verl.launch.stall import DEFAULT_STALL_S, StallWatch, tree_cpu_times

T = TypeVar("T")

STALL_S = DEFAULT_STALL_S
"""The tests' default: the stages' (stall.py says why 300 s)."""
POLL_S = 0.5
"""Seconds between two looks at a child or a condition."""
TAIL_LINES = 40
"""Output lines a failure quotes."""


class NoProgress(RuntimeError):
    """The child process or the awaited condition stopped making progress (or passed its optional total limit)."""


def run(
    cmd: Sequence[str],
    *,
    stall_s: float = STALL_S,
    timeout_s: float | None = None,
    check: bool = False,
    **popen_kw: Any,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(cmd, capture_output=True, text=True, ...)`` that fails only when the child stops making
    progress: no new line shape on stdout or stderr, no CPU used or waited for by its tree, for ``stall_s``.

    The child runs in a session of its own; on a stall (or past ``timeout_s``, or on any exception here, Ctrl-C
    included) its whole tree is killed and :class:`NoProgress` names the limit with the last lines it printed.
    Returns once it has exited and closed its output, like ``subprocess.run``. ``popen_kw``: ``env``, ``cwd``, ...
    """
    argv = [str(a) for a in cmd]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,  # its own session: its whole tree can be found and killed
        **popen_kw,
    )
    watch = StallWatch(stall_s, timeout_s, cpu_times=lambda: tree_cpu_times([proc.pid]))
    lock = threading.Lock()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    out: list[str] = []
    err: list[str] = []

    def pump(stream: IO[str], sink: list[str]) -> None:
        with stream:
            for line in stream:
                sink.append(line)
                with lock:
                    tail.append(line.rstrip("\n"))
                    watch.on_line(line)

    pipes = ((proc.stdout, out), (proc.stderr, err))
    readers = [threading.Thread(target=pump, args=pipe, daemon=True) for pipe in pipes]
    for reader in readers:
        reader.start()
    try:
        while proc.poll() is None or any(r.is_alive() for r in readers):  # a straggler may hold the pipes open
            with lock:
                why = watch.check()
            if why is not None:
                kill_process_group(proc, grace_s=5)
                for reader in readers:
                    reader.join(timeout=10)  # the pipes close with the tree: a bound on an instant operation
                with lock:
                    last = "\n".join(tail)
                raise NoProgress(f"{argv[0]} {why}; its last lines:\n{last}")
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:  # an exception here (Ctrl-C, a stall): nothing it started may outlive the test
            kill_process_group(proc, grace_s=5)
    done = subprocess.CompletedProcess(argv, proc.returncode, "".join(out), "".join(err))
    if check:
        done.check_returncode()
    return done


def wait_for(
    predicate: Callable[[], T],
    *,
    what: str,
    stall_s: float = STALL_S,
    watch_pids: Iterable[int] | Callable[[], Iterable[int]] = (),
    progress: Callable[[], Hashable] | None = None,
    timeout_s: float | None = None,
    poll_s: float = POLL_S,
) -> T:
    """Poll ``predicate`` until it returns a true value (returned); fail naming ``what`` once nothing progressed for
    ``stall_s``.

    Progress: the trees of ``watch_pids`` (pids, or a callable giving them) used or waited for CPU, as in
    :func:`run`, or ``progress()`` (a log's size, the number of nodes up) returned a value it had not returned
    before. At least one of the two is required (else this would be a plain wall-clock limit: ``timeout_s``). When
    every watched tree has ended, the wait fails at once. ``predicate`` may raise to fail early with its own message.
    """
    fixed = None if callable(watch_pids) else tuple(watch_pids)

    def pids() -> tuple[int, ...]:
        return fixed if fixed is not None else tuple(watch_pids())  # type: ignore[operator]

    watched = fixed is None or bool(fixed)
    if not watched and progress is None:
        raise ValueError("wait_for needs watch_pids or progress: what tells a slow wait from a hung one")
    watch = StallWatch(stall_s, timeout_s, cpu_times=(lambda: tree_cpu_times(pids())) if watched else None)
    seen: set[Hashable] = set()
    while not (value := predicate()):
        if progress is not None:
            token = progress()
            if token not in seen:  # a value not seen before: moving on (a size that grew, one more node up)
                seen.add(token)
                watch.last_progress = watch.clock()
        why = watch.check()
        if why is None and watched and (now := pids()) and not any(procs.tree(pid) for pid in now):
            if value := predicate():  # it came true as they ended
                return value
            why = f"every watched process ended (pids {sorted(now)})"
        if why is not None:
            raise NoProgress(f"waiting for {what}: {why.replace(', last step 0', '')}")
        time.sleep(poll_s)
    return value


class Output:
    """A child's text output (``Popen(..., stdout=PIPE, text=True).stdout``), read to its end in a thread of its own
    so the child never blocks on a full pipe; :meth:`wait_for` awaits a line."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def tail(self, n: int = TAIL_LINES) -> str:
        return "\n".join(self.lines[-n:])

    def wait_for(self, pattern: str, *, what: str, **wait_kw: Any) -> re.Match[str]:
        """The first line matching ``pattern``, waited for (:func:`wait_for`, with ``wait_kw``) while new lines come
        or the watched trees work; fails naming ``what`` with the last lines, also when the output ends first."""
        regex, checked = re.compile(pattern), [0]

        def found() -> re.Match[str] | None:
            ended = not self._thread.is_alive()  # read before the lines: none can come after it
            for line in self.lines[checked[0] :]:
                checked[0] += 1
                if m := regex.search(line):
                    return m
            if ended:
                raise NoProgress(f"waiting for {what}: the output ended; its last lines:\n{self.tail()}")
            return None

        try:
            return wait_for(found, what=what, progress=lambda: len(self.lines), **wait_kw)
        except NoProgress as err:
            if "the output ended" in str(err):
                raise
            raise NoProgress(f"{err}; the last lines:\n{self.tail()}") from None
