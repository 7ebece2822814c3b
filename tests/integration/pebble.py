"""Pebble, Let's Encrypt's test CA, with its mock DNS server, on a loopback address.

pebble-challtestsrv answers every A query with one address (where HAProxy listens), so
pebble validates HTTP-01 challenges through HAProxy exactly as Let's Encrypt would reach a
host. Pebble makes a new root at every start: fetch it with `root_pem()` to verify chains.

Import the fixture explicitly: `from tests.integration.pebble import pebble_factory_fixture`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infr.routing.certs import dns_resolver
from tests.integration.haproxy_fixture import free_port, make_cert, require_tools


@dataclass
class Pebble:
    directory_url: str
    management_url: str
    # Pebble's own HTTPS certificate: what certbot must trust (REQUESTS_CA_BUNDLE).
    listener_cert: Path
    dns: tuple[str, int]
    dns_management_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _get(self, url: str) -> str:
        context = ssl.create_default_context(cafile=str(self.listener_cert))
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return str(response.read().decode())

    def root_pem(self) -> str:
        """The root this pebble signs with (new at every start)."""
        return self._get(f"{self.management_url}/roots/0")

    def set_a(self, name: str, address: str) -> None:
        """Make the mock DNS answer `name` with `address` instead of the default."""
        body = json.dumps({"host": f"{name}.", "addresses": [address]}).encode()
        request = urllib.request.Request(f"{self.dns_management_url}/add-a", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def resolve(self, name: str) -> list[str]:
        """A resolver for check_names_resolve() that asks the mock DNS (A and AAAA)."""
        return list(dns_resolver(f"{self.dns[0]}:{self.dns[1]}")(name))

    def stop(self) -> None:
        """SIGTERM each process by PID, SIGKILL what is still there after 5 s."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_pebble(workdir: Path, address: str, http_port: int, resolve_to: str) -> Pebble:
    """Pebble and its DNS on `address`; HTTP-01 validation connects to resolve_to:http_port."""
    require_tools("pebble", "pebble-challtestsrv")
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = make_cert(workdir, "pebble.test", address)
    api, management, tls, dns_port, dns_management = (
        free_port(address),
        free_port(address),
        free_port(address),
        free_port(address, socket.SOCK_DGRAM),
        free_port(address),
    )
    config = {
        "pebble": {
            "listenAddress": f"{address}:{api}",
            "managementListenAddress": f"{address}:{management}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": tls,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (workdir / "pebble.json").write_text(json.dumps(config))
    ca = Pebble(
        directory_url=f"https://{address}:{api}/dir",
        management_url=f"https://{address}:{management}",
        listener_cert=cert,
        dns=(address, dns_port),
        dns_management_url=f"http://{address}:{dns_management}",
    )
    # Only the DNS server of challtestsrv: its own challenge servers would take ports.
    challtestsrv = ["pebble-challtestsrv", "-defaultIPv4", resolve_to, "-defaultIPv6", "",
                    "-dns01", f"{address}:{dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                    "-management", f"{address}:{dns_management}"]  # fmt: skip
    pebble = ["pebble", "-config", str(workdir / "pebble.json"), "-dnsserver", f"{address}:{dns_port}"]
    # No random 0-15 s sleep before validating; no 5 % of nonces rejected on purpose.
    env = {"PATH": "/usr/bin:/bin", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    for argv, log in ((challtestsrv, "challtestsrv.log"), (pebble, "pebble.log")):
        with (workdir / log).open("ab") as out:
            ca.processes.append(
                subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            )
    try:
        _wait_ready(ca, workdir)
    except BaseException:
        ca.stop()
        raise
    return ca


def _wait_ready(ca: Pebble, workdir: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            ca._get(ca.directory_url)
            ca.set_a("ready.probe.test", "127.0.0.1")
            return
        time.sleep(0.1)
    logs = "\n".join(p.read_text() for p in sorted(workdir.glob("*.log")))
    raise AssertionError(f"pebble did not come up:\n{logs}")


StartPebble = Callable[[str, int, str], Pebble]


@pytest.fixture(name="pebble_factory")
def pebble_factory_fixture(tmp_path: Path) -> Iterator[StartPebble]:
    """start(address, http_port, resolve_to) -> Pebble; every one is stopped afterwards."""
    started: list[Pebble] = []

    def start(address: str, http_port: int, resolve_to: str) -> Pebble:
        ca = start_pebble(tmp_path / f"pebble{len(started)}", address, http_port, resolve_to)
        started.append(ca)
        return ca

    try:
        yield start
    finally:
        for ca in started:
            ca.stop()
