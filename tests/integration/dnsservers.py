"""Real DNS servers for the provider tests: PowerDNS (sqlite3 + HTTP API), BIND and Knot
(RFC 2136 + AXFR with TSIG), each on loopback on free ports, in a temporary directory.

Each starts in a fraction of a second. `stop()` ends the server by its PID and removes its
directory. The packages are listed in .ci/dns-packages.txt.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import requests

ZONE = "example.com"
KEY_NAME = "infr-test"
API_KEY = "pdns-test-api-key"
# What every test zone holds besides SOA and NS: a name outside infr's suffixes.
OUTSIDE = ("www", "A", "192.0.2.80")


@dataclass
class DnsServer:
    kind: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    zone: str = ZONE
    key_secret: str = ""
    api_url: str = ""
    log: Path = field(default_factory=Path)

    def stop(self) -> None:
        """End the server by its PID, then remove its directory."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def binary(name: str) -> str:
    """The path of a server program; Debian puts them in /usr/sbin, not always on PATH."""
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(f"{name} is not installed: apt-get install $(cat .ci/dns-packages.txt)")
    return found


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (DNS needs both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port on 127.0.0.1")


def new_secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def start(kind: str) -> DnsServer:
    starters: dict[str, Callable[[Path], DnsServer]] = {
        "powerdns": _start_powerdns,
        "bind": _start_bind,
        "knot": _start_knot,
    }
    workdir = Path(tempfile.mkdtemp(prefix=f"infr-{kind}-"))
    try:
        return starters[kind](workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _zone_file(workdir: Path) -> Path:
    path = workdir / f"{ZONE}.zone"
    name, rtype, value = OUTSIDE
    path.write_text(
        "$TTL 300\n"
        f"@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 604800 300\n"
        f"@ IN NS ns1.{ZONE}.\n"
        "ns1 IN A 127.0.0.1\n"
        f"{name} IN {rtype} {value}\n"
    )
    return path


def _launch(kind: str, argv: list[str], workdir: Path, port: int, **fields: str) -> DnsServer:
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    return DnsServer(kind, port, workdir, proc, log=log, **fields)


def _wait(server: DnsServer, ready: Callable[[], bool], timeout: float = 10.0) -> DnsServer:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        if ready():
            return server
        time.sleep(0.02)
    output = server.log.read_text(errors="replace")[-2000:]
    server.stop()
    raise RuntimeError(f"{server.kind} did not start on port {server.port}:\n{output}")


def _answers_soa(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        query = dns.message.make_query(ZONE, "SOA")
        try:
            answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
        except (OSError, dns.exception.Timeout):
            return False
        return answer.rcode() == dns.rcode.NOERROR and bool(answer.answer)

    return ready


def _start_powerdns(workdir: Path) -> DnsServer:
    port, api_port = free_port(), free_port()
    database = workdir / "pdns.sqlite3"
    schema = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql").read_text()
    # One transaction without fsync: statement by statement the schema takes half a second.
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.executescript(f"PRAGMA synchronous=OFF; BEGIN; {schema} COMMIT;")
    (workdir / "pdns.conf").write_text(
        "launch=gsqlite3\n"
        f"gsqlite3-database={database}\n"
        # Test zones need no durability; fsync on every API change is most of the time spent.
        "gsqlite3-pragma-synchronous=0\n"
        "local-address=127.0.0.1\n"
        f"local-port={port}\n"
        f"socket-dir={workdir}\n"
        "api=yes\n"
        f"api-key={API_KEY}\n"
        "webserver=yes\n"
        "webserver-address=127.0.0.1\n"
        f"webserver-port={api_port}\n"
        "webserver-allow-from=127.0.0.0/8\n"
        "default-soa-content=ns1.@ hostmaster.@ 0 10800 3600 604800 3600\n"
        "daemon=no\nguardian=no\ndisable-syslog=yes\nloglevel=4\n"
    )
    server = _launch(
        "powerdns",
        [binary("pdns_server"), f"--config-dir={workdir}"],
        workdir,
        port,
        api_url=f"http://127.0.0.1:{api_port}",
    )
    api = f"{server.api_url}/api/v1/servers/localhost"

    def ready() -> bool:
        try:
            return requests.get(api, headers={"X-API-Key": API_KEY}, timeout=0.5).ok
        except requests.RequestException:
            return False

    _wait(server, ready)
    name, rtype, value = OUTSIDE
    created = requests.post(
        f"{api}/zones",
        headers={"X-API-Key": API_KEY},
        timeout=5,
        json={
            "name": f"{ZONE}.",
            "kind": "Native",
            "nameservers": [f"ns1.{ZONE}."],
            "rrsets": [
                {
                    "name": f"{name}.{ZONE}.",
                    "type": rtype,
                    "ttl": 300,
                    "records": [{"content": value, "disabled": False}],
                }
            ],
        },
    )
    if not created.ok:
        server.stop()
        raise RuntimeError(f"PowerDNS refused the test zone: {created.status_code} {created.text}")
    return server


def _start_bind(workdir: Path) -> DnsServer:
    port, secret = free_port(), new_secret()
    zone_file = _zone_file(workdir)
    (workdir / "named.conf").write_text(f"""
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{secret}"; }};
options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    session-keyfile "{workdir}/session.key";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
}};
controls {{ }};
zone "{ZONE}" {{
    type primary;
    file "{zone_file}";
    update-policy {{ grant {KEY_NAME} zonesub ANY; }};
    allow-transfer {{ key {KEY_NAME}; }};
}};
""")
    argv = [binary("named"), "-g", "-c", str(workdir / "named.conf")]
    server = _launch("bind", argv, workdir, port, key_secret=secret)
    return _wait(server, _answers_soa(port))


def _start_knot(workdir: Path) -> DnsServer:
    port, secret = free_port(), new_secret()
    zone_file = _zone_file(workdir)
    # Knot answers every update with SERVFAIL when its storage directory is missing.
    (workdir / "db").mkdir()
    (workdir / "knot.conf").write_text(f"""
server:
    rundir: {workdir}
    listen: 127.0.0.1@{port}
    pidfile: {workdir}/knot.pid
database:
    storage: {workdir}/db
log:
  - target: stderr
    any: info
key:
  - id: {KEY_NAME}
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: infr
    key: {KEY_NAME}
    action: [update, transfer]
zone:
  - domain: {ZONE}
    storage: {workdir}
    file: {zone_file.name}
    zonefile-sync: -1
    journal-content: changes
    acl: infr
""")
    argv = [binary("knotd"), "-c", str(workdir / "knot.conf")]
    server = _launch("knot", argv, workdir, port, key_secret=secret)
    return _wait(server, _answers_soa(port))
