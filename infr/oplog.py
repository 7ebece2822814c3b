"""The operation log: every remote command, API call and its outcome, secrets masked.

The log is a file in the state directory. `-v` also echoes it to stderr. Secrets are
masked here, in one place, by a filter on every handler: code that knows a secret
calls `register_secret` and may then log freely.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

LOGGER_NAME = "infr"
MASK = "********"
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask `value` wherever it appears in the log from now on."""
    if value and len(value) >= 4:
        _secrets.add(value)


def mask(text: str) -> str:
    """Replace every registered secret in `text` with a mask."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class _MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage())
        record.args = None
        return True


class _LogFile(logging.FileHandler):
    """The log file; when it cannot be written (a full disk), the command goes on without it.

    logging's default prints a traceback to stderr for every record it fails to write;
    this remembers the first failure, for the CLI to report in one line, and stops writing.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if unwritable is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        global unwritable
        error = sys.exc_info()[1]
        unwritable = f"{self.baseFilename}: {getattr(error, 'strerror', None) or error}"
        with contextlib.suppress(Exception):
            self.close()


# The operation log file and why it could not be written, once that happens.
unwritable: str | None = None


def get_logger(name: str = "") -> logging.Logger:
    """A logger under the `infr` tree, e.g. get_logger("remote")."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


def setup(log_file: Path | None, verbose: bool) -> None:
    """Send the `infr` log tree to `log_file` (always) and to stderr (with -v)."""
    global unwritable
    unwritable = None
    root = logging.getLogger(LOGGER_NAME)
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_file, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
        os.close(fd)
        file_handler = _LogFile(log_file, encoding="utf-8", delay=True)
        file_handler.setFormatter(fmt)
        file_handler.addFilter(_MaskingFilter())
        root.addHandler(file_handler)
    if verbose:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        stream.addFilter(_MaskingFilter())
        root.addHandler(stream)
    root.propagate = False
