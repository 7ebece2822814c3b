"""Every field of every state file, fed hostile values: refused naming file and field, or harmless.

Issue 12, "Done means" (and item 2: a hand-edited or merged state file is input too). For each
field of hosts/*.toml, lxcs/*.toml, peers/*.toml, keys/*.pub, btrbk.toml, ipam.toml,
config.toml (every setting), infr.toml, .cache/inventory.json and .journal/manifest.json a
hostile value is written into an otherwise valid state, which is then loaded in-process
(Store.load) and through `infr config validate`, `infr hosts` and `infr lxcs`. Either

  * the state is refused: an InfrError (never another exception, never exit 70), whose
    message names the file (and the field, for a field of a TOML file) and holds no control
    character; or
  * it is accepted: no loaded value holds a control character, and every renderer (HAProxy,
    LXC config, WireGuard host and admin configs, nftables zones, the mesh's up script and
    /etc/hosts block, btrbk.conf and its units and known_hosts, the backup authorized_keys
    line, the manager's authorized_keys, /etc/hostname and /etc/hosts, the DNS records) either
    refuses with an InfrError or renders files in which no line starts with the marker the
    value carried after a line break, and which hold no control character.

Nothing here contacts a host: only commands that read state run, and renderers are called
directly.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import assume, given
from hypothesis import strategies as st

from infr.errors import InfrError
from infr.state.settings import SETTINGS
from tests.conftest import clone_state
from tests.unit.fuzzing import (
    CONTROL,
    GENERIC,
    SPECIFIC,
    VALID,
    fuzz_settings,
    has_control,
    hostile,
    run_main,
    seed_fuzz_state,
)

EXAMPLES = int(os.environ.get("INFR_FUZZ_STATE_EXAMPLES", "8"))
FUZZ_SETTINGS = fuzz_settings(EXAMPLES)
MARKER = "INJECTED"
# Breaks a line for some reader: \n for every config file, the others for Python's
# splitlines, terminals and editors.
BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@dataclass(frozen=True)
class Field:
    """A place in a state file: `file` relative to the state root, `keys` the path inside it."""

    file: str
    keys: tuple[str | int, ...]
    kind: str  # name, address, port, domain, key, text, or "raw" (the file's whole text)
    name: str  # how the problem should name it ("" when the message need only name the file)

    @property
    def id(self) -> str:
        return f"{self.file}:{'.'.join(map(str, self.keys)) or '(text)'}"


def _toml_fields(file: str, data: dict[str, Any], kinds: dict[str, str]) -> Iterator[Field]:
    for key, value in data.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for sub in value[0]:
                yield Field(file, (key, 0, sub), kinds.get(sub, "text"), sub)
        elif isinstance(value, list):
            yield Field(file, (key, 0), kinds.get(key, "text"), key)
        else:
            yield Field(file, (key,), kinds.get(key, "port" if isinstance(value, int) else "text"), key)


KINDS = {
    "name": "name",
    "host": "name",
    "from_host": "name",
    "to_host": "name",
    "distro": "name",
    "release": "name",
    "zone": "name",
    "public_ip": "address",
    "vnet_ip": "address",
    "last": "address",
    "aliases": "domain",
    "host_key": "key",
    "wg_public_key": "key",
    "public_key": "key",
    "status": "name",
    "http": "name",
    "https": "name",
}


def _cache_body(path: Path) -> tuple[bytes, bytes]:
    """The cache's checksum line (with its newline) and its JSON body."""
    checksum, newline, body = path.read_bytes().partition(b"\n")
    return checksum + newline, body


