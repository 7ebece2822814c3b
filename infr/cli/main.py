"""The `infr` command: global options, lazily loaded command groups, and the one place errors are caught."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

import click

from infr.cli.app import App, default_state_dir, printable
from infr.errors import InfrError

# name -> (module, attribute, one-line help). Modules load only when their command runs,
# so `infr --help` and `infr hosts` stay fast.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("infr.cli.cmd_init", "init", "Set up infr: network, DNS names, first SSH key, admin email."),
    "config": ("infr.cli.cmd_config", "config", "Show, set, unset and validate settings."),
    "keys": ("infr.cli.cmd_keys", "keys", "Admin SSH keys allowed on every host and LXC."),
    "hosts": ("infr.cli.cmd_hosts", "hosts", "List and add hosts."),
    "host": ("infr.cli.cmd_hosts", "host", "Show or act on one host."),
    "lxcs": ("infr.cli.cmd_lxcs", "lxcs", "List and add LXCs."),
    "lxc": ("infr.cli.cmd_lxcs", "lxc", "Show or change one LXC: routing, aliases, ports."),
    "backups": ("infr.cli.cmd_backups", "backups", "Backups between hosts (also 'infr backup')."),
    "backup": ("infr.cli.cmd_backups", "backups", "Same as 'infr backups'."),
    "certs": ("infr.cli.cmd_certs", "certs", "TLS certificates on every host, with names and expiry."),
    "dns": ("infr.cli.cmd_dns", "dns", "The DNS records infr manages, and fixing them."),
    "vnet": ("infr.cli.cmd_vnet", "vnet", "The private WireGuard network: admins' peers, status, /etc/hosts."),
    "plan": ("infr.cli.cmd_plan", "plan", "Every difference between state and the hosts; changes nothing."),
    "apply": ("infr.cli.cmd_plan", "apply", "Make the hosts match state: show the plan, ask, apply."),
    "lab": ("infr.cli.cmd_lab", "lab", "Local lab hosts: Debian VMs to try infr without a VPS."),
    "history": ("infr.cli.cmd_history", "history", "Who changed what, when (the state's git log)."),
    "sync": ("infr.cli.cmd_history", "sync", "Share state with your team: pull (rebase) and push."),
    "completion": ("infr.cli.cmd_help", "completion", "Print the shell completion script (bash, zsh, fish)."),
    "help": ("infr.cli.cmd_help", "help_", "Show a guide (docs page), or the help of a command."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        import importlib

        module, attr, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        from infr.cli.cmd_help import topics

        with formatter.section("Guides (infr help TOPIC)"):
            formatter.write_dl(topics())


def command_line(argv: list[str]) -> str:
    """The command as logged and committed, secret values masked (infr.cli.secret_args)."""
    from infr.cli.secret_args import mask_argv

    value_options = {o for p in cli.params if isinstance(p, click.Option) and not p.is_flag for o in p.opts}
    return " ".join(["infr", *mask_argv(argv, value_options)])[:500]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-w",
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="State directory (default: $INFR_DIR or ~/.infr).",
)
@click.option(
    "-i",
    "--identity",
    default=None,
    help="SSH private key to log in with; the first one given is remembered "
    "(default: the remembered key, ~/.ssh/config's IdentityFile, ssh-agent, ~/.ssh/id_*).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also print the operation log to stderr.")
@click.option("-D", "--down", default="", metavar="H1,H2", help="Hosts to treat as down and skip.")
@click.option(
    "--lock-timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for another infr to finish."
)
@click.version_option(package_name="infr", prog_name="infr")
@click.pass_context
def cli(
    ctx: click.Context, workdir: Path | None, identity: str | None, verbose: bool, down: str, lock_timeout: float
) -> None:
    """infr runs your own hosting on rented VPSes: Debian on btrfs, LXC containers,
    HAProxy with Let's Encrypt, DNS at your provider, a private WireGuard network and
    btrfs backups every five minutes.

    Start with 'infr init'; the tutorial is 'infr help tutorial'.
    """
    identity = choose_identity(identity, remember=ctx.invoked_subcommand == "init")
    ctx.obj = App(workdir or default_state_dir(), verbose, identity, down, lock_timeout, command_line(sys.argv[1:]))


def choose_identity(given: str | None, remember: bool) -> str | None:
    """-i KEY, else the key remembered for this user. The first -i is remembered (and
    `init`'s, and one replacing a remembered key that is gone), so it is given only once."""
    from infr import userconfig

    remembered = userconfig.remembered_identity()
    if given is None:
        return remembered
    key = Path(given).expanduser()
    stale = remembered is None or not _is_file(Path(remembered))
    if (stale or remember) and _is_file(key) and str(key.absolute()) != remembered:
        path = userconfig.remember_identity(key)
        note = f"infr: remembered {key.absolute()} as your SSH key (in {path}): no need for -i from now on"
        click.echo(note, err=True)
    return given


def _is_file(path: Path) -> bool:
    """Path.is_file(), False also for a name the system cannot look up (too long, say)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _report(error: InfrError) -> int:
    problems = getattr(error, "problems", None)
    if problems and len(problems) > 1:
        hint = f" ({printable(error.hint)})" if error.hint else ""
        click.echo(f"infr: error: {len(problems)} problems{hint}", err=True)
        for problem in problems:
            click.echo(f"  - {printable(problem)}", err=True)
    else:
        click.echo(f"infr: error: {printable(str(error))}", err=True)
    return error.exit_code


def _internal_error(exc: BaseException) -> int:
    import logging
    import traceback

    from infr import oplog

    # The log file of this run (under -w DIR), if the state directory had one to open.
    logs = [h.baseFilename for h in logging.getLogger(oplog.LOGGER_NAME).handlers if isinstance(h, logging.FileHandler)]
    if not logs:  # no log: say so, rather than let logging print the traceback to stderr
        click.echo(f"infr: internal error: {exc!r} (a bug; please report it with the command line)", err=True)
        return 70
    oplog.get_logger("cli").error("internal error\n%s", "".join(traceback.format_exception(exc)))
    click.echo(f"infr: internal error: {exc!r} (a bug; the traceback is in the log, {logs[0]})", err=True)
    return 70


# click 8.2+ raises this for a group run without arguments (older click prints the help itself).
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _not_utf8(argv: list[str]) -> str | None:
    """The first argument that is not UTF-8 text (Python keeps such bytes as surrogates), as bytes."""
    for arg in argv:
        try:
            arg.encode()
        except UnicodeEncodeError:
            return repr(os.fsencode(arg))
    return None


# A disk that cannot take a write: the user's to fix, not a bug.
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def main(argv: list[str] | None = None) -> None:
    bad = _not_utf8(sys.argv[1:] if argv is None else argv)
    if bad is not None:
        click.echo(f"infr: error: argument {bad} is not UTF-8 text (type it again in UTF-8)", err=True)
        sys.exit(2)
    try:
        # Without standalone mode click returns (not raises) the code of a ctx.exit(N).
        returned = cli.main(args=argv, prog_name="infr", standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
    except InfrError as error:
        code = _report(error)
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.exceptions.Abort:
        click.echo("infr: aborted; nothing was changed", err=True)
        code = 1
    except _NO_ARGS_IS_HELP as shown:  # plain 'infr': the help, not an error
        click.echo(shown.format_message())
        code = 0
    except click.ClickException as error:
        ctx = getattr(error, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx else ""
        click.echo(f"infr: error: {printable(error.format_message())}{hint}", err=True)
        code = error.exit_code
    except BrokenPipeError:
        code = 0
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRORS:
            where = f" ({exc.filename})" if exc.filename else ""
            hint = "make room on that disk and run the command again"
            click.echo(f"infr: error: {exc.strerror}{where} ({hint})", err=True)
            code = 1
        else:  # a bug: keep the traceback for the log, show one line
            code = _internal_error(exc)
    if code == 0:  # a failed command's one line is its error
        _warn_if_unlogged()
    sys.exit(code)


def _warn_if_unlogged() -> None:
    from infr import oplog

    if oplog.unwritable is not None:
        click.echo(f"infr: warning: the operation log could not be written ({oplog.unwritable})", err=True)
