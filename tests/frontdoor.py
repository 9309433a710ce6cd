"""Worlds written as source files (CSV text, Parquet or DuckDB) in a home of their own, for tests that
go through reading, validation, the run and the CLI, dirty rows included."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import yaml

from pipelines.io.store import ExporterStore
from pipelines.model.config import Home
from pipelines.run import job

COMPANY = "CP-T"
HEADERS: dict[str, list[str]] = {
    "borrowers": ["id", "companyId", "timezone"],
    "contacts": [
        "id", "personId", "contactType", "label", "affiliation", "status", "value", "state",
        "postalCode", "valid", "receiveTextMessages", "authorizedThirdParty", "timezone",
        "createdAt", "archivedAt",
    ],
    "interactions": ["id", "personId", "channel", "direction", "status", "statusDetails", "startedAt"],
    "do_not_interact": [
        "id", "personId", "channels", "themes", "startDate", "endDate", "daysOfWeek", "timezone", "createdAt",
    ],
    "consents": ["personId", "name", "status", "updatedAt"],
}  # fmt: skip
VOICE: dict[str, Any] = {
    "contactMatchingCriteria": {"contactType": ["phone"]},
    "columnSettings": [{"field": "id"}, {"field": "personId"}],
    "checkCanInteractData": {"theme": "opsCollDebt"},
    "name": "voice",
}
Row = dict[str, Any]


def make_home(root: Path, timezone: str = "America/New_York", **policy: Any) -> Home:
    companies = root / "configs" / "companies"
    companies.mkdir(parents=True)
    body = {"id": COMPANY, "timezone": timezone, "policy": policy}
    (companies / f"{COMPANY}.yaml").write_text(yaml.safe_dump(body))
    return Home(root)


def add_exporter(home: Home, body: dict[str, Any] | None = None) -> str:
    return ExporterStore(home).create(json.loads(json.dumps(body or VOICE)), "test").id


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def csv_text(header: Sequence[str], rows: Sequence[Row | str]) -> str:
    """A CSV table: dict rows by the header (missing keys empty), str rows written as they are."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        if isinstance(row, str):
            out.write(row + "\n")
        else:
            unknown = set(row) - set(header)
            assert not unknown, f"columns {unknown} are not in the header"
            writer.writerow([cell(row.get(name)) for name in header])
    return out.getvalue()


def write_csv_source(folder: Path, **tables: Sequence[Row | str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, header in HEADERS.items():
        (folder / f"{name}.csv").write_text(csv_text(header, tables.get(name, [])), encoding="utf-8")
    return folder


def write_source(path: Path, fmt: str, **tables: Sequence[Row]) -> Path:
    """The same world as Parquet files or a DuckDB file (typed by reading the CSV form once)."""
    text = write_csv_source(path.parent / (path.name + "-csv"), **tables)
    frames = {name: pl.read_csv(text / f"{name}.csv", infer_schema=False) for name in HEADERS}
    if fmt == "parquet":
        path.mkdir(parents=True, exist_ok=True)
        for name, frame in frames.items():
            frame.write_parquet(path / f"{name}.parquet")
    else:
        con = duckdb.connect(str(path))
        try:
            for name, frame in frames.items():
                con.from_arrow(frame.to_arrow()).create(name)
        finally:
            con.close()
    return path


def run(home: Home, exporter_id: str, as_of: date, source: Path) -> dict[str, Any]:
    return job.run_export(job.plan_run(home, exporter_id, as_of, source=source), deliver_enabled=False)


def query(home: Home, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def decisions(home: Home) -> dict[str, list[str]]:
    """contactId → reasons of the last recorded run."""
    return {str(c): list(r) for c, r in query(home, "SELECT contactId, reasons FROM screening_results")}


def borrower(pid: str = "B1", tz: str | None = "America/New_York") -> Row:
    return {"id": pid, "companyId": COMPANY, "timezone": tz}


def phone(cid: str = "C1", pid: str = "B1", number: str = "+12125550123", **extra: Any) -> Row:
    base = {"id": cid, "personId": pid, "contactType": "phone", "label": "personal", "affiliation": "self",
            "status": "primary", "value": number}  # fmt: skip
    return base | extra


def address(cid: str, postal: str | None, state: str | None, pid: str = "B1", **extra: Any) -> Row:
    base = {"id": cid, "personId": pid, "contactType": "address", "label": "home", "affiliation": "self",
            "status": "primary", "postalCode": postal, "state": state}  # fmt: skip
    return base | extra
