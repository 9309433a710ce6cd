"""`python -m bench.compare --against REV`: the same run by the code at REV and by this checkout,
compared row for row, before a change that should not change any decision is kept.

Both runs read the same generated source (`--borrowers`, cached like the benchmark's) and, with
`--dirty`, a copy of it with bad rows of every kind mixed in (unknown vocabulary, time zones and
borrowers, duplicate ids, junk in columns no check reads), so the rejected rows and the borrowers
they block are compared too. Each run is `bench.worker pipeline` in a fresh process with its own
home and warehouse; REV's code runs from a temporary `git worktree`.

Compared: every warehouse screening row (contactId, personId, channel, canInteract, reasons,
nextEligibleDate), every rejected row (tableName, rowKey, checks) and the file's sha256; the time
of each run is printed beside. Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from bench.harness import ROOT, bench_home, ensure_data, log

SCREENING = "contactId, personId, channel, canInteract, reasons, nextEligibleDate"
REJECTED = "tableName, rowKey, checks"
# Bad rows of every kind, for about 0.3 % of the borrowers (under the 1 % that fails a run as a
# broken feed); `hash` makes them the same on every machine.
DIRT = (
    "UPDATE contacts SET contactType = 'fax' WHERE hash(id) % 4000 = 1",
    "UPDATE contacts SET city = 'x\"=junk', country = NULL WHERE hash(id) % 500 = 2",
    "UPDATE contacts SET timezone = 'Mars/Base' WHERE hash(id) % 6000 = 3",
    "UPDATE contacts SET personId = 'BR-NOPE' WHERE hash(id) % 10000 = 4",
    "UPDATE interactions SET channel = 'pigeon' WHERE hash(id) % 6000 = 5",
    "UPDATE interactions SET loanId = 'L\"junk' WHERE hash(id) % 100 = 6",
    "UPDATE consents SET name = 'bogus' WHERE hash(personId || name) % 6000 = 7",
    "UPDATE borrowers SET timezone = 'Nowhere/Zone' WHERE hash(id) % 8000 = 8",
    "UPDATE borrowers SET externalId = NULL WHERE hash(id) % 50 = 9",
    "INSERT INTO interactions SELECT * FROM interactions WHERE hash(id) % 20000 = 10",
)


def dirty_copy(source: Path, target: Path) -> Path:
    """`source` with DIRT applied, made once (the copy is kept beside the cached source)."""
    if target.exists():
        return target
    temp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, temp)
    con = duckdb.connect(str(temp))
    try:
        for statement in DIRT:
            con.execute(statement)
    finally:
        con.close()
    temp.replace(target)
    return target


def run(code: Path, cache: Path, *args: str) -> dict[str, Any]:
    """`bench.worker ARGS` with the code in `code`, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.worker", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=code,
        env=os.environ
        | {"PYTHONPATH": str(code), "PREFECT_LOGGING_LEVEL": "WARNING", "CONTACT_EXPORTER_CACHE": str(cache)},
    )
    if out.returncode != 0:
        raise SystemExit(f"bench.worker {args[0]} failed with the code in {code}:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def rejected_rows(warehouse: Path) -> int:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM rejected_rows").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def differences(old: Path, new: Path) -> dict[str, int]:
    """Rows only in one warehouse or the other, per table (0 everywhere: the same rows)."""
    con = duckdb.connect()
    try:
        con.execute("ATTACH ? AS old (READ_ONLY)", [str(old)])
        con.execute("ATTACH ? AS new (READ_ONLY)", [str(new)])
        counts = {}
        for table, columns in (("screening_results", SCREENING), ("rejected_rows", REJECTED)):
            for a, b in (("old", "new"), ("new", "old")):
                # table and column names are the constants above
                query = (
                    f"SELECT count(*) FROM (SELECT {columns} FROM {a}.{table} "  # noqa: S608
                    f"EXCEPT ALL SELECT {columns} FROM {b}.{table})"
                )
                row = con.execute(query).fetchone()
                counts[f"{table} only in {a}"] = int(row[0]) if row else 0
        return counts
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--against", required=True, help="the git revision to compare with (e.g. HEAD~3)")
    parser.add_argument("--borrowers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dirty", action="store_true", help="mix bad rows of every kind into the source")
    parser.add_argument("--cache", type=Path, default=ROOT / "cache")
    args = parser.parse_args(argv)

    args.cache.mkdir(parents=True, exist_ok=True)
    source = ensure_data(bench_home(args.cache), args.cache, args.borrowers, args.seed)
    if args.dirty:
        source = dirty_copy(source, source.with_name(source.stem + "-dirty.duckdb"))
    checkout = ROOT.parent
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        work = Path(tmp)
        old_code = work / "old"
        subprocess.run(
            ["git", "-C", str(checkout), "worktree", "add", "--detach", str(old_code), args.against],
            check=True,
            capture_output=True,
        )
        try:
            lookups = work / "lookups"
            run(checkout, lookups, "lookups")  # built once, before either run is timed
            results = {}
            for name, code in (("old", old_code), ("new", checkout)):
                log(
                    f"running the code of {args.against if name == 'old' else 'this checkout'} on {source.name}"
                )
                home = bench_home(work / f"home-{name}")
                results[name] = run(code, lookups, "pipeline", str(home), str(source))
                results[name]["warehouse"] = home / "bench-warehouse.duckdb"
        finally:
            subprocess.run(
                ["git", "-C", str(checkout), "worktree", "remove", "--force", str(old_code)],
                check=False,
                capture_output=True,
            )
        counts = differences(results["old"]["warehouse"], results["new"]["warehouse"])
        rejected = rejected_rows(results["new"]["warehouse"])
    same_file = results["old"]["sha256"] == results["new"]["sha256"]
    print(
        json.dumps(
            {
                "against": args.against,
                "source": str(source),
                "matched": results["new"]["matched"],
                "rejectedRows": rejected,
                "sameFile": same_file,
                "differences": counts,
                "seconds": {name: round(r["seconds"], 2) for name, r in results.items()},
            },
            indent=2,
        )
    )
    same = same_file and not any(counts.values())
    log(f"{'the same' if same else 'DIFFERENT'}: {results['new']['matched']:,} screening rows compared")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
