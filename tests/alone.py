"""Runs tests one at a time, each in a pytest process of its own: a test that passes only after
another one ran (a registry, a table or a module-level state it left) fails here.

    .venv/bin/python tests/alone.py --count 20 --seed 28    # 20 tests drawn with seed 28
    .venv/bin/python tests/alone.py tests/jobs/test_cli.py::test_x ...   # these tests

Prints one line per test and exits 1 if any failed. The draw leaves out integration tests (as
`make test` does); the tests in random order: `.venv/bin/pytest --random-order`.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collected() -> list[str]:
    """The ids `make test` would run."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if "::" in line]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests", nargs="*", help="test ids (default: a draw of --count)")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    chosen = args.tests or random.Random(args.seed).sample(collected(), args.count)
    failed = 0
    for test in chosen:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        verdict = "passed" if result.returncode == 0 else f"FAILED ({result.returncode})"
        failed += result.returncode != 0
        print(f"{verdict:<12} {time.perf_counter() - started:6.0f} s  {test}", flush=True)
        if result.returncode != 0:
            print(result.stdout[-3000:], flush=True)
    print(f"{len(chosen) - failed} of {len(chosen)} passed alone")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
