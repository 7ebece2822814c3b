"""Secrets on the command line: masked before the command line is recorded anywhere.

The command line of every change goes into the state's git commit message (pushed to the
team by `infr sync`, shown by `infr history`), the lock's note and the operation log (echoed
by -v). Two commands take secrets as arguments: `hosts add -p PASSWORD` and `config set KEY
VALUE`. Their values are masked here by position, and registered with the operation log
(infr.oplog.register_secret) so that any later mention of them in the log is masked too.

`config set` masks every value unless its key is a known setting that is not secret: a key
typed in the wrong case or as KEY=VALUE is a slip, and the value after it may well be a secret.
"""

from __future__ import annotations

from infr.oplog import MASK, register_secret

_FORMAT_OPTIONS = frozenset({"-o", "--format"})
_PASSWORD_OPTIONS = ("-p", "--password")


def mask_argv(argv: list[str], global_value_options: set[str]) -> list[str]:
    """`argv` with the secret values of `hosts add` and `config set` replaced by a mask;
    `global_value_options` are infr's own options that take a value (-d DIR, -i KEY)."""
    words = list(argv)
    group = _skip_options(words, 0, global_value_options)
    command = _skip_options(words, group + 1, _FORMAT_OPTIONS)
    path = tuple(words[group : group + 1] + words[command : command + 1])
    if path == ("config", "set"):
        _mask_config_set(words, command + 1)
    elif path == ("hosts", "add"):
        _mask_password(words, command + 1)
    return words


def _skip_options(words: list[str], i: int, value_options: frozenset[str] | set[str]) -> int:
    """The index of the first word from `i` on that is not an option or an option's value."""
    while i < len(words) and words[i].startswith("-") and words[i] != "-":
        if words[i] == "--":
            return i + 1
        i += 2 if words[i] in value_options else 1
    return i


def _mask_config_set(words: list[str], start: int) -> None:
    from infr.state.settings import SETTINGS

    arguments = [i for i in range(start, len(words)) if words[i] not in ("-h", "--help", "--")]
    if not arguments:
        return
    key, equals, value = words[arguments[0]].partition("=")
    if equals and value:
        _mask(words, arguments[0], value, prefix=f"{key}=")
    setting = SETTINGS.get(words[arguments[0]])
    if setting is None or setting.secret:
        for i in arguments[1:]:
            _mask(words, i, words[i])


def _mask_password(words: list[str], start: int) -> None:
    """-p VALUE, -pVALUE, --password VALUE, --password=VALUE and clusters such as -yp VALUE.

    A next word that starts with '-' is another option (click reads `-p` alone then, and asks)."""
    for i in range(start, len(words)):
        word = words[i]
        if word == "--":
            return
        if word.startswith("--password="):
            _mask(words, i, word.partition("=")[2], prefix="--password=")
        elif word == "--password" or (word.startswith("-") and not word.startswith("--")):
            attached = "" if word == "--password" else _attached_password(word)
            if attached is None:
                continue
            if attached:
                _mask(words, i, attached, prefix=word[: len(word) - len(attached)])
            elif i + 1 < len(words) and not words[i + 1].startswith("-"):
                _mask(words, i + 1, words[i + 1])


def _attached_password(cluster: str) -> str | None:
    """What click reads as -p's value in a short-option cluster such as -yp or -ypSECRET:
    the rest of the word after the first 'p' ("" when -p ends it), None without -p. Of
    `hosts add`'s short options only -y comes before it: a flag, so it takes no value."""
    for at, letter in enumerate(cluster[1:], start=1):
        if letter == "p":
            return cluster[at + 1 :]
        if letter != "y":
            return None
    return None


def _mask(words: list[str], i: int, secret: str, prefix: str = "") -> None:
    register_secret(secret)
    words[i] = prefix + MASK
