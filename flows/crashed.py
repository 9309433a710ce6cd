"""Earlier flow runs of the same exporter and date that a kill left RUNNING are marked Crashed.

Called under the run lock of (exporter, as-of date): no other live run of the same exporter and date
in this home can hold it, so an earlier flow run still RUNNING or PENDING for the same parameters
was killed (kill -9, OOM, a lost machine) and never reported its end.
"""

from __future__ import annotations

import logging
from datetime import date

log = logging.getLogger(__name__)

FLOW_NAME = "export-contacts"


def mark_crashed_runs(
    exporter_id: str, as_of: date, home: str | None, campaign_id: str | None = None
) -> list[str]:
    """Set earlier RUNNING/PENDING `export-contacts` runs with these parameters to Crashed; their ids."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.runtime import flow_run
    from prefect.states import Crashed

    current = str(flow_run.id) if flow_run.id else None
    marked: list[str] = []
    try:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                    )
                ),
                limit=200,
            )
            for run in runs:
                params = run.parameters.get("request") or {}
                if str(run.id) == current or not isinstance(params, dict):
                    continue
                if params.get("exporter_id") != exporter_id or params.get("campaign_id") != campaign_id:
                    continue
                if str(params.get("as_of")) != as_of.isoformat() or params.get("home") != home:
                    continue
                message = (
                    f"the process running it ended without reporting (found by a later run of {exporter_id})"
                )
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                marked.append(str(run.id))
    except Exception:  # bookkeeping only: never fail the run over it
        log.warning("could not look for crashed earlier runs of %s %s", exporter_id, as_of, exc_info=True)
    for run_id in marked:
        log.info("marked earlier flow run %s of %s %s as Crashed", run_id, exporter_id, as_of)
    return marked