def _fields(template: Path) -> list[Field]:
    found: list[Field] = []
    for file in ("hosts/bob.toml", "lxcs/web.toml", "peers/laptop.toml", "backups.toml", "ipam.toml", "infr.toml"):
        found += _toml_fields(file, tomllib.loads((template / file).read_text()), KINDS)
    for key, setting in SETTINGS.items():
        found.append(Field("config.toml", (key,), "port" if setting.integer else "text", key))
    found += [Field("keys/bob@desk.pub", (part,), "key", "") for part in ("type", "blob", "comment", "line")]
    for file in ("hosts/bob.toml", "lxcs/web.toml", "peers/laptop.toml", "keys/bob@desk.pub"):
        found.append(Field(file, ("(file name)",), "name", ""))
    cache = json.loads(_cache_body(template / ".cache" / "inventory.json")[1])["inventory"]
    for kind in ("hosts", "lxcs", "peers", "keys"):
        for key in cache[kind][0]:
            found.append(Field(".cache/inventory.json", (kind, 0, key), KINDS.get(key, "text"), key))
    found.append(Field(".cache/inventory.json", ("ipam_last",), "address", "ipam_last"))
    found += [Field(".journal/manifest.json", (0, key), "text", "") for key in ("op", "path", "staged")]
    return found


# ---- the state ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, state_template: Any) -> Path:
    from infr.state.store import Store

    root = state_template("fuzz-state", seed_fuzz_state)
    Store(root).load()  # writes .cache/inventory.json, fuzzed like any file
    return root


def _template_fields() -> list[Field]:
    """The fields, read from a state seeded like the template (at import: parametrize needs them)."""
    import tempfile

    from tests.conftest import DEFAULT_SETTINGS, _author_env, make_key

    with tempfile.TemporaryDirectory() as tmp, _author_env():
        from infr.state.config import init_state
        from infr.state.store import Store

        key = make_key(Path(tmp) / "k")
        root = Path(tmp) / "state"
        init_state(root, dict(DEFAULT_SETTINGS), " ".join(key.read_text().split()), "alice@laptop")
        seed_fuzz_state(root)
        Store(root).load()
        return _fields(root)


FIELDS = _template_fields()


def _set(data: Any, keys: tuple[str | int, ...], value: Any) -> None:
    for key in keys[:-1]:
        data = data[key]
    data[keys[-1]] = value


def write_hostile(root: Path, field: Field, value: Any) -> None:
    """Put `value` at `field` in the state under `root` (a valid state before)."""
    path = root / field.file
    if field.keys == ("(file name)",):
        try:
            os.rename(path, path.with_name(f"{value}{path.suffix}"))
        except (OSError, ValueError):
            assume(False)  # no such file name on this filesystem: nobody can write it into state
        return
    if field.file.endswith(".pub"):
        kind, blob, comment = path.read_text().split()
        parts = {"type": kind, "blob": blob, "comment": comment}
        if field.keys[0] == "line":
            text = f"{kind} {blob} {comment}\n{value}\n"
        else:
            parts[str(field.keys[0])] = str(value)
            text = " ".join(parts.values()) + "\n"
        path.write_bytes(_encode(text))
        return
    if field.file == ".journal/manifest.json":
        path.parent.mkdir(exist_ok=True)
        (path.parent / "0").write_text('name = "x"\n')
        op = {"op": "put", "path": "ipam.toml", "staged": "0"}
        op[str(field.keys[1])] = value
        path.write_text(json.dumps([op]))
        return
    if field.file.endswith(".json"):
        checksum, body = _cache_body(path)
        whole = json.loads(body)
        _set(whole["inventory"], field.keys, value)
        # Edited by hand or damaged: the contents change, its checksum and times do not.
        stat = path.stat()
        path.write_bytes(checksum + _encode(json.dumps(whole)))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        return
    data = tomllib.loads(path.read_text())
    _set(data, field.keys, value)
    path.write_bytes(_encode(tomli_w.dumps(data)))


