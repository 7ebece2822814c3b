"""The lab's network: one bridge on this machine, a tap per VM, and a forwarder to the mirror.

The VMs get no route out: IPv4 forwarding stays off on the bridge, and the only thing they
can reach beyond each other is the forwarder on the bridge address, which connects to the
Debian mirror's port 80 and nothing else. apt in the VMs uses it as its HTTP proxy.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from infr.errors import LabError
from infr.lab import proc
from infr.oplog import get_logger

log = get_logger("lab")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def overlapping_routes(subnet: ipaddress.IPv4Network, own_bridge: str) -> list[str]:
    """Routes of this machine that overlap `subnet`, other than via our own bridge.

    A lab subnet over the machine's uplink would cut it off from the mirror.
    """
    routes = json.loads(proc.run(["ip", "-json", "-4", "route", "show", "table", "all"]) or "[]")
    clashes = []
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == own_bridge or route.get("type") in (
                "local", "broadcast"):
            continue
        try:
            network = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if network.version == 4 and network.overlaps(subnet):
            clashes.append(f"{dst} dev {route.get('dev', '?')}")
    return clashes


def create_bridge(name: str, address: ipaddress.IPv4Interface) -> None:
    proc.run(["ip", "link", "add", name, "type", "bridge"])
    # Never route for the VMs: they may reach the forwarder and each other, nothing else.
    Path(f"/proc/sys/net/ipv4/conf/{name}/forwarding").write_text("0\n")
    Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").write_text("1\n")
    proc.run(["ip", "addr", "add", str(address), "dev", name])
    proc.run(["ip", "link", "set", name, "up"])


def create_tap(name: str, bridge: str) -> None:
    proc.run(["ip", "tuntap", "add", "dev", name, "mode", "tap"])
    proc.run(["ip", "link", "set", name, "master", bridge, "up"])


def delete_link(name: str) -> None:
    if link_exists(name):
        proc.run(["ip", "link", "del", name])


def start_forwarder(listen: str, port: int, target: str, target_port: int, log_path: Path) -> int:
    """Start socat forwarding `listen:port` to `target:target_port`; return its PID.

    It runs in its own session, so that stopping its process group also stops the
    children it forks per connection, and so that it outlives the `lab up` process.
    """
    argv = ["socat", "-d", f"TCP-LISTEN:{port},bind={listen},reuseaddr,fork",
            f"TCP:{target}:{target_port}"]
    log.debug("start: %s", " ".join(argv))
    with log_path.open("ab") as out:
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
        except FileNotFoundError as exc:
            raise LabError("socat is not installed", "apt-get install socat") from exc
    try:
        child.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        return child.pid  # still listening: started
    raise LabError(f"the mirror forwarder on {listen}:{port} did not start", f"see {log_path}")


def stop_forwarder(pid: int | None) -> None:
    if pid and proc.is_ours(pid, "socat"):
        proc.stop(pid, group=True)
