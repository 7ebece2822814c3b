"""A real master-worker HAProxy on loopback addresses, with stand-in containers.

Everything binds to one random 127.X.Y.0/24 block on ports the kernel hands out, so runs do
not collide with each other or with services on this machine. "Containers" are servers in
this process (HTTP, TLS with their own certificate, plain TCP) on other addresses of the
block; HAProxy reaches them at the address given as their vnet_ip.

HAProxy is driven exactly as on a host: configs rendered by render_haproxy() and put live by
the installed copy of infr-haproxy-apply, whose INFR_HAPROXY_* variables point here.

Import the fixtures explicitly (the *_fixture names register `haproxy`, `containers` and
`loopback`): `from tests.integration.haproxy_fixture import haproxy_fixture, ...`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infr.routing.haproxy import APPLY_SCRIPT, HOST_FILES, HaproxySettings, render_haproxy
from infr.state.model import Host, Lxc

TOOLS = ("haproxy", "socat", "openssl", "flock")
HOST = Host("testhost", "127.0.0.1", "127.0.0.1")


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install $(cat .ci/haproxy-packages.txt))")


class Loopback:
    """A random 127.X.Y.0/24 block: .1 is HAProxy's, .2 and up are containers'."""

    def __init__(self) -> None:
        self.prefix = f"127.{random.randint(100, 254)}.{random.randint(1, 254)}"
        self._next = 2

    @property
    def haproxy(self) -> str:
        return f"{self.prefix}.1"

    def next_address(self) -> str:
        self._next += 1
        return f"{self.prefix}.{self._next - 1}"


def free_port(address: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def make_cert(directory: Path, name: str, *sans: str) -> tuple[Path, Path]:
    """A self-signed EC certificate for `name` (plus `sans`): (cert.pem, key.pem)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    alt = ",".join(f"IP:{s}" if s[0].isdigit() else f"DNS:{s}" for s in (name, *sans))
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName={alt}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


# --- stand-in containers ----------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server: NamedServer = self.server  # type: ignore[assignment]
        body = (
            f"container {server.name}\nhost {self.headers.get('Host')}\npath {self.path}\n"
            f"proto {self.headers.get('X-Forwarded-Proto')}\nfor {self.headers.get('X-Forwarded-For')}\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # thousands of requests in the load test: keep pytest's output readable


class NamedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], name: str) -> None:
        self.name = name
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # HAProxy resets the idle keep-alive connections of a worker leaving after a reload:
        # normal, and not a client's request; anything else is still printed.
        if not isinstance(sys.exc_info()[1], ConnectionResetError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _TcpHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server: NamedTcpServer = self.server  # type: ignore[assignment]
        line = self.rfile.readline()
        self.wfile.write(f"tcp {server.name} got {line.decode().strip()}\n".encode())


class NamedTcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], name: str) -> None:
        self.name = name
        super().__init__(address, _TcpHandler)


@dataclass
class Container:
    """What an LXC would run: an HTTP server, optionally a TLS one, optionally a TCP one."""

    name: str
    ip: str
    http_port: int
    https_port: int = 0
    tcp_port: int = 0
    cert_der: bytes = b""
    servers: list[socketserver.BaseServer] = field(default_factory=list)

    def lxc(self, **fields: object) -> Lxc:
        ports: dict[str, object] = {"http_port": self.http_port}
        if self.https_port:
            ports["https_port"] = self.https_port
        return Lxc(self.name, HOST.name, "debian", "12", self.ip, **{**ports, **fields})  # type: ignore[arg-type]


class Containers:
    def __init__(self, net: Loopback, certs: Path) -> None:
        self.net, self.certs = net, certs
        self.all: list[Container] = []

    def add(self, name: str, *, tls: bool = False, tcp: bool = False) -> Container:
        ip = self.net.next_address()
        http = NamedServer((ip, 0), name)
        box = Container(name, ip, http.server_address[1], servers=[http])
        if tls:
            cert, key = make_cert(self.certs, f"{name}.container.test")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            secure = NamedServer((ip, 0), f"{name} over its own TLS")
            secure.socket = context.wrap_socket(secure.socket, server_side=True)
            box.https_port = secure.server_address[1]
            box.cert_der = ssl.PEM_cert_to_DER_cert(cert.read_text())
            box.servers.append(secure)
        if tcp:
            raw = NamedTcpServer((ip, 0), name)
            box.tcp_port = raw.server_address[1]
            box.servers.append(raw)
        for server in box.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.all.append(box)
        return box

    def close(self) -> None:
        for box in self.all:
            for server in box.servers:
                server.shutdown()
                server.server_close()


# --- HAProxy ---------------------------------------------------------------------------


