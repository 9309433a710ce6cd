"""Checks made before a run starts (before any orchestrator, file or warehouse row): everything a
user can get wrong and that can be seen without running — the source and its tables, the population
file's columns, the SFTP files, the date range, a warehouse another process holds.

A failed check creates nothing: no warehouse file, no export folder, no failed-run row.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import NoReturn

from pipelines.io import duck, population, sources
from pipelines.model.config import Home, SftpSetting
from pipelines.model.errors import ErrorItem, InvalidInputError, SourceDataError
from pipelines.model.request import RunRequest
from pipelines.run.planning import RunPlan, plan_request


def check_source(source: sources.Source) -> None:
    """The source exists, answers (a server reachable, the credentials accepted, the bucket there)
    and holds the five tables (their rows are validated by the run). Any failure is exit 2, naming
    the source (a password in its URI masked), never a secret."""
    ref = sources.ref_of(source)
    kind = ref.kind
    if kind == "duckdb" and not ref.path.exists():
        raise SourceDataError(
            str(ref),
            [ErrorItem("", "does not exist")],
            message=f"source {ref} does not exist; give a DuckDB file, a folder of "
            "<table>.parquet/<table>.csv files, s3://bucket/prefix/ or postgresql://user@host:port/db "
            "with --source (contact-exporter generate --out SOURCE makes one)",
        )
    missing = sources.missing_tables(ref)
    how = {
        "folder": "add <table>.parquet or <table>.csv files",
        "s3": "add <table>.parquet files (or <table>/ folders of parts) under the prefix",
        "postgres": f"create them in schema {ref.schema}",
    }.get(
        kind, "give the source tables with --source, or `contact-exporter generate --out PATH` to make some"
    )
    if missing:
        raise SourceDataError(
            str(ref),
            [ErrorItem(f"/{name}", "required table is missing") for name in missing],
            message=f"source {ref} has no table {', '.join(missing)}; {how}",
        )


def check_population(path: Path) -> None:
    """A CSV or Parquet file with a column `id`."""
    sources.read_ids(path)


def check_warehouse(path: Path) -> None:
    """The warehouse can be written: not a folder, its folder exists or can be made, and no other
    process holds it open beyond the wait bound (an existing file only; a missing one is not made)."""
    if path.is_dir():
        raise InvalidInputError(
            "arguments",
            [
                ErrorItem(
                    "--warehouse",
                    f"{path} is a folder; give a DuckDB file path such as {path / 'out.duckdb'}",
                )
            ],
        )
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InvalidInputError(
            "arguments", [ErrorItem("--warehouse", f"{parent} is a file, so {path} cannot be made")]
        )
    if path.is_file():
        with duck.file_lock(path):
            duck.open_for_writing(path).close()


def check_delivery(home: Home, setting_id: str, sftp: SftpSetting) -> None:
    """The pinned host keys and the private key exist; a password variable is set when it is the only
    way in; the partner's OpenPGP key, when files are encrypted, is one GnuPG can encrypt to."""
    if sftp.encryption is not None:
        from pipelines.delivery import pgp  # GnuPG only for settings that encrypt

        pgp.inspect(home.path(sftp.encryption.pgpPublicKeyFile), sftp.encryption.pgpFingerprint)
    config = str(home.configs / "sftp" / f"{setting_id}.yaml")
    known_hosts = home.path(sftp.knownHostsFile)
    if not known_hosts.is_file():
        pin = f"ssh-keyscan -p {sftp.port} {sftp.host} > {known_hosts}"
        _refuse(
            config,
            "/knownHostsFile",
            f"{known_hosts} does not exist: pin the server's key with `{pin}` (check it with the partner)",
        )
    if sftp.privateKeyFile:
        key = home.path(sftp.privateKeyFile)
        if not key.is_file():
            _refuse(config, "/privateKeyFile", f"{key} does not exist: install the key")
    elif sftp.passwordEnv and not sftp.passwordSecretBlock and not os.environ.get(sftp.passwordEnv):
        _refuse(
            config,
            "/passwordEnv",
            f"environment variable {sftp.passwordEnv} is not set: export it with the SFTP password",
        )


def _refuse(config: str, path: str, problem: str) -> NoReturn:
    """A delivery that cannot happen: the setting's file and field, and the way out."""
    raise InvalidInputError(config, [ErrorItem(path, f"{problem}, or run with --no-deliver")])


def check_dates(start: date, end: date) -> None:
    if end < start:
        raise InvalidInputError(
            "arguments",
            [ErrorItem("--end", f"{end} is before --start {start}: give the first date first")],
        )


def backfill_dates(start: date, end: date) -> list[date]:
    """Every as-of date from start to end, inclusive (a backfill's runs)."""
    check_dates(start, end)
    return [date.fromordinal(d) for d in range(start.toordinal(), end.toordinal() + 1)]


def check_plan(plan: RunPlan, *, deliver: bool) -> None:
    """Every check for one planned run, cheapest first; the warehouse (which may wait) last."""
    check_source(plan.source)
    if plan.campaign_id is not None:  # its query: one SELECT, refused before anything runs
        population.check_campaign_query(
            plan.home.campaign(plan.campaign_id).query, str(plan.home.campaign_file(plan.campaign_id))
        )
    if plan.population_file is not None and plan.campaign_id is None:  # a campaign's query writes its own
        check_population(plan.population_file)
    if deliver and plan.sftp is not None and plan.exporter.sftpSettingId:
        check_delivery(plan.home, plan.exporter.sftpSettingId, plan.sftp)
    check_warehouse(plan.warehouse)


def planned(request: RunRequest) -> RunPlan:
    """A run's plan, made and checked once: the CLI calls this before Prefect starts and hands the
    plan to the flow; a flow started without one (a deployment, the daily company run) calls it
    first. Either way every step of the run then works from the same plan."""
    plan = plan_request(request)
    check_plan(plan, deliver=request.deliver)
    return plan
