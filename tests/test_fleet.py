"""A hosting provider's fleet: four hosts launched from one inventory in one run, side by side, each with its own
settings (`shuttle_settings`: admin user, time zone); an unreachable fifth host does not stop the others; and
the Python API drives the same hosts with an event callback.

The four hosts are copies of the session's provisioned Debian 12 host (everything installed, nothing started,
no secret), so the run does what a fleet launch does on each host but install packages: its own secrets, its
own OpenEMR set up with its own admin, its own time zone.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from shuttle import api
from shuttle.events import Event
from tests import sites
from tests.conftest import LAYOUT, Run, boot_copy, run_shuttle, secret, stack_config
from tests.harness import hosts
from tests.standins import LOGIN_POST

#: The stand-in stack serves Caddy's internal CA; the logins below do not verify it, on purpose.
pytestmark = [pytest.mark.hosts, pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

#: A secret only this module knows (not conftest's SENTINEL: these inventories stay in the session's tmp dir,
#: where test_launch looks for that one).
SECRET = f"fleet-secret-{secrets.token_hex(8)}"
#: An S3 backup target is never contacted by a launch; its secret key must not leave the inventory.
S3_BACKUP = {
    "target": "s3:https://s3.example.org/clinic-berlin",
    "s3_access_key_id": "AKIASHUTTLEFLEET",
    "s3_secret_access_key": SECRET,
}
#: One customer per host, each with its own administrator login and time zone; one has an S3 backup target.
CUSTOMERS = {
    "clinic-chicago": {"admin_user": "drsmith", "timezone": "America/Chicago"},
    "clinic-berlin": {"admin_user": "praxis.weber", "timezone": "Europe/Berlin", "backup": S3_BACKUP},
    "clinic-tokyo": {"admin_user": "tanaka_it", "timezone": "Asia/Tokyo"},
    "clinic-sydney": {"admin_user": "ops-admin", "timezone": "Australia/Sydney"},
}


@dataclass
class Fleet:
    hosts: dict[str, hosts.TestHost]
    tmp: Path
    inventory: Path
    config: Path
    run: Run


def write_inventory(path: Path, fleet: dict[str, hosts.TestHost], tmp: Path, extra: dict | None = None) -> Path:
    """A provider's inventory: shared connection settings in `all.vars`, one host per customer."""
    clinics = {
        name: {"ansible_port": host.ssh_port, "shuttle_settings": CUSTOMERS[name]} for name, host in fleet.items()
    }
    key = next(iter(fleet.values())).key
    inventory = {
        "all": {
            "vars": {
                "ansible_host": "127.0.0.1",
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={tmp / 'known_hosts'}",
            },
            "children": {"clinics": {"hosts": clinics}},
            "hosts": extra or {},
        }
    }
    path.write_text(yaml.safe_dump(inventory))
    return path


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nothing else takes it) and never listened on."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@sites.job("fleet", needs=("provisioned",), weight=6)
def build_fleet(session: sites.Session) -> Fleet:
    """Four copies of the provisioned host, launched with one `shuttle launch -i --forks 4` run."""
    snapshot = session.get("provisioned").snapshot
    with ThreadPoolExecutor(max_workers=len(CUSTOMERS)) as pool:
        started = list(pool.map(lambda _: boot_copy(session, snapshot, stack=False), CUSTOMERS))
    fleet_hosts = dict(zip(CUSTOMERS, started, strict=True))
    tmp = session.tmp("fleet")
    inventory = write_inventory(tmp / "customers.yml", fleet_hosts, tmp)
    config = tmp / "shuttle.yml"
    config.write_text(yaml.safe_dump(stack_config()))
    run = run_shuttle(
        "launch", "-i", str(inventory), "--config", str(config), "--json", "--forks", "4", tmp=tmp, timeout=2400
    )
    return Fleet(fleet_hosts, tmp, inventory, config, run)


@pytest.fixture(scope="module")
def fleet(session: sites.Session) -> Iterator[Fleet]:
    yield session.get("fleet")
    session.release("fleet")


def login(host: hosts.TestHost, user: str, password: str) -> requests.Response:
    """The OpenEMR login form, posted over HTTPS as a browser does."""
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify=False
    session.verify = False
    form = {"new_login_session_management": "1", "authUser": user, "clearPass": password}
    return session.post(f"https://{host.ip}{LOGIN_POST}", data=form, allow_redirects=False, timeout=30)


