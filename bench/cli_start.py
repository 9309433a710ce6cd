"""`python -m bench.cli_start`: how long the CLI takes to answer `--help` and a usage error, each in a
fresh process (median of `--repeat`), so that a person at a terminal is not kept waiting."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "contact-exporter"


def seconds(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(BIN), *args], capture_output=True, check=False)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_start", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    for label, command in (
        ("--help", ["--help"]),
        ("run --help", ["run", "--help"]),
        ("a usage error", ["run"]),
        ("an unknown exporter", ["run", "CE-NOPE", "--dry-run"]),
    ):
        runs = [seconds(*command) for _ in range(args.repeat)]
        print(
            f"{label:<22} median {statistics.median(runs):.3f} s  (min {min(runs):.3f}, max {max(runs):.3f})"
        )


if __name__ == "__main__":
    main()
