"""Running commands inside a container, through its host: a steps.Runner over lxc-attach."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from infr.connector import command
from infr.connector.target import Result
from infr.engine.steps import INSTALL_TIMEOUT, Runner

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Attached:
    """A steps.Runner for a container: commands run inside it with lxc-attach on its host."""

    conn: Runner  # the host's connection
    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = True,
        input: bytes | None = None,
        timeout: float = INSTALL_TIMEOUT,
        check: bool = True,
        secret_output: bool = False,
    ) -> Result:
        attach = ["lxc-attach", "-n", self.name, "--clear-env", "--set-var", f"PATH={PATH}", "--"]
        argv = [*attach, *argv]
        return self.conn.run(argv, input=input, timeout=timeout, check=check, secret_output=secret_output)

    def put_file(
        self, path: str, data: bytes, *, owner: str, group: str, mode: int, timeout: float = INSTALL_TIMEOUT
    ) -> None:
        steps = command.write_file_cmds(path, owner, group, mode, command.tmp_path_for(path))
        self.run(["sh", "-c", command.quote_chain(steps)], input=data, timeout=timeout)
