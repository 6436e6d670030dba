"""Browser-like requests made from another test host, so the OpenEMR host sees that host's own address."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

from tests.harness import hosts
from tests.standins import LOGIN_POST

#: Runs on a client host: one request, no redirects followed, certificate not checked (as `curl -k`).
_CLIENT_REQUEST = """
import http.client, json, ssl, sys
ip, method, path, tls, body = json.load(sys.stdin)
context = ssl._create_unverified_context()
if tls:
    conn = http.client.HTTPSConnection(ip, 443, timeout=5, context=context)
else:
    conn = http.client.HTTPConnection(ip, 80, timeout=5)
headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
try:
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    print(json.dumps({"status": r.status, "headers": dict(r.getheaders()), "body": r.read().decode(errors="replace")}))
except OSError as e:
    print(json.dumps({"error": repr(e)}))
"""


@dataclass
class Client:
    """Another test host on the network, making requests to the OpenEMR host with its own address."""

    host: hosts.TestHost

    def request(self, ip: str, method: str, path: str, *, tls: bool = True, body: str | None = None) -> dict:
        """{status, headers, body}, or {error} when no HTTP answer came (refused, dropped, timed out)."""
        payload = json.dumps([ip, method, path, tls, body])
        out = self.host.exec(f"python3 -c '{_CLIENT_REQUEST}'", input=payload)  # the script has no single quote
        return json.loads(out.stdout)

    def login(self, ip: str, user: str, password: str) -> dict:
        form = urllib.parse.urlencode({"new_login_session_management": "1", "authUser": user, "clearPass": password})
        return self.request(ip, "POST", LOGIN_POST, body=form)
