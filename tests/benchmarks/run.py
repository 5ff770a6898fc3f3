"""``make bench``: run every ``bench_*.py`` here and print one ``BENCH <name> <value> <op> <target>`` line per figure.

``python tests/benchmarks/run.py [name ...]`` (``make bench BENCHES="minirl_loss routing_replay"``) runs only the
named modules (``bench_<name>.py``).

Each benchmark module exposes ``run() -> list[Figure]`` and measures our code against a baseline side by
side in the same process, so figures are ratios that can be compared across machines.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.common import Figure


def main(names: list[str]) -> int:
    paths = sorted(Path(__file__).parent.glob("bench_*.py"))
    unknown = set(names) - {p.stem.removeprefix("bench_") for p in paths}
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    failed = 0
    for path in paths:
        if names and path.stem.removeprefix("bench_") not in names:
            continue
        module = importlib.import_module(f"tests.benchmarks.{path.stem}")
        figures: list[Figure] = module.run()
        for fig in figures:
            print(fig.line(), flush=True)
            failed += not fig.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
