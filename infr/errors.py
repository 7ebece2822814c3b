"""One exception tree for the whole program, caught once by the CLI.

An `InfrError` is an expected failure: the CLI prints its message and hint on one
line and exits with `exit_code`. Anything else is a bug: the CLI writes the
traceback to the operation log.
"""

from __future__ import annotations


class InfrError(Exception):
    """An expected error with a message that names the problem and a hint for the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(InfrError):
    """The command line itself is wrong."""

    exit_code = 2


class ValidationError(InfrError):
    """Input or state failed validation; carries every problem found, not just the first."""

    def __init__(self, problems: list[str], hint: str | None = None) -> None:
        self.problems = problems
        super().__init__("; ".join(problems), hint)


class NotFoundError(InfrError):
    """A named host, LXC, key or backup does not exist."""


class ConflictError(InfrError):
    """The change clashes with something that already exists."""


class StateError(InfrError):
    """The state directory is missing, unreadable or from an unknown schema."""


class MissingSettingError(StateError, KeyError):
    """A setting a command needs is not set (an incomplete or emptied config.toml).

    Also a KeyError, so code that reads a setting it can do without (`except KeyError`)
    keeps working; everything else gets one line naming the setting and the command to set it.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"the setting {key} is not set", f"set it with 'infr config set {key} VALUE'")
        self.key = key

    def __str__(self) -> str:
        return InfrError.__str__(self)


class LockTimeoutError(InfrError):
    """Another infr process held the state lock for longer than --lock-timeout."""


class RemoteError(InfrError):
    """A command on a host failed, or the host could not be reached."""


class DnsNotReadyError(InfrError):
    """A name does not point at its host yet, so a CA could not validate it (nothing was asked)."""


class HostKeyError(RemoteError):
    """A host presented a key other than the pinned one."""


class ProviderError(InfrError):
    """An outside API (a DNS provider) refused or failed."""


class LabError(InfrError):
    """The local lab of VMs could not be started, reached or stopped."""