def test_one_run_launches_every_host_with_its_own_settings(fleet: Fleet) -> None:
    assert fleet.run.returncode == 0, fleet.run.explain()
    summary = fleet.run.summary
    assert set(summary["hosts"]) == set(CUSTOMERS)
    for name, wanted in CUSTOMERS.items():
        result = summary["hosts"][name]
        assert result["status"] == "ok" and result["failed"] == 0, result
        assert result["settings"]["admin_user"] == wanted["admin_user"]
        assert result["settings"]["timezone"] == wanted["timezone"]
    assert summary["hosts"]["clinic-berlin"]["settings"]["backup"]["s3_secret_access_key"] == "**********"
    assert SECRET not in fleet.run.stdout + fleet.run.stderr
    assert SECRET not in Path(summary["log"]).read_text()
    # Only the inventory holds it: the run's private directory (generated inventory, extra vars) is gone.
    places = [place for place in ("/tmp", "/var/tmp", str(Path.home() / ".ansible")) if Path(place).is_dir()]
    grep = ["grep", "-rlF", "--exclude", fleet.inventory.name, "-e", SECRET, *places]
    assert subprocess.run(grep, capture_output=True, text=True, check=False).stdout == ""

    # The hosts ran side by side. Take the slowest task (it started once for all four hosts): one host after the
    # other, the first would be done a quarter of the way through it; side by side, most of the way through.
    starts = {e["task"]: e["time"] for e in fleet.run.events if e["event"] == "task_start"}
    results: dict[str, list[float]] = {}
    for event in fleet.run.events:
        if event["event"] == "task_result" and event.get("task") in starts:
            results.setdefault(event["task"], []).append(event["time"] - starts[event["task"]])
    task, done = max(((t, sorted(d)) for t, d in results.items() if len(d) == len(CUSTOMERS)), key=lambda i: i[1][-1])
    assert done[-1] > 10, f"no task took long enough to tell ({task}: {done})"
    assert done[0] > 0.5 * done[-1], f"{task}: the hosts finished at {done} seconds into it, one after another"


@pytest.mark.parametrize("name", list(CUSTOMERS))
def test_each_host_has_its_own_time_zone_and_admin(fleet: Fleet, name: str) -> None:
    assert fleet.run.returncode == 0, fleet.run.explain()
    host, wanted = fleet.hosts[name], CUSTOMERS[name]
    assert host.exec("readlink /etc/localtime").stdout.strip() == f"/usr/share/zoneinfo/{wanted['timezone']}"
    password = secret(host, "openemr-admin-password")
    response = login(host, wanted["admin_user"], password)
    assert response.status_code == 302, f"{name}: login as {wanted['admin_user']} answered {response.status_code}"
    assert response.headers["Location"] == "/interface/main/main.php"
    # Another customer's admin name with this host's password is not an account here.
    other = next(settings["admin_user"] for key, settings in CUSTOMERS.items() if key != name)
    assert login(host, other, password).status_code != 302


def test_an_unreachable_host_does_not_stop_the_others(fleet: Fleet, closed_port: int) -> None:
    assert fleet.run.returncode == 0, fleet.run.explain()
    inventory = write_inventory(
        fleet.tmp / "customers-plus-one.yml", fleet.hosts, fleet.tmp,
        extra={"clinic-gone": {"ansible_port": closed_port, "shuttle_settings": {"timezone": "Europe/Paris"}}},
    )  # fmt: skip
    run = run_shuttle(
        "launch", "-i", str(inventory), "--config", str(fleet.config), "--json", "--forks", "5",
        tmp=fleet.tmp, timeout=1800,
    )  # fmt: skip
    assert run.returncode == 3, run.explain()
    hosts_summary = run.summary["hosts"]
    assert hosts_summary["clinic-gone"]["status"] == "unreachable"
    assert "Connection refused" in hosts_summary["clinic-gone"]["message"]
    for name in CUSTOMERS:
        assert hosts_summary[name]["status"] == "ok", hosts_summary[name]
        # A converged host with the same settings changes nothing on a re-run.
        assert hosts_summary[name]["changed"] == 0, (name, [e for e in run.events if e.get("status") == "changed"])


def test_python_api_reports_each_hosts_status_through_events(fleet: Fleet, monkeypatch) -> None:
    assert fleet.run.returncode == 0, fleet.run.explain()
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
    started = {e.task for e in seen if e.event == "task_start"}
    assert "status : Require every service of the stack to be ready" in started


def test_status_names_a_service_that_is_not_ready(fleet: Fleet, monkeypatch) -> None:
    """Check mode, one host: its stopped app is named; the other hosts in the inventory are still ready."""
    assert fleet.run.returncode == 0, fleet.run.explain()
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
