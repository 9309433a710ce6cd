"""A run finds earlier flow runs of its exporter and date that a kill left RUNNING, and marks them Crashed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pipelines.model.config import Home
from tests.worlds import make_home, without_sftp

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

AS_OF = date(2026, 12, 1)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    h = make_home(tmp_path, borrowers=60)
    without_sftp(h, "CE-EMAILSVC")
    return h


def test_earlier_running_runs_of_the_same_exporter_and_date_are_marked_crashed(home: Home) -> None:
    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Running

    from flows.prefect_flows import export_contacts
    from pipelines.model.request import RunRequest

    def left_running(as_of: date, where: str) -> str:
        """A flow run as a killed process leaves it: RUNNING, never finished."""
        with get_client(sync_client=True) as client:
            run = client.create_flow_run(
                export_contacts,
                parameters={
                    "request": {"exporter_id": "CE-EMAILSVC", "as_of": as_of.isoformat(), "home": where}
                },
                state=Running(),
            )
        return str(run.id)

    killed = left_running(AS_OF, str(home.root))
    other_date = left_running(date(2026, 12, 2), str(home.root))
    other_home = left_running(AS_OF, "/somewhere/else")

    request = RunRequest(exporter_id="CE-EMAILSVC", as_of=AS_OF, home=str(home.root))
    state = export_contacts(**request.flow_parameters(), return_state=True)

    assert state.is_completed()
    with get_client(sync_client=True) as client:
        states = {run_id: client.read_flow_run(run_id).state for run_id in (killed, other_date, other_home)}
    assert states[killed] is not None
    assert states[killed].type == StateType.CRASHED
    assert "ended without reporting" in str(states[killed].message)
    assert [s.type if s else None for s in (states[other_date], states[other_home])] == [
        StateType.RUNNING
    ] * 2
