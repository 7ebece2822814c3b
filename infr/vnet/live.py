"""What the host's WireGuard is now: its key's public half and the live interface's peers.

One read-only command reads both. The private key never leaves the host: `wg pubkey`
derives the public half there, and the interface line of the dump (which holds the
private key) is dropped there too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infr.engine.plan import Runner
from infr.errors import RemoteError
from infr.vnet import desired

NO_KEY = ""
UNREADABLE = "?"  # a key file that `wg pubkey` could not read (wireguard-tools missing, garbage)

# Line 1: the key file's public half (empty when there is none); then "down", or "up",
# the interface's own public key and listen port, and its peer lines of the dump.
READ = (
    f"if [ -s {desired.KEY_PATH} ]; then wg pubkey < {desired.KEY_PATH} 2>/dev/null || echo '{UNREADABLE}';"
    " else echo; fi;"
    f" if ip link show dev {desired.INTERFACE} >/dev/null 2>&1; then echo up;"
    f" wg show {desired.INTERFACE} public-key || echo; wg show {desired.INTERFACE} listen-port || echo;"
    f" wg show all dump | awk -F '\\t' '$1 == \"{desired.INTERFACE}\" && NF == 9';"
    " else echo down; fi"
)


@dataclass(frozen=True)
class Live:
    key: str  # the public half of the host's key file; NO_KEY or UNREADABLE
    up: bool = False  # the interface exists
    interface_key: str = ""  # the public key the interface runs with
    port: int = 0
    peers: dict[str, desired.DumpPeer] = field(default_factory=dict)  # public key -> peer


def parse(text: str) -> Live:
    lines = text.split("\n")
    if len(lines) < 2 or lines[1] not in ("up", "down"):
        raise RemoteError("unreadable WireGuard facts from the host", "is wireguard-tools installed there?")
    key = lines[0].strip()
    if lines[1] == "down" or len(lines) < 4:
        return Live(key)
    port = lines[3].strip()
    peers = {p.public_key: p for p in desired.dump_peers("\n".join(lines[4:]))}
    return Live(key, True, lines[2].strip(), int(port) if port.isdigit() else 0, peers)


def read(runner: Runner) -> Live:
    """The host's key and live interface, read without changing anything."""
    result = runner.run(["sh", "-c", READ], check=False, secret_output=True)
    if result.exit_status != 0:
        raise RemoteError(f"could not read the WireGuard state: {result.stderr.decode(errors='replace').strip()}")
    return parse(result.text)
