"""Recording: the run's rows in the warehouse (or its failure), the delivery's outcome on its row,
and the run summary of CONTRACT.md §4.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
from pydantic import SecretStr

from pipelines.io import files, warehouse
from pipelines.model.errors import ContactExporterError, WarehouseBusyError
from pipelines.run import partitions as parts
from pipelines.run.building import Built
from pipelines.run.planning import RunPlan

log = logging.getLogger(__name__)


def record_run(built: Built) -> None:
    """Replace the warehouse rows of (exporter, as-of date) with this run's, then drop the staging."""
    t = time.perf_counter()
    plan = built.plan
    # the parts' rows, streamed into the insert rather than loaded
    screening = parts.screening_batches(sorted(built.staging.glob("screening-*.arrow")))
    rejected = parts.rejected_rows(sorted(built.staging.glob("rejected-*.arrow")))
    warehouse.record_success(
        plan.warehouse,
        warehouse.RunRecord(
            runId=built.run_id,
            exporterId=plan.exporter_id,
            companyId=plan.company.id,
            asOfDate=plan.as_of,
            asOfInstant=plan.as_of_instant,
            status="succeeded",
            population=built.population,
            matched=built.matched,
            screenedOut=built.screened_out,
            exported=built.exported,
            filePath=str(built.file.path),
            sha256=built.file.sha256,
            startedAt=built.started_at,
            finishedAt=datetime.now(UTC),
            campaignId=plan.campaign_id,
        ),
        screening,
        rejected,
    )
    shutil.rmtree(built.staging, ignore_errors=True)
    built.timings["warehouse"] = round(time.perf_counter() - t, 4)
    log.info(
        "recorded run %s of %s in %s: %d screening rows, %d rejected rows",
        built.run_id,
        plan.label,
        plan.warehouse,
        built.matched,
        built.rejected,
    )


def record_failure(plan: RunPlan, run_id: str, started_at: datetime, error: BaseException) -> None:
    """Record a failed run without touching earlier successful rows; never raises over the original error."""
    if isinstance(error, WarehouseBusyError):
        return  # the warehouse is held by another process: nothing can be recorded in it now
    rejected = getattr(error, "rejected", None)  # the invalid source rows that failed the run, if any
    if not isinstance(rejected, pl.DataFrame):
        rejected = None
    try:
        warehouse.record_failure(
            plan.warehouse,
            warehouse.RunRecord(
                runId=run_id,
                exporterId=plan.exporter_id,
                companyId=plan.company.id,
                asOfDate=plan.as_of,
                asOfInstant=plan.as_of_instant,
                status="failed",
                population=None,
                matched=None,
                screenedOut=None,
                exported=None,
                filePath=None,
                sha256=None,
                startedAt=started_at,
                finishedAt=datetime.now(UTC),
                error=str(error)[:2000],
                campaignId=plan.campaign_id,
            ),
            rejected,
        )
    except Exception:  # the run already failed; its own error is what the user needs to see
        log.exception("could not record the failed run %s", run_id)


@contextmanager
def failure_recorded(plan: RunPlan, run_id: str) -> Iterator[None]:
    """Around build and record: a failure is recorded as a failed run, then raised as it was."""
    started_at = datetime.now(UTC)
    try:
        yield
    except Exception as exc:
        record_failure(plan, run_id, started_at, exc)
        raise


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    detail: str
    delivered_at: datetime | None = None
    status: str = "skipped"  # delivered | already_delivered | skipped | failed


def deliver_run(
    built: Built, *, enabled: bool = True, redeliver: bool = False, password: SecretStr | None = None
) -> Delivery:
    """Send the file and its manifest to the exporter's SFTP destination (if any).

    The run's row gets deliveryStatus (and deliveryError when it failed); deliveredAt keeps the
    time these bytes were last delivered, so a skipped or repeated delivery never erases it.
    """
    from pipelines.delivery import sftp  # paramiko is only loaded when something is delivered

    plan = built.plan
    if plan.sftp is None:
        return _not_sent(built, "skipped", "no sftpSettingId: file kept local")
    if not enabled:
        return _not_sent(built, "skipped", "delivery disabled (--no-deliver)")
    try:
        result = sftp.upload(
            plan.sftp,
            plan.home,
            built.file.path,
            built.file.manifest_path,
            exporter_id=plan.exporter_id,
            as_of=plan.as_of,
            sha256=built.file.sha256,
            warehouse=plan.warehouse,
            redeliver=redeliver,
            password=password,
            run_id=built.run_id,
        )
    except ContactExporterError as exc:
        _not_sent(built, "failed", str(exc), error=str(exc)[:2000])
        raise
    if result.delivered and result.delivered_at is not None:
        _record_status(built, "delivered", result.delivered_at)
        return Delivery(
            True, f"delivered to {plan.sftp.host}:{result.remote_path}", result.delivered_at, "delivered"
        )
    _record_status(built, "already_delivered", result.delivered_at)
    return Delivery(False, result.skipped_reason or "not delivered", result.delivered_at, "already_delivered")


def _record_status(
    built: Built, status: str, delivered_at: datetime | None, error: str | None = None
) -> None:
    """The run's deliveryStatus in the warehouse, and its SFTP setting on its delivery rows."""
    plan = built.plan
    warehouse.record_delivery_status(
        plan.warehouse,
        built.run_id,
        status,
        delivered_at=delivered_at,
        error=error,
        sftp_setting_id=plan.exporter.sftpSettingId,
    )


def _not_sent(built: Built, status: str, detail: str, error: str | None = None) -> Delivery:
    """Record a delivery that did not happen; deliveredAt keeps an earlier delivery of these bytes."""
    plan = built.plan
    earlier: datetime | None = None
    try:
        from pipelines.delivery import ledger

        earlier = ledger.last_delivery(
            plan.warehouse, plan.exporter_id, plan.as_of, built.file.sha256, built.file.path.name
        )
        _record_status(built, status, earlier, error)
    except Exception:  # never mask the delivery error (or a finished export) with a bookkeeping one
        log.exception("could not record delivery status %s for run %s", status, built.run_id)
    return Delivery(False, detail, earlier, status)


def summary(built: Built, sent: Delivery) -> dict[str, Any]:
    """The run summary of CONTRACT.md §4 (JSON on stdout)."""
    plan = built.plan
    return {
        "runId": built.run_id,
        "exporterId": plan.exporter_id,
        "companyId": plan.company.id,
        "asOfDate": plan.as_of.isoformat(),
        "asOfInstant": files.iso_utc(plan.as_of_instant),
        "counts": {
            "population": built.population,
            "matched": built.matched,
            "screenedOut": built.screened_out,
            "exported": built.exported,
            "byReason": built.by_reason,
            "rejected": built.rejected,
        },
        "file": str(built.file.path),
        "delivered": sent.delivered,
        "deliveryStatus": sent.status,
        "delivery": sent.detail,
    }
