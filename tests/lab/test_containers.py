"""Containers and the front door on a real lab host: `infr lxcs add` from an offline rootfs
tarball, every `infr lxc NAME ...` change applied to HAProxy at once and proved with real
traffic (Host header, 301, SNI passthrough, TLS ended in HAProxy with a certificate from a
real ACME CA, tcp forwards), reloads that drop nothing, a broken config that never goes
live, ssh through the host, keys reaching the container, and remove leaving nothing."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infr.lab import Lab, LabHost
from infr.state.session import Session
from tests.conftest import DEFAULT_SETTINGS, make_key
from tests.integration.pebble import Pebble, start_pebble
from tests.lab.conftest import Fleet, LabKey, infr
from tests.lab.test_adopt import run_as_manager

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1800)]
HOST = "bob"
LXC = "kermit"
NAME = f"{LXC}.{DEFAULT_SETTINGS['dnsPrefix']}.{DEFAULT_SETTINGS['dnsDomain']}"


def ok(fleet: Fleet, key: LabKey, *args: str) -> str:
    result = infr(fleet.state, key.private, *args)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def on_host(host: LabHost, key: LabKey, command: str) -> str:
    code, out = run_as_manager(host.ip, key.private, command)
    assert code == 0, out
    return out


@pytest.fixture(scope="module")
def container(fleet: Fleet, lab_key: LabKey) -> str:
    """kermit on bob, serving HTTP on 80 (busybox) and its own TLS on 443 (openssl s_server)."""
    started = time.monotonic()
    out = ok(fleet, lab_key, "lxcs", "add", LXC, "debian", "bookworm", HOST)
    print(f"lxcs add took {time.monotonic() - started:.0f} s:\n{out}")
    inside = (
        "mkdir -p /srv/www && echo hello from kermit > /srv/www/index.html && busybox httpd -p 80 -h /srv/www"
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
        " -subj /CN=kermit-itself -keyout /root/key.pem -out /root/cert.pem 2>/dev/null"
        " && setsid -f openssl s_server -accept 443 -cert /root/cert.pem -key /root/key.pem -www"
        " </dev/null >/dev/null 2>&1"
    )
    on_host(fleet.bob, lab_key, f"sudo lxc-attach -n {LXC} -- sh -c '{inside}'")
    return Session(fleet.state).inventory().lxcs[LXC].vnet_ip


def get(ip: str, name: str, port: int = 80) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(ip, port, timeout=30)
    try:
        connection.request("GET", "/", headers={"Host": name})
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


def peer_certificate(ip: str, name: str, cafile: str | None = None) -> dict:
    """The certificate bob's port 443 shows for SNI `name` (verified against `cafile` if given)."""
    context = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    with socket.create_connection((ip, 443), timeout=30) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
        if cafile:
            return tls.getpeercert()
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return {"der_sha256": hashlib.sha256(der).hexdigest(), "pem": ssl.DER_cert_to_PEM_cert(der)}


def ssh_banner(ip: str, port: int) -> bytes:
    with socket.create_connection((ip, port), timeout=10) as conn:
        return conn.recv(64)


def test_add_makes_a_running_autostarted_container_on_btrfs_at_its_vnet_address(
    fleet: Fleet, lab_key: LabKey, container: str
) -> None:
    out = on_host(
        fleet.bob,
        lab_key,
        f"sudo lxc-info -n {LXC} -s -H; sudo lxc-attach -n {LXC} -- ip -4 -o addr show eth0;"
        f" sudo lxc-attach -n {LXC} -- ip route; sudo grep -h start.auto /var/lib/lxc/{LXC}/config;"
        f" sudo btrfs subvolume show /var/lib/lxc/{LXC}/rootfs >/dev/null && echo btrfs",
    )
    assert out.splitlines()[0] == "RUNNING"
    assert f"{container}/16" in out
    assert "default via 10.8.1.1" in out
    assert "lxc.start.auto = 1" in out
    assert out.split()[-1] == "btrfs"


def test_adding_again_changes_nothing(fleet: Fleet, lab_key: LabKey, container: str) -> None:
    head = Session(fleet.state).inventory()
    out = ok(fleet, lab_key, "lxcs", "add", LXC, "debian", "bookworm", HOST)
    assert "nothing changed" in out
    assert Session(fleet.state).inventory().lxcs == head.lxcs


def test_ssh_reaches_the_container_through_its_host(fleet: Fleet, lab_key: LabKey, container: str) -> None:
    out = ok(fleet, lab_key, "lxc", LXC, "ssh", "--", "hostname; sudo -n id -un")
    assert out.split() == [LXC, "root"]


