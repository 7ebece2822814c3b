"""Settings: `infr init`, `infr config set/unset/show/validate`."""

from __future__ import annotations

from pathlib import Path

from infr.errors import StateError, UsageError, ValidationError
from infr.state import history, schema, validate
from infr.state.change import Change
from infr.state.files import dump_toml, read_text, write_atomic
from infr.state.model import Inventory, Key
from infr.state.settings import REQUIRED, SETTINGS, Setting, Value, check_config, lookup
from infr.state.store import Store

MASK = "********"


def config_text(current: str, key: str, value: Value | None) -> bytes:
    """config.toml with one key set (or removed), keeping the user's comments and order."""
    import tomlkit

    document = tomlkit.parse(current) if current else tomlkit.document()
    if value is None:
        document.pop(key, None)
    else:
        document[key] = value
    return tomlkit.dumps(document).encode()


def _setting(key: str) -> Setting:
    """The setting `key`; an unknown key is a UsageError that never shows what follows an '='
    (`smtpPassword=SECRET` is a common slip, and the value may be a secret)."""
    name, equals, _ = key.partition("=")
    if equals and name in SETTINGS:
        raise UsageError(f"'{name}=...': the value goes after a space, not '='", f"infr config set {name} VALUE")
    try:
        return lookup(name)
    except ValueError as exc:
        raise UsageError(str(exc) + (" (the text after '=' is not shown)" if equals else "")) from None


def is_secret(key: str) -> bool:
    """True for a secret setting; an unknown key is a UsageError naming the closest one."""
    return _setting(key).secret


def parse_value(key: str, text: str) -> Value:
    setting = _setting(key)
    try:
        return setting.parse(text)
    except ValueError as exc:
        # A secret's problem would quote the secret: say which setting, never the value.
        problem = f"the value given for {key} is not valid (not shown: it is secret)" if setting.secret else str(exc)
        raise UsageError(problem, "see 'infr config show' for every key and its meaning") from None


def set_value(change: Change, root: Path, key: str, text: str) -> None:
    setting = _setting(key)
    value = parse_value(key, text)
    if setting.secret:
        change.set_secrets({**change.secrets, key: value})
        change.note(f"{key} set (stored in secrets.toml, never committed)")
        return
    config = {**change.inv.config, key: value}
    # Refuse only what this value breaks: a config already incomplete (an emptied config.toml)
    # is repaired one 'config set' at a time.
    already = set(check_config(change.inv.config, {}))
    problems = [p for p in check_config(config, {}) if p not in already]
    if problems:
        raise ValidationError(problems, "nothing was changed")
    current = read_text(root / "config.toml") if (root / "config.toml").exists() else ""
    change.set_config(config, config_text(current, key, value))
    change.note(f"{key} = {value}")


def unset_value(change: Change, root: Path, key: str) -> None:
    setting = _setting(key)
    if key in REQUIRED:
        raise UsageError(f"{key} is required and cannot be unset", f"change it with 'infr config set {key} VALUE'")
    if setting.secret:
        if key not in change.secrets:
            raise UsageError(f"{key} is not set", "nothing to unset")
        change.set_secrets({k: v for k, v in change.secrets.items() if k != key})
    else:
        if key not in change.inv.config:
            raise UsageError(f"{key} is not set", "nothing to unset")
        config = {k: v for k, v in change.inv.config.items() if k != key}
        change.set_config(config, config_text(read_text(root / "config.toml"), key, None))
    change.note(f"{key} unset")


def show(inv: Inventory, secrets: dict[str, Value], env_secrets: dict[str, Value]) -> list[dict[str, str]]:
    """Every setting with its value (secrets masked) and where the value comes from."""
    rows = []
    for key, setting in SETTINGS.items():
        if setting.secret:
            if key in env_secrets and key not in secrets:
                value, source = MASK, f"env {setting.env}"
            else:
                value, source = (MASK, "secrets.toml") if key in secrets else ("", "")
        elif key in inv.config:
            value, source = str(inv.config[key]), "config.toml"
        else:
            value = "" if setting.default is None else str(setting.default)
            source = "default" if setting.default is not None else ""
        rows.append({"key": key, "value": value, "source": source, "help": setting.help})
    return rows


def init_state(root: Path, settings: dict[str, str], key_text: str, key_name: str) -> None:
    """Create a new state directory with its first config and admin key, as one git commit."""
    store = Store(root)
    if store.exists():
        raise StateError(
            f"infr is already set up in {root}", "change settings with 'infr config set', or use another -w DIR"
        )
    problems = []
    config: dict[str, Value] = {}
    for key, text in settings.items():
        try:
            config[key] = lookup(key).parse(text)
        except ValueError as exc:
            problems.append(str(exc))
    problems += check_config(config, {}) if not problems else []
    if problem := validate.ssh_public_key(key_text):
        problems.append(f"SSH key {key_name}: {problem}")
    if problem := validate.key_name(key_name):
        problems.append(problem)
    if problems:
        raise ValidationError(problems, "nothing was created; fix the values and run 'infr init' again")
    store.create()
    writes: dict[str, bytes | None] = {
        "infr.toml": dump_toml({"schema_version": schema.SCHEMA_VERSION}),
        "config.toml": b"".join(config_text("", k, v) for k, v in config.items()),
    }
    change = Change(Inventory(config=config), {})
    change.put_key(Key(key_name, key_text))
    writes.update(change.writes)
    history.init(root)
    store.commit(writes)
    history.commit(
        root, [".gitignore", *writes, *(f"{d}/.gitkeep" for d in ("hosts", "lxcs", "keys", "peers"))], "infr init"
    )
    write_atomic(root / "log", b"", 0o600)
