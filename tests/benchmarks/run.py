"""``make bench``: run every ``bench_*.py`` here and print one ``BENCH <name> <value> <op> <target>`` line per figure.

Each benchmark module exposes ``run() -> list[Figure]`` and measures our code against a baseline side by
side in the same process, so figures are ratios that can be compared across machines.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.common import Figure


def main() -> int:
    failed = 0
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        module = importlib.import_module(f"tests.benchmarks.{path.stem}")
        figures: list[Figure] = module.run()
        for fig in figures:
            print(fig.line(), flush=True)
            failed += not fig.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