def test_keys_added_and_removed_reach_the_container(
    fleet: Fleet, lab_key: LabKey, container: str, tmp_path: Path
) -> None:
    second = make_key(tmp_path, comment="piggy@laptop")
    read_keys = f"sudo lxc-attach -n {LXC} -- cat /home/manager/.ssh/authorized_keys"
    ok(fleet, lab_key, "keys", "add", str(second))
    assert "piggy@laptop" in on_host(fleet.bob, lab_key, read_keys)
    ok(fleet, lab_key, "keys", "remove", "piggy@laptop")
    assert "piggy@laptop" not in on_host(fleet.bob, lab_key, read_keys)


def test_http_forward_redirect_and_tcp_forward_are_applied_at_once(
    fleet: Fleet, lab_key: LabKey, container: str
) -> None:
    assert "haproxy:" in ok(fleet, lab_key, "lxc", LXC, "http", "FORWARD")
    assert get(fleet.bob.ip, NAME)[::2] == (200, b"hello from kermit\n")
    assert get(fleet.bob.ip, f"{NAME}:80")[0] == 200  # Host header with the port
    assert "haproxy:" in ok(fleet, lab_key, "lxc", LXC, "http", "REDIRECT-HTTPS")
    status, headers, _ = get(fleet.bob.ip, NAME)
    assert (status, headers["location"]) == (301, f"https://{NAME}/")
    ok(fleet, lab_key, "lxc", LXC, "add-tcp-forward", "2222", "22")
    assert ssh_banner(fleet.bob.ip, 2222).startswith(b"SSH-2.0-")
    ok(fleet, lab_key, "lxc", LXC, "http", "FORWARD")


def test_unknown_names_get_a_clear_page(fleet: Fleet, container: str) -> None:
    status, _, body = get(fleet.bob.ip, "nobody.example.net")
    assert status == 404
    assert b"nobody.example.net" in body


def test_https_forward_passes_tls_through_to_the_container(fleet: Fleet, lab_key: LabKey, container: str) -> None:
    ok(fleet, lab_key, "lxc", LXC, "https", "FORWARD")
    shown = peer_certificate(fleet.bob.ip, NAME)
    theirs = on_host(fleet.bob, lab_key, f"sudo lxc-attach -n {LXC} -- cat /root/cert.pem")
    assert ssl.PEM_cert_to_DER_cert(shown["pem"]) == ssl.PEM_cert_to_DER_cert(theirs)


