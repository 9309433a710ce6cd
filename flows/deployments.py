"""Scheduled deployments: one daily deployment per exporter (configs/schedules.yaml) and per campaign
(its `schedule`), each on a cron schedule in the company's time zone.

Two ways to run them:
- `contact-exporter deployments generate` writes `<home>/prefect.yaml` from the same configs, so that
  `prefect deploy --all` (run in the home) creates every deployment on a work pool, for Prefect workers;
- `contact-exporter deployments serve` registers them with the Prefect API in PREFECT_API_URL and runs
  them from this process (no work pool needed), under names ending in `-served`.
`contact-exporter deployments list` shows what would be registered.

Both ways can meet on one Prefect server. Prefect keys a deployment by flow and name, and `serve`
pauses its deployments when it stops: under the same names it would take over the work-pool
deployments and leave them paused. Hence the suffix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.io.store import ExporterStore
from pipelines.model.config import Home

TAG = "contact-exporters"
SERVED_SUFFIX = "-served"
DEFAULT_WORK_POOL = "contact-exporters"
# Importable entrypoints (module paths): a worker runs them wherever the package is installed.
ENTRYPOINTS = {
    "export-contacts": "flows.prefect_flows.export_contacts",
    "run-campaign": "flows.prefect_flows.run_campaign",
}
HEADER = """\
# Prefect deployments of this home, generated from configs/schedules.yaml and configs/campaigns/ by
# `contact-exporter deployments generate`: edit those configs, then generate again (do not edit here).
#
# Once:                  prefect work-pool create {pool} --type process
# In this folder:        prefect deploy --all     (creates or updates every deployment below)
# And, in this folder:   prefect worker start --pool {pool}     (runs them on schedule)
#
# No pull step is given: each deployment runs in the folder `prefect deploy` was run in (the home),
# and the flows read their home from there (or from $CONTACT_EXPORTER_HOME).
"""


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    flow: str  # export-contacts | run-campaign
    cron: str
    timezone: str
    parameters: dict[str, Any]
    tags: tuple[str, ...] = ()

    @property
    def served_name(self) -> str:
        """The name `deployments serve` registers: never one of prefect.yaml's (`name`)."""
        return self.name + SERVED_SUFFIX

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "servedName": self.served_name,
            "flow": self.flow,
            "cron": self.cron,
            "timezone": self.timezone,
            "parameters": self.parameters,
        }


def deployment_specs(home: Home) -> list[DeploymentSpec]:
    """Read configs (no Prefect needed) and describe every scheduled deployment."""
    store = ExporterStore(home)
    specs: list[DeploymentSpec] = []
    for exporter_id, cron in sorted(home.schedules().exporters.items()):
        exporter = store.get(exporter_id)
        company = home.company(exporter.companyId)
        specs.append(
            DeploymentSpec(
                name=f"daily-{exporter_id.lower()}",
                flow="export-contacts",
                cron=cron,
                timezone=company.timezone,
                parameters={"exporter_id": exporter_id, "home": str(home.root)},
                tags=(TAG, f"exporter:{exporter_id}", f"company:{company.id}"),
            )
        )
    for campaign_id in home.campaign_ids():
        campaign = home.campaign(campaign_id)
        if not campaign.schedule:
            continue
        company = home.company(store.get(campaign.exporterId).companyId)
        specs.append(
            DeploymentSpec(
                name=f"campaign-{campaign_id.lower()}",
                flow="run-campaign",
                cron=campaign.schedule,
                timezone=company.timezone,
                parameters={"campaign_id": campaign_id, "home": str(home.root)},
                tags=(
                    TAG,
                    f"campaign:{campaign_id}",
                    f"exporter:{campaign.exporterId}",
                    f"company:{company.id}",
                ),
            )
        )
    return specs


def build_deployments(home: Home) -> list[Any]:
    """Prefect RunnerDeployments for the specs (as_of left out: each run takes today, company time)."""
    from prefect.schedules import Cron

    from flows import prefect_flows

    flows: dict[str, Any] = {
        "export-contacts": prefect_flows.export_contacts,
        "run-campaign": prefect_flows.run_campaign,
    }
    return [
        flows[spec.flow].to_deployment(
            name=spec.served_name,
            schedules=[Cron(spec.cron, timezone=spec.timezone)],
            parameters=spec.parameters,
            tags=list(spec.tags),
        )
        for spec in deployment_specs(home)
    ]


def scheduled_twins(home: Home) -> list[str]:
    """Work-pool deployments (prefect.yaml's names) of this home that are scheduled on the API now.

    Served beside them, each exporter would run twice at its hour (the ledger still delivers once).
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    twins: list[str] = []
    with get_client(sync_client=True) as client:
        for spec in deployment_specs(home):
            try:
                found = client.read_deployment_by_name(f"{spec.flow}/{spec.name}")
            except ObjectNotFound:
                continue
            if not found.paused and any(schedule.active for schedule in found.schedules):
                twins.append(f"{spec.flow}/{spec.name}")
    return twins


def serve(home: Home, say: Callable[[str], None] = lambda _m: None) -> None:
    from prefect import serve as prefect_serve

    twins = scheduled_twins(home)
    if twins:
        say(
            f"{len(twins)} work-pool deployment(s) of this home are scheduled too ({', '.join(twins)}): "
            "served beside them each runs twice at its hour; pause one side"
        )
    # Prefect pauses served deployments when serve stops: only the `-served` ones, never prefect.yaml's.
    prefect_serve(*build_deployments(home), pause_on_shutdown=True)


def without_home(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters without `home` (a worker runs in the home `prefect deploy` was run in)."""
    return {k: v for k, v in parameters.items() if k != "home"}


def prefect_yaml(home: Home, work_pool: str = DEFAULT_WORK_POOL) -> str:
    """The text of `prefect.yaml` for the home: one deployment per spec, for `prefect deploy --all`.

    Parameters leave out `home`: the path where the file is generated may not be where it is deployed.
    """
    deployments = [
        {
            "name": spec.name,
            "entrypoint": ENTRYPOINTS[spec.flow],
            "tags": list(spec.tags),
            "parameters": without_home(spec.parameters),
            "schedules": [{"cron": spec.cron, "timezone": spec.timezone, "active": True}],
            "work_pool": {"name": work_pool},
        }
        for spec in deployment_specs(home)
    ]
    body = {"name": "contact-exporters", "build": None, "push": None, "deployments": deployments}
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return HEADER.format(pool=work_pool) + text


def write_prefect_yaml(home: Home, out: Path, work_pool: str = DEFAULT_WORK_POOL) -> bool:
    """Write `out` if its text changes; True when it was written."""
    text = prefect_yaml(home, work_pool)
    if out.is_file() and out.read_text(encoding="utf-8") == text:
        return False
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return True
