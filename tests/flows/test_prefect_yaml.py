"""prefect.yaml: generated from the configs, committed up to date, and `prefect deploy --all` run in
a home creates every scheduled deployment on a real (test) Prefect server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.deployments import SERVED_SUFFIX, deployment_specs, prefect_yaml, without_home
from pipelines.model.config import Home
from pipelines.model.errors import InvalidInputError
from tests.flows.served import deployments_serving
from tests.worlds import REPO, make_home


def test_the_committed_prefect_yaml_is_up_to_date() -> None:
    committed = (REPO / "prefect.yaml").read_text(encoding="utf-8")
    assert committed == prefect_yaml(Home(REPO)), "run: contact-exporter deployments generate"
    # No path of the machine it was generated on: the file must hold wherever it is deployed from.
    assert str(REPO) not in committed
    assert "home:" not in committed


def test_generate_check_fails_when_a_schedule_changes(tmp_path: Path) -> None:
    home = make_home(tmp_path, borrowers=20)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flows", "--home", str(home.root), "deployments", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    assert cli("generate").returncode == 0
    assert cli("generate", "--check").returncode == 0
    schedules = home.configs / "schedules.yaml"
    schedules.write_text(schedules.read_text().replace('"0 6 * * *"', '"15 5 * * *"'))
    stale = cli("generate", "--check")
    assert stale.returncode == 1
    assert "not up to date" in stale.stderr
    assert cli("generate").returncode == 0
    assert "cron: 15 5 * * *" in (home.root / "prefect.yaml").read_text()


@pytest.mark.parametrize("cron", ["61 6 * * *", "0 6 * *", "H 6 * * *", "@daily", "0 6 * * MON-FRY"])
def test_invalid_cron_is_refused_at_validation(tmp_path: Path, cron: str) -> None:
    home = make_home(tmp_path, borrowers=20)
    (home.configs / "schedules.yaml").write_text(f'exporters:\n  CE-VOICECOL: "{cron}"\n')
    with pytest.raises(InvalidInputError) as caught:
        home.schedules()
    assert "/exporters" in str(caught.value)
    assert "CE-VOICECOL" in str(caught.value)
    campaign = home.configs / "campaigns" / "collections-daily.yaml"
    campaign.write_text(campaign.read_text().replace('schedule: "0 7 * * 1-5"', f'schedule: "{cron}"'))
    with pytest.raises(InvalidInputError, match="/schedule"):
        home.campaign("collections-daily")


def test_crons_accepted_here_are_accepted_by_prefect() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    from pipelines.model.strict import check_cron

    for cron in ("0 6 * * *", "30 6 * * 1-5", "*/15 8-18 * * MON-FRI", "0 0 1 */3 *", "0 7 L * *"):
        assert CronSchedule(cron=check_cron(cron), timezone="America/New_York").cron == cron


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_prefect_deploy_all_creates_every_scheduled_deployment(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL

    home = make_home(tmp_path / "home", borrowers=20)
    (home.root / "prefect.yaml").write_text(prefect_yaml(home), encoding="utf-8")
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="contact-exporters", type="process"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    out = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy", "--all"],
        cwd=home.root,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]

    specs = {s.name: s for s in deployment_specs(home)}
    with get_client(sync_client=True) as client:
        deployed = {d.name: d for d in client.read_deployments()}
        flow_names = {d.name: client.read_flow(d.flow_id).name for d in deployed.values()}
    assert set(specs) <= set(deployed)
    for name, spec in specs.items():
        deployment = deployed[name]
        assert flow_names[name] == spec.flow
        assert deployment.work_pool_name == "contact-exporters"
        assert deployment.path == str(home.root) or str(home.root) in yaml.safe_dump(deployment.pull_steps)
        assert deployment.parameters == without_home(spec.parameters)
        assert set(spec.tags) <= set(deployment.tags)
        [schedule] = deployment.schedules
        assert schedule.active
        assert schedule.schedule.cron == spec.cron  # type: ignore[union-attr]
        assert schedule.schedule.timezone == spec.timezone  # type: ignore[union-attr]


def test_served_names_are_apart_from_the_prefect_yaml_names() -> None:
    specs = deployment_specs(Home(REPO))
    in_yaml = {d["name"] for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    served = {spec.served_name for spec in specs}
    assert in_yaml == {spec.name for spec in specs}
    assert served == {name + SERVED_SUFFIX for name in in_yaml}
    assert not served & in_yaml


def _deploy_all(home: Home, env: dict[str, str]) -> None:
    (home.root / "prefect.yaml").write_text(prefect_yaml(home), encoding="utf-8")
    out = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy", "--all"],
        cwd=home.root,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]


def _wait_for(names: set[str], timeout: float = 180) -> dict[str, object]:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            found = {d.name: d for d in client.read_deployments() if d.name in names}
        if set(found) == names:
            return dict(found)
        time.sleep(0.5)
    raise AssertionError(f"not registered within {timeout:.0f}s: {sorted(names - set(found))}")


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_stopping_serve_never_pauses_the_work_pool_deployments(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL

    home = make_home(tmp_path / "home", borrowers=20)
    # the session's server is shared with the `prefect deploy` test, which may have made the pool
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name="contact-exporters", type="process"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    _deploy_all(home, env)
    specs = deployment_specs(home)
    pool_names = {spec.name for spec in specs}

    with deployments_serving(home.root, env) as lines:
        served = _wait_for({spec.served_name for spec in specs})
        time.sleep(5)  # the runner is polling: stopped now, it stops as it would after a day of work
    output = "".join(lines)
    assert "work-pool deployment(s) of this home are scheduled too" in output  # each would run twice

    with get_client(sync_client=True) as client:
        after = {d.name: d for d in client.read_deployments()}
    for name in pool_names:
        assert after[name].work_pool_name == "contact-exporters"
        assert not after[name].paused, f"{name} was paused by stopping serve"
        assert all(schedule.active for schedule in after[name].schedules)
    for name in served:
        assert after[name].work_pool_name is None
        assert after[name].paused, output  # serve's own deployments stop with it
