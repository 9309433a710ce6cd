"""One export run as plain steps: plan → build → record → deliver (DESIGN.md data flow).

Each step lives in its own module of this folder (planning, deciding, building, recording) and takes
and returns small records (ids, paths, counts), so an orchestrator can run them as separate tasks;
`run_export` chains them for callers without one (benchmarks, tests).
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from pipelines.model.progress import Progress, silent
from pipelines.model.request import DEFAULT_MEMORY_BUDGET
from pipelines.run.building import build_partitioned, run_lock
from pipelines.run.planning import RunPlan as RunPlan
from pipelines.run.planning import new_run_id
from pipelines.run.planning import plan_request as plan_request
from pipelines.run.planning import plan_run as plan_run
from pipelines.run.recording import deliver_run, failure_recorded, record_run, summary


def run_export(
    plan: RunPlan,
    *,
    deliver_enabled: bool = True,
    redeliver: bool = False,
    password: SecretStr | None = None,
    progress: Progress = silent,
    partitions: int | str = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> dict[str, Any]:
    """The whole run without an orchestrator."""
    run_id = new_run_id()
    with run_lock(plan):
        with failure_recorded(plan, run_id):
            built = build_partitioned(plan, run_id, partitions, memory_budget, progress)
            record_run(built)
        sent = deliver_run(built, enabled=deliver_enabled, redeliver=redeliver, password=password)
    return summary(built, sent)
