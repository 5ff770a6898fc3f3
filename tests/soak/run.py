"""``make soak``: run every ``campaign_*.py`` here (or those named on the command line) and print their counts.

Each campaign module exposes ``run() -> list[Count]``: it drives the real stack (verl, vLLM, Prefect, an S3 server)
through injected faults and returns what it counted. One ``SOAK <campaign> <name> <value>`` line per count; a count
with an expectation that does not hold fails the target (exit 1).
docs/results/2026-11-28-reliability.md records a full run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.soak.common import Count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaigns", nargs="*", help="campaign names (the module name after campaign_); default: all")
    args = parser.parse_args(argv)
    paths = sorted(Path(__file__).parent.glob("campaign_*.py"))
    names = [p.stem.removeprefix("campaign_") for p in paths]
    unknown = sorted(set(args.campaigns) - set(names))
    if unknown:
        print(f"make soak: unknown campaign(s) {unknown}; known: {names}", file=sys.stderr)
        return 2
    failed = 0
    for name in args.campaigns or names:
        counts: list[Count] = importlib.import_module(f"tests.soak.campaign_{name}").run()
        for count in counts:
            print(count.line(name), flush=True)
            failed += not count.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
