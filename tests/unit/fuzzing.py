"""What the fuzz tests share (issue 12, "Done means"): hostile values, the seeded state, running `infr`.

Each kind (name, address, port, domain, key, path, text) gets the generic nasties (control
characters, non-UTF-8 as surrogates, lookalikes, shell metacharacters, '../', a leading '-',
empty and very long strings) plus values that are hostile for that kind only (0.0.0.0 for an
address, 65536 for a port), and a valid value with something spliced into it: a newline in
the middle of a good name is what turns one config line into two.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from infr.cli.main import main
from tests.conftest import make_key, seed_host, seed_lxc

WG_KEY = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="

# C0 controls, DEL, C1 controls and the Unicode line and paragraph separators.
CONTROL_CHARS = [chr(c) for c in range(0x20)] + [chr(c) for c in range(0x7F, 0xA0)] + ["\u2028", "\u2029"]
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# How Python hands over argv bytes that are not UTF-8 (surrogateescape), and lone surrogates.
NOT_UTF8 = ["\udcff", "\udc80abc", "bob\udce9", "\ud800"]
SHELL = ["$(id)", "`id`", "a;b", "a|b", "a&b", "a>b", "a<b", "a b", "'", '"', "\\", "*", "?", "[a]", "{a,b}", "#x", "~"]
FORMAT = ["%s", "%n", "{0}", "{name}", "%(x)s"]
LOOKALIKE = ["ｂｏｂ", "bоb", "b\u200bob", "bob\u00a0", "BOB", "ß", "é", "🚀", "\ufeffbob", "b\u0301ob", "٣"]
GENERIC = [
    "",
    " ",
    "\t",
    "-",
    "--",
    "-h",
    "--help",
    "-x",
    "--version",
    ".",
    "..",
    "../",
    "../../x",
    "/",
    "a/b",
    "a\nb",
    "a\rb",
    "a\0b",
    "x\nlxc.mount.entry = / mnt none bind 0 0",
    "x\nAllowedIPs = 0.0.0.0/0",
    "x" * 300,
    "x" * 5000,
    *SHELL,
    *FORMAT,
    *LOOKALIKE,
    *NOT_UTF8,
]
VALID = {
    "name": ["bob", "web", "db-1"],
    "address": ["203.0.113.7", "10.8.3.4", "198.51.100.9"],
    "port": ["8080", "2222", "65535"],
    "domain": ["www.example.org", "shop.example.com"],
    "key": ["xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="],
    "text": ["hello", "/etc/hostname", "ls -l"],
    "path": ["key.pub"],
}
SPECIFIC = {
    "name": ["a" * 64, "a_b", "a.b", "-bob", "bob-", "1", "0bob", "localhost", "vnet", "infr", "all"],
    "address": [
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "127.0.0.1",
        "127.1",
        "169.254.1.1",
        "100.64.0.1",
        "10.8.0.0",
        "10.8.255.255",
        "0",
        "1.2.3",
        "1.2.3.4.5",
        "01.02.03.04",
        "0x7f.0.0.1",
        "256.1.1.1",
        "203.0.113.5/24",
        "203.0.113.5 ",
        " 203.0.113.5",
        "::",
        "::1",
        "ff02::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "2001:db8::1",
        "０.０.０.０",
        "203.0.113.٥",
    ],
    "port": ["0", "-1", "65536", "99999999999999999999", "-99999999999999999999", "1e3", "0x50", " 80", "８０", "22"],
    "domain": [
        "example.com.",
        ".example.com",
        "*.example.com",
        "a..b.com",
        "-a.example.com",
        "a_b.example.com",
        "xn--.com",
        "ex ample.com",
        "a" * 64 + ".com",
        ("a" * 63 + ".") * 4 + "com",
        "localhost",
        "com",
        "EXAMPLE.COM",
        "éxample.com",
        "exаmple.com",
        "203.0.113.5",
    ],
    "key": [
        "A" * 43 + "=",
        "A" * 44,
        "A" * 42 + "==",
        "A" * 45 + "=",
        "=" * 44,
        "é" * 44,
        "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAllowedIPs = 0.0.0.0/0",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
    ],
    "text": ["YES", "a\nb\nc"],
    "path": [],
}
# Characters spliced into a valid value: the ones that end or split a line, a word or a path.
SPLICE = CONTROL_CHARS + NOT_UTF8 + [" ", "/", "..", ";", "$(id)", "\u200b", "=", ",", ":", "#", "[", "]", '"', "'"]


def _splice(value: str, insert: str, at: int) -> str:
    at = at % (len(value) + 1)
    return value[:at] + insert + value[at:]


def hostile(kind: str) -> st.SearchStrategy[str]:
    """Values of `kind` a user, a script or an attacker might pass."""
    valid = VALID[kind]
    return st.one_of(
        st.sampled_from(GENERIC + SPECIFIC[kind]),
        st.builds(_splice, st.sampled_from(valid), st.sampled_from(SPLICE), st.integers(0, 64)),
        st.text(st.sampled_from(CONTROL_CHARS + ["\udcff", "\ud800"] + list("ab-./ 0:=")), max_size=12),
        st.text(max_size=20),
    )


def hostile_number() -> st.SearchStrategy[str]:
    """Numbers out of every range, and text that is almost a number."""
    return st.one_of(
        st.sampled_from(GENERIC + SPECIFIC["port"] + ["nan", "inf", "-inf", "1e309", "0.5", "-0"]),
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
    )


def as_argv(text: str) -> str:
    """`text` as it could arrive in argv: no NUL (a C string ends there), and only the
    surrogates that stand for bytes that are not UTF-8 (Python's surrogateescape)."""
    return re.sub("[\ud800-\udc7f\udd00-\udfff]", "\udcff", text.replace("\0", "\x01"))


def has_control(text: str) -> bool:
    return CONTROL.search(text) is not None


def seed_fuzz_state(root: Path) -> None:
    """Two hosts with pinned keys, an LXC with routing and an alias, a peer, a backup pair, a second key."""
    from infr.state.model import Backup, Key, Peer, TcpForward
    from infr.state.session import Session

    host_key = "ssh-ed25519 " + next((root / "keys").glob("*.pub")).read_text().split()[1]
    seed_host(root, "bob", "203.0.113.10", status="ready", host_key=host_key, wg_public_key=WG_KEY)
    seed_host(root, "carol", "203.0.113.11", status="ready", host_key=host_key)
    seed_lxc(root, "web", "bob", http="FORWARD", aliases=["old.example.org"], tcp_forwards=[TcpForward(2200, 22)])
    with Session(root, command_line="test: seed peer, backup, key").change() as change:
        change.put_peer(Peer("laptop", "hBsLzqYxzgsOsTpqQWKBi7vBh7Ui0Wz3Z+A/eHKjqnA=", change.allocate_address()))
        change.set_backups([Backup("bob", "carol")])
        other = make_key(root.parent / "seedkeys", comment="bob@desk").read_text().split()
        change.put_key(Key("bob@desk", f"{other[0]} {other[1]} bob@desk"))


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def run_main(argv: list[str]) -> Run:
    """`infr ARGV` as the installed program runs it (main(): the one place errors become exit codes)."""
    runner = CliRunner()
    code: Any = 0
    with runner.isolation() as (out, err, _):
        try:
            main(argv)
        except SystemExit as done:
            code = done.code
    stdout, stderr = (stream.getvalue().decode(errors="replace") for stream in (out, err))
    return Run(code if isinstance(code, int) else 1, stdout, stderr)


def fuzz_settings(examples: int) -> settings:
    """The fuzz modules' hypothesis settings: `examples` per property, derandomized (a strict
    xfail fails the same way every run) unless INFR_FUZZ_SEARCH=1 asks for a longer hunt
    (new examples each run, failures shrunk)."""
    search = os.environ.get("INFR_FUZZ_SEARCH") == "1"
    return settings(
        max_examples=examples,
        derandomize=not search,
        database=None,
        phases=list(Phase) if search else [Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
