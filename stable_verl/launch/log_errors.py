"""The cause of a failed verl run, read from its log: the exception lines, without the known noise.

A verl log interleaves a dozen Ray actors; when a run dies its last lines are often warnings repeated by every
actor, Hydra's hint or a traceback's caret lines, and the reason sits above them. :func:`failure_summary` names
the cause (the first and the last ``SomeError: message`` line of the log) and keeps a short tail without the noise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Lines that never explain a failure.
NOISE = (
    re.compile(r"target_num_threads \d+ should not exceed total physical CPU cores"),  # TransferQueue, per call
    re.compile(r"^\s*[\^~]+\s*$"),  # traceback carets
    re.compile(r"Set the environment variable HYDRA_FULL_ERROR=1"),
    re.compile(r"^\s*$"),
)
#: ``SomeError: message`` (also ``ray.exceptions.RayTaskError(ActorDiedError): ...``), optionally after a Ray
#: actor prefix ``(TaskRunner pid=1)``; and log records at ERROR level or above.
_EXCEPTION = re.compile(r"^(\(\S+ pid=\d+(?:, ip=\S+)?\)\s+)?([\w.]+(Error|Exception|Exit|Interrupt)\b(\([\w.]+\))?):")
_ERROR_RECORD = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b")


def clean(line: str) -> str:
    """``line`` without colour codes and trailing whitespace."""
    return _ANSI.sub("", line).rstrip()


def is_noise(line: str) -> bool:
    return any(p.search(line) for p in NOISE)


def error_lines(lines: Iterable[str]) -> list[str]:
    """The exception and ERROR-record lines of a log, in order, colour codes removed."""
    out = []
    for raw in lines:
        line = clean(raw)
        if not is_noise(line) and (_EXCEPTION.match(line) or _ERROR_RECORD.search(line)):
            out.append(line)
    return out


def failure_summary(log_path: Path, tail: Iterable[str], tail_lines: int = 12, width: int = 400) -> str:
    """What a failure message shows below its first line: the cause, the first error, a short filtered tail.

    The cause is the last exception line of the log (the one that ended the run); the first error line is shown
    as well when it differs (an earlier failure that set off the rest). ``tail``: the last lines seen.
    """
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            errors = error_lines(log)
    except OSError:
        errors = error_lines(tail)
    exceptions = [e for e in errors if _EXCEPTION.match(e)]
    parts = []
    if exceptions:
        parts.append(f"  cause: {exceptions[-1][:width]}")
    if errors and (not exceptions or errors[0] != exceptions[-1]):
        parts.append(f"  first error: {errors[0][:width]}")
    kept = [clean(t)[:width] for t in tail if not is_noise(clean(t))][-tail_lines:]
    parts.append("  last lines (known noise left out):")
    parts += [f"    {t}" for t in kept]
    return "\n".join(parts)