def _encode(text: str) -> bytes:
    """Text as a file would hold it; lone surrogates become the invalid UTF-8 they stand for."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _restore(root: Path, template: Path, field: Field) -> None:
    """Put back what the last example touched (cheaper than a fresh copy of the state)."""
    from infr.state.store import Store

    for name in (".cache", ".journal"):
        shutil.rmtree(root / name, ignore_errors=True)
    top = field.file.split("/")[0]
    if "/" in field.file and top not in (".cache", ".journal"):
        shutil.rmtree(root / top)
        shutil.copytree(template / top, root / top)
    elif "/" not in field.file:
        shutil.copy2(template / field.file, root / field.file)
    if top == ".cache":
        Store(root).load()  # a cache that matches these very files, to be edited


# ---- values ------------------------------------------------------------------------------


def _injection(kind: str) -> st.SearchStrategy[str]:
    """A valid value, a line break, and the marker: what turns one rendered line into two."""
    return st.builds(lambda v, b: f"{v}{b}{MARKER} x", st.sampled_from(VALID[kind]), st.sampled_from(BREAKS))


def values(field: Field) -> st.SearchStrategy[Any]:
    kind = "name" if field.kind == "raw" else field.kind
    strings = st.one_of(_injection("text" if kind == "port" else kind), hostile("text" if kind == "port" else kind))
    other_types = st.sampled_from([0, -1, 70000, 2**63, 1.5, True, [], {}, ["a\nb"], {"a": "b"}])
    if kind == "port":
        return st.one_of(other_types, st.integers(-(2**63), 2**63 - 1), strings)
    if field.file.endswith(".pub") or field.keys == ("(file name)",):
        return st.one_of(strings, st.sampled_from(GENERIC + SPECIFIC["key"]))
    return st.one_of(strings, other_types)


# ---- rendering ---------------------------------------------------------------------------


def render_everything(root: Path) -> dict[str, str]:
    """Every file infr renders from this state, by a name for the failure message."""
    from infr.backups import btrbk
    from infr.backups.desired import pull_view
    from infr.dns import wanted
    from infr.hosts import desired
    from infr.lxcs import desired as lxcs_desired
    from infr.routing import haproxy
    from infr.routing.deploy import settings_for
    from infr.state.model import BACKUP_ACTIVE
    from infr.state.session import Session
    from infr.vnet import desired as vnet_desired

    session = Session(root, command_line="fuzz: render")
    inv, values = session.inventory(), session.settings()
    port = int(values.get("vnetListenPort", 51820))
    out: dict[str, str] = {"authorized_keys": desired.authorized_keys(inv).decode()}
    out["vnet hosts block"] = vnet_desired.hosts_block(inv, values)
    out["nftables zones"] = vnet_desired.zones_ruleset(inv)
    out["dns records"] = "\n".join(f"{r.fqdn} {r.type} {r.value} {r.ttl}" for r in wanted.wanted_records(inv, values))
    for peer in inv.peers.values():
        out[f"admin wg {peer.name}"] = vnet_desired.admin_config(inv, peer, "x" * 43 + "=", port)
    for host in inv.hosts.values():
        out[f"haproxy {host.name}"] = haproxy.render_haproxy(host, inv.lxcs_on(host.name), settings_for(session))
        for spec in vnet_desired.host_files(inv, host, port) + desired.name_files(host.name, values):
            out[f"{spec.path} on {host.name}"] = spec.content.decode()
    for lxc in inv.lxcs.values():
        host = inv.hosts[lxc.host]
        out[f"lxc config {lxc.name}"] = lxcs_desired.container_config(lxc, host, values).decode()
        for spec in desired.name_files(lxc.name, values):
            out[f"{spec.path} in {lxc.name}"] = spec.content.decode()
    bsettings = btrbk.BackupSettings.from_config({k: str(v) for k, v in values.items()})
    for to_name in {b.to_host for b in inv.backups}:
        pairs = [(b, pull_view(inv.hosts[b.from_host])) for b in inv.backups if b.to_host == to_name]
        lxcs = {h.name: inv.lxcs_on(h.name) for _, h in pairs}
        to = inv.hosts[to_name]
        out[f"btrbk.conf on {to_name}"] = btrbk.render_btrbk_conf(to, pairs, lxcs, bsettings)
        active = [h for b, h in pairs if b.status == BACKUP_ACTIVE]
        for path, text in btrbk.render_units(to, active, bsettings).items():
            out[f"{path} on {to_name}"] = text
        out[f"backup key for {to_name}"] = btrbk.render_authorized_key(
            to_name, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIARNgjONO37+KCGTP/7oT3XJ8FCWJU7CmFKqf3Ok9MXY x", bsettings
        )
    for path, text in btrbk.render_source_files(bsettings).items():
        out[path] = text
    return out


def _rendered_problems(rendered: dict[str, str]) -> list[str]:
    found = []
    for name, text in rendered.items():
        for line in text.splitlines():
            if line.strip().startswith(MARKER):
                found.append(f"{name}: a value started a line of its own: {line!r}")
            elif CONTROL.search(line.replace("\t", "")):
                found.append(f"{name}: a control character in {line!r}")
    return found


def _loaded_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _loaded_strings(key)
            yield from _loaded_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _loaded_strings(item)
    elif hasattr(value, "__dataclass_fields__"):
        for f in fields(value):
            yield from _loaded_strings(getattr(value, f.name))


# ---- the property ------------------------------------------------------------------------

STATS = {"examples": 0, "refused": 0, "accepted": 0, "refused at render": 0}


def _names_it(message: str, field: Field, value: Any) -> bool:
    """The message names the file, and the field (by its name, its parent's, or its value)
    unless the file could not be read as text at all (then its bytes are the problem)."""
    file = Path(field.file)
    named_file = field.file in message or file.name in message or file.parent.name + "/" in message
    unreadable = "not UTF-8" in message or "not valid TOML" in message
    names = [field.name, *(str(k) for k in field.keys if isinstance(k, str)), repr(value)]
    return named_file and (not field.name or unreadable or any(name in message for name in names))


def check_state(root: Path, field: Field, value: Any) -> list[str]:
    """Everything wrong with how infr treats the state under `root` (empty: it behaved)."""
    from infr.state.store import Store

    found: list[str] = []
    STATS["examples"] += 1
    try:
        inventory = Store(root).load()
    except InfrError as error:
        STATS["refused"] += 1
        message = str(error)
        if not _names_it(message, field, value):
            found.append(f"refused without naming {field.file} and {field.name or 'its problem'}: {message!r}")
        inventory = None
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        return [f"Store.load raised {exc!r}"]
    if inventory is not None:
        STATS["accepted"] += 1
        bad = [s for s in _loaded_strings(inventory) if has_control(s)]
        if bad:
            found.append(f"loaded with a control character in {bad[:3]!r}")
        try:
            found += _rendered_problems(render_everything(root))
        except InfrError:
            STATS["refused at render"] += 1
        except Exception as exc:  # noqa: BLE001
            found.append(f"rendering raised {exc!r}")
    # The CLI prints what it loaded (or why it refused): the terminal is an output too.
    commands = [["config", "validate"]] + ([["hosts", "list"], ["lxcs", "list"]] if inventory else [])
    for command in commands:
        run = run_main(["-w", str(root), *command])
        if run.code == 70 or "Traceback" in run.stdout + run.stderr:
            found.append(f"infr {' '.join(command)}: internal error: {run.stderr.strip()!r}")
        for line in (run.stdout + run.stderr).splitlines():
            if has_control(line):
                found.append(f"infr {' '.join(command)} printed a control character: {line!r}")
                break
    return found


@pytest.fixture
def sandbox(tmp_path: Path, template: Path) -> Path:
    return clone_state(template, tmp_path / "a" / "b" / "state")


@pytest.mark.parametrize("field", [pytest.param(f, id=f.id) for f in FIELDS])
@FUZZ_SETTINGS
@given(data=st.data())
def test_hostile_state_field_is_refused_or_harmless(
    sandbox: Path, template: Path, field: Field, data: st.DataObject
) -> None:
    _restore(sandbox, template, field)
    value = data.draw(values(field), label=field.id)
    write_hostile(sandbox, field, value)
    outside = set(sandbox.parent.parent.rglob("*")) - set(sandbox.rglob("*"))
    found = check_state(sandbox, field, value)
    escaped = set(sandbox.parent.parent.rglob("*")) - set(sandbox.rglob("*")) - outside
    if escaped:
        found.append(f"files written outside the state: {sorted(map(str, escaped))}")
    assert not found, f"{field.id} = {value!r}: {found}"


def test_state_counts() -> None:
    """The figures for issue 12's closing note (pytest -rP prints them)."""
    files = {f.file.split("/")[0] if "/" in f.file and not f.file.startswith(".") else f.file for f in FIELDS}
    print(f"fuzz-state: {len(FIELDS)} fields in {len(files)} kinds of state file, {EXAMPLES} examples each; {STATS}")
    assert len(FIELDS) > 80