@pytest.fixture(scope="module")
def pebble(fleet: Fleet, lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """Pebble on this machine's lab bridge address; its DNS answers every name with bob."""
    address = str(lab.config.bridge_address.ip)
    ca = start_pebble(tmp_path_factory.mktemp("pebble"), address, 80, fleet.bob.ip)
    try:
        yield ca
    finally:
        ca.stop()


@pytest.fixture(scope="module")
def terminated(
    fleet: Fleet, lab_key: LabKey, container: str, pebble: Pebble, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """kermit with https TERMINATE and a certificate from pebble; returns pebble's root (PEM file)."""
    ok(fleet, lab_key, "config", "set", "acmeServer", pebble.directory_url)
    ok(fleet, lab_key, "config", "set", "acmeCaCert", str(pebble.listener_cert))
    ok(fleet, lab_key, "config", "set", "dnsCheckResolver", f"{pebble.dns[0]}:{pebble.dns[1]}")
    out = ok(fleet, lab_key, "lxc", LXC, "https", "TERMINATE")
    print(out)
    assert f"certificate {LXC}" in out or "asking" in out, out
    root = tmp_path_factory.mktemp("pebble-root") / "root.pem"
    root.write_text(pebble.root_pem())
    return root


def test_terminate_serves_a_certificate_from_the_acme_ca(fleet: Fleet, terminated: Path) -> None:
    cert = peer_certificate(fleet.bob.ip, NAME, cafile=str(terminated))
    assert ("DNS", NAME) in cert["subjectAltName"]
    context = ssl.create_default_context(cafile=str(terminated))
    request = f"GET / HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode()
    with (
        socket.create_connection((fleet.bob.ip, 443), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        tls.sendall(request)
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"hello from kermit\n")


def test_certs_lists_the_certificate_with_its_expiry(fleet: Fleet, lab_key: LabKey, terminated: Path) -> None:
    rows = json.loads(ok(fleet, lab_key, "certs", "-o", "json"))
    mine = [row for row in rows if row["name"] == LXC]
    assert len(mine) == 1, rows
    assert mine[0]["host"] == HOST and NAME in mine[0]["domains"]
    assert mine[0]["days"] > 0


def test_a_name_that_does_not_resolve_to_the_host_is_not_sent_to_the_ca(
    fleet: Fleet, lab_key: LabKey, terminated: Path, pebble: Pebble
) -> None:
    pebble.set_a("www.kermit.example.org", "203.0.113.9")
    out = ok(fleet, lab_key, "lxc", LXC, "add-alias", "www.kermit.example.org")
    assert "www.kermit.example.org resolves to 203.0.113.9" in out
    cert = peer_certificate(fleet.bob.ip, NAME, cafile=str(terminated))
    assert ("DNS", "www.kermit.example.org") not in cert["subjectAltName"]
    ok(fleet, lab_key, "lxc", LXC, "remove-alias", "www.kermit.example.org")


class Load:
    """Requests one after another to bob, through HAProxy, counting every answer."""

    def __init__(self, ip: str) -> None:
        self.ip, self.ok, self.failed = ip, 0, 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, _, body = get(self.ip, NAME)
                if status == 200 and body == b"hello from kermit\n":
                    self.ok += 1
                    # Steady, not flat out: a tight loop starves the VM's one emulated CPU.
                    self._stop.wait(0.05)
                    continue
                self.errors.append(f"{status} {body[:60]!r}")
            except OSError as exc:
                self.errors.append(repr(exc))
            self.failed += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_reloads_under_steady_requests_drop_none(fleet: Fleet, lab_key: LabKey, container: str) -> None:
    ok(fleet, lab_key, "lxc", LXC, "http", "FORWARD")
    with Load(fleet.bob.ip) as load:
        for round_ in range(2):
            # Forwards, not aliases: a new alias would also wait for a certificate.
            ok(fleet, lab_key, "lxc", LXC, "add-tcp-forward", str(2300 + round_), "22")
            ok(fleet, lab_key, "lxc", LXC, "remove-tcp-forward", str(2300 + round_))
    print(f"4 reloads under load: {load.ok} requests answered, {load.failed} failed")
    assert load.ok > 100, "the load did not run"
    assert (load.failed, load.errors) == (0, [])


def test_a_config_failing_haproxy_check_never_goes_live(fleet: Fleet, lab_key: LabKey, container: str) -> None:
    before = on_host(fleet.bob, lab_key, "sudo sha256sum /etc/haproxy/haproxy.cfg")
    broken = "global\n    this-is-not-a-keyword\n"
    code, out = run_as_manager(
        fleet.bob.ip,
        lab_key.private,
        f"printf '{broken}' > /tmp/broken.cfg && sudo /usr/local/sbin/infr-haproxy-apply /tmp/broken.cfg; echo rc=$?",
    )
    assert "rc=2" in out, out
    assert on_host(fleet.bob, lab_key, "sudo sha256sum /etc/haproxy/haproxy.cfg") == before
    assert get(fleet.bob.ip, NAME)[0] == 200


def test_no_apply_batches_until_reconfigure(fleet: Fleet, lab_key: LabKey, container: str) -> None:
    ok(fleet, lab_key, "lxc", LXC, "add-tcp-forward", "2223", "22")
    out = ok(fleet, lab_key, "lxc", "--no-apply", LXC, "remove-tcp-forward", "2223")
    assert "not applied" in out
    assert ssh_banner(fleet.bob.ip, 2223).startswith(b"SSH-2.0-")
    ok(fleet, lab_key, "host", HOST, "reconfigure")
    with pytest.raises(OSError):
        ssh_banner(fleet.bob.ip, 2223)


def test_stop_start_and_restart(fleet: Fleet, lab_key: LabKey, container: str) -> None:
    stopped = ok(fleet, lab_key, "lxc", LXC, "stop").strip()
    assert stopped == f"{LXC}: stopped (it stays stopped until you start it)"
    assert on_host(fleet.bob, lab_key, f"sudo lxc-info -n {LXC} -s -H").strip() == "STOPPED"
    # Stopped on purpose is state: the plan does not start it again.
    assert Session(fleet.state).inventory().lxcs[LXC].stopped
    planned = infr(fleet.state, lab_key.private, "plan", HOST, "-f", "lxcs")
    assert planned.returncode in (0, 2) and f"start the container {LXC}" not in planned.stdout, planned.stdout
    assert ok(fleet, lab_key, "lxc", LXC, "start").strip() == f"{LXC}: started"
    assert ok(fleet, lab_key, "lxc", LXC, "restart").strip() == f"{LXC}: restarted"
    assert on_host(fleet.bob, lab_key, f"sudo lxc-info -n {LXC} -s -H").strip() == "RUNNING"


def test_remove_leaves_no_container_config_certificate_or_address(
    fleet: Fleet, lab_key: LabKey, container: str
) -> None:
    ok(fleet, lab_key, "lxc", LXC, "remove", "--yes")
    inv = Session(fleet.state).inventory()
    assert LXC not in inv.lxcs
    assert inv.holder_of(container) is None
    out = on_host(
        fleet.bob,
        lab_key,
        "sudo lxc-ls -1; sudo ls /var/lib/lxc /etc/haproxy/certs; sudo cat /etc/haproxy/haproxy.cfg;"
        " sudo certbot certificates 2>&1",
    )
    assert LXC not in out
