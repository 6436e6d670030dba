"""A hosting provider's fleet: four hosts launched from one inventory in one run, side by side, each with its own
settings (`shuttle_settings`: admin user, time zone, TLS); an unreachable fifth host does not stop the others;
a second launch of one changes nothing; and the Python API drives the same hosts with an event callback. The
fleet is built in tests/fleet.py (test_tls reads its certificates).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shuttle import api
from shuttle.events import Event
from tests.conftest import LAYOUT, secret
from tests.fleet import CUSTOMERS, RERUN, SECRET, Fleet, fleet_fixture, launched_all, login  # noqa: F401 (fixture)
from tests.standins import IMAGES

#: The stand-in stack serves Caddy's internal CA; the logins below do not verify it, on purpose.
pytestmark = [pytest.mark.hosts, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]


def test_one_run_launches_every_host_with_its_own_settings(fleet: Fleet) -> None:
    summary = fleet.run.summary
    assert set(summary["hosts"]) == {*CUSTOMERS, "clinic-gone"}
    for name, wanted in CUSTOMERS.items():
        result = summary["hosts"][name]
        assert result["status"] == "ok" and result["failed"] == 0, result
        assert result["settings"]["admin_user"] == wanted["admin_user"]
        assert result["settings"]["timezone"] == wanted["timezone"]
    assert summary["hosts"]["clinic-berlin"]["settings"]["backup"]["s3_secret_access_key"] == "**********"
    for run in (fleet.run, fleet.rerun):
        assert SECRET not in run.stdout + run.stderr
        assert SECRET not in run.log.read_text()
    # Only the inventories hold it (the grep finds them: it works): the runs' private directories (generated
    # inventory, extra vars) are gone.
    places = [place for place in ("/tmp", "/var/tmp", str(Path.home() / ".ansible")) if Path(place).is_dir()]
    grep = subprocess.run(["grep", "-rlF", "-f", "-", *places], capture_output=True, text=True, check=False,
                          input=SECRET + "\n")  # fmt: skip
    inventories = {str(fleet.tmp / name) for name in ("customers.yml", "customers-plus-one.yml", "one.yml")}
    assert set(grep.stdout.split()) == inventories, grep.stdout

    # The hosts ran side by side. Take the slowest task (it started once for all four hosts): one host after the
    # other, the first would be done a quarter of the way through it; side by side, most of the way through.
    starts = {e["task"]: e["time"] for e in fleet.run.events if e["event"] == "task_start"}
    results: dict[str, list[float]] = {}
    for event in fleet.run.events:
        if event["event"] == "task_result" and event.get("task") in starts and event.get("host") in CUSTOMERS:
            results.setdefault(event["task"], []).append(event["time"] - starts[event["task"]])
    task, done = max(((t, sorted(d)) for t, d in results.items() if len(d) == len(CUSTOMERS)), key=lambda i: i[1][-1])
    assert done[-1] > 10, f"no task took long enough to tell ({task}: {done})"
    assert done[0] > 0.5 * done[-1], f"{task}: the hosts finished at {done} seconds into it, one after another"


@pytest.mark.parametrize("name", list(CUSTOMERS))
def test_each_host_has_its_own_time_zone_and_admin(fleet: Fleet, name: str) -> None:
    launched_all(fleet)
    host, wanted = fleet.hosts[name], CUSTOMERS[name]
    assert host.exec("readlink /etc/localtime").stdout.strip() == f"/usr/share/zoneinfo/{wanted['timezone']}"
    password = secret(host, "openemr-admin-password")
    response = login(fleet, name, wanted["admin_user"], password)
    assert response.status_code == 302, f"{name}: login as {wanted['admin_user']} answered {response.status_code}"
    assert response.headers["Location"] == "/interface/main/main.php"
    # Another customer's admin name with this host's password is not an account here.
    other = next(settings["admin_user"] for key, settings in CUSTOMERS.items() if key != name)
    assert login(fleet, name, other, password).status_code != 302


def test_an_unreachable_host_does_not_stop_the_others(fleet: Fleet) -> None:
    """The fifth host's port refuses connections: it is reported unreachable, the four are launched, and the
    run exits 3 (some host unreachable) rather than 0."""
    assert fleet.run.returncode == 3, fleet.run.explain()
    gone = fleet.run.summary["hosts"]["clinic-gone"]
    assert gone["status"] == "unreachable" and "Connection refused" in gone["message"], gone
    launched_all(fleet)


def test_a_converged_debian_12_host_changes_nothing_on_a_second_launch(fleet: Fleet) -> None:
    assert fleet.rerun.returncode == 0, fleet.rerun.explain()
    counts = fleet.rerun.counts()
    assert counts[RERUN]["changed"] == 0, [line for line in fleet.rerun.stdout.splitlines() if "changed" in line]


def test_python_api_reports_each_hosts_status_through_events(fleet: Fleet, monkeypatch) -> None:
    launched_all(fleet)
    monkeypatch.setenv("SHUTTLE_LOG_DIR", str(fleet.tmp / "logs"))
    seen: list[Event] = []
    result = api.status(inventory=fleet.inventory, forks=4, on_event=seen.append)
    assert result.exit_code == 0, {name: (h.status, h.message) for name, h in result.hosts.items()}
    for name, wanted in CUSTOMERS.items():
        events = [e for e in seen if e.event == "task_result" and e.host == name]
        assert events and all(e.status == "ok" for e in events), events
        host = result.hosts[name]
        assert (host.status, host.changed, host.failed) == ("ok", 0, 0)
        report = result.status[name]
        assert report["ready"] is True, report
        assert report["admin_user"] == wanted["admin_user"]
        assert report["timezone"] == wanted["timezone"]
        assert set(report["services"]) == {"db", "app", "proxy"}
        assert report["os"].startswith("Debian GNU/Linux 12") and report["docker"]
        # The release the app runs (the image's tag names it) and the marker the image left in the site.
        image_marker = (
            fleet.hosts[name]
            .exec(
                f"docker exec $(docker ps -q --filter label=com.docker.compose.service={LAYOUT['services']['app']})"
                " cat /root/docker-version",
                check=True,
            )
            .stdout.strip()
        )
        assert report["openemr"] == {"version": IMAGES["openemr"].rsplit(":", 1)[1], "docker_version": image_marker}
    started = {e.task for e in seen if e.event == "task_start"}
    assert "status : Require every service of the stack to be ready" in started


def test_status_names_a_service_that_is_not_ready(fleet: Fleet, monkeypatch) -> None:
    """Check mode, one host: its stopped app is named; the other hosts in the inventory are still ready."""
    launched_all(fleet)
    monkeypatch.setenv("SHUTTLE_LOG_DIR", str(fleet.tmp / "logs"))
    host = fleet.hosts["clinic-sydney"]
    project = LAYOUT["project"]
    app = f"$(docker ps -aq -f label=com.docker.compose.project={project} -f label=com.docker.compose.service=app)"
    host.exec(f"docker stop {app}", check=True)
    try:
        result = api.status(inventory=fleet.inventory, forks=4, check=True)
    finally:
        host.exec(f"docker start {app}", check=True)
    assert result.exit_code == 1
    assert result.hosts["clinic-sydney"].status == "failed"
    assert "service app is exited" in (result.hosts["clinic-sydney"].message or "")
    assert result.status["clinic-sydney"]["ready"] is False
    assert all(result.hosts[name].status == "ok" for name in CUSTOMERS if name != "clinic-sydney")