class Haproxy:
    """One HAProxy master-worker process and the files a host would have."""

    def __init__(self, workdir: Path, net: Loopback) -> None:
        self.dir = workdir
        self.address = net.haproxy
        self.config = workdir / "haproxy.cfg"
        self.pidfile = workdir / "haproxy.pid"
        self.master_sock = workdir / "master.sock"
        self.log = workdir / "haproxy.log"
        self.apply_script = self.install(APPLY_SCRIPT)
        self.settings = HaproxySettings(
            dns_domain="example.test",
            bind_addresses=(self.address,),
            http_port=free_port(self.address),
            https_port=free_port(self.address),
            certs_dir=str(workdir / "certs"),
            default_cert=str(workdir / "default.pem"),
            acme_address=self.address,
            acme_port=free_port(self.address),
            terminate_socket=str(workdir / "terminate.sock"),
            stats_socket=str(workdir / "stats.sock"),
            log_target="stderr format short local0 info",
        )
        self.started = False

    def install(self, host_path: str) -> Path:
        """Install a host file as infr would: its packaged text, with its mode."""
        host_file = next(f for f in HOST_FILES if f.path == host_path)
        path = self.dir / Path(host_path).name
        path.write_text(host_file.text())
        path.chmod(host_file.mode)
        return path

    def env(self) -> dict[str, str]:
        """The INFR_HAPROXY_* variables that aim infr-haproxy-apply at this HAProxy.

        Start and reload do what systemd's haproxy.service does: `haproxy -W` with a master
        CLI, and SIGUSR2 to the master.
        """
        start = (
            f"setsid haproxy -W -f {self.config} -p {self.pidfile} -S {self.master_sock} </dev/null >>{self.log} 2>&1 &"
        )
        return {
            **os.environ,
            "INFR_HAPROXY_CONFIG": str(self.config),
            "INFR_HAPROXY_MASTER_SOCK": str(self.master_sock),
            "INFR_HAPROXY_START_CMD": start,
            "INFR_HAPROXY_RELOAD_CMD": f'kill -USR2 "$(head -n 1 {self.pidfile})"',
            "INFR_HAPROXY_LOG_CMD": f"tail -n 15 {self.log}",
            "INFR_HAPROXY_CERTS_DIR": self.settings.certs_dir,
            "INFR_HAPROXY_DEFAULT_CERT": self.settings.default_cert,
            "INFR_HAPROXY_TIMEOUT": "20",
        }

    def render(self, lxcs: list[Lxc]) -> str:
        return render_haproxy(HOST, lxcs, self.settings)

    def start(self, lxcs: list[Lxc]) -> None:
        """First apply on a host where HAProxy is not running: the script starts it."""
        result = self.apply(lxcs)
        self.started = True
        assert result.returncode == 0, f"{result.stderr}\n{self.log.read_text()}"
        assert "HAProxy is not running: starting it" in result.stderr

    def run_apply(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.apply_script), *map(str, args)], env=self.env(), capture_output=True, text=True, timeout=90
        )

    def apply(self, lxcs: list[Lxc]) -> subprocess.CompletedProcess[str]:
        new = self.dir / "new.cfg"
        new.write_text(self.render(lxcs))
        return self.run_apply(new)

    def show_proc(self) -> str:
        out = subprocess.run(
            ["socat", "-t", "2", "-", f"UNIX-CONNECT:{self.master_sock}"],
            input="show proc\n", capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return out.stdout

    def master_pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])

    def stop(self) -> None:
        """SIGTERM to the master, then SIGKILL by PID to anything of it still alive."""
        if not self.started or not self.pidfile.exists():
            return
        master = self.master_pid()
        pids = {master} | {int(line.split()[0]) for line in self.show_proc().splitlines() if line[:1].isdigit()}
        with contextlib.suppress(ProcessLookupError):
            os.kill(master, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(pid) for pid in pids):
            time.sleep(0.1)
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # OSError: gone, or going (reading it then says ESRCH)
        return False
    return state != "Z"


# --- clients ---------------------------------------------------------------------------


def http_get(address: str, port: int, host: str, path: str = "/") -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def pem_der(pem: str) -> bytes:
    """DER of the first certificate in a PEM bundle (HAProxy's files hold chain and key)."""
    end = "-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(pem[: pem.index(end) + len(end)])


def tls_connect(address: str, port: int, sni: str | None, context: ssl.SSLContext | None = None) -> ssl.SSLSocket:
    """A TLS connection sending `sni` (None: none), verifying nothing unless `context` does."""
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((address, port), timeout=10)
    return context.wrap_socket(raw, server_hostname=sni)


def https_get(
    address: str, port: int, host: str, path: str = "/", context: ssl.SSLContext | None = None
) -> tuple[int, bytes, str]:
    """(status, DER certificate HAProxy or the container showed, body)."""
    with tls_connect(address, port, host, context) as tls:
        cert = tls.getpeercert(binary_form=True) or b""
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        return response.status, cert, response.read().decode()


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(name="loopback")
def loopback_fixture() -> Loopback:
    return Loopback()


@pytest.fixture(name="haproxy")
def haproxy_fixture(loopback: Loopback) -> Iterator[Haproxy]:
    require_tools(*TOOLS)
    # Not pytest's tmp_path: that is mode 0700, and HAProxy's worker runs as user haproxy
    # and must reach the TERMINATE socket inside this directory.
    workdir = Path(tempfile.mkdtemp(prefix="infrt-haproxy-"))
    workdir.chmod(0o711)
    proxy = Haproxy(workdir, loopback)
    try:
        yield proxy
    finally:
        try:
            proxy.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(name="containers")
def containers_fixture(loopback: Loopback, tmp_path: Path) -> Iterator[Containers]:
    boxes = Containers(loopback, tmp_path)
    try:
        yield boxes
    finally:
        boxes.close()
