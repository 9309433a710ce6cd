"""Scheduled deployments: one daily deployment per exporter (configs/schedules.yaml) and per campaign
(its `schedule`), each on a cron schedule in the company's time zone.

`contact-exporter deployments serve` registers them with the Prefect API in PREFECT_API_URL and runs
them from this process; `contact-exporter deployments list` shows what would be registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.config import Home
from pipelines.store import ExporterStore


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    flow: str  # export-contacts | run-campaign
    cron: str
    timezone: str
    parameters: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
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
                parameters={"request": {"exporter_id": exporter_id, "home": str(home.root)}},
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
            name=spec.name,
            schedules=[Cron(spec.cron, timezone=spec.timezone)],
            parameters=spec.parameters,
            tags=["contact-exporters"],
        )
        for spec in deployment_specs(home)
    ]


def serve(home: Home) -> None:
    from prefect import serve as prefect_serve

    prefect_serve(*build_deployments(home))
