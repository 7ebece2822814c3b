"""Reaching hosts over SSH: commands as argument lists, pinned host keys, parallel runs.

target = Target("web1", "203.0.113.5", pinned_key=state_key, key_file=key)
with ConnectionPool() as pool:
    conn = pool.get(target)
    conn.run(command.apt_install(["haproxy"]))
    conn.put_file("/etc/haproxy/haproxy.cfg", cfg, mode=0o640, group="haproxy")
"""

from infr.connector import command
from infr.connector.hostkeys import default_key_files, fingerprint
from infr.connector.parallel import Event, EventKind, Outcome, run_parallel
from infr.connector.ssh import ConnectionPool, SSHConnection
from infr.connector.target import Result, Target

__all__ = [
    "ConnectionPool",
    "Event",
    "EventKind",
    "Outcome",
    "Result",
    "SSHConnection",
    "Target",
    "command",
    "default_key_files",
    "fingerprint",
    "run_parallel",
]
