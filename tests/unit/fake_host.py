"""One fake host connection for unit tests: answers commands by argv prefix, records them all."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence

from infr.connector.target import Result
from infr.engine import facts

Reply = tuple[int, bytes]  # exit status, stdout
Answer = Reply | Callable[[tuple[str, ...]], Reply]


class FakeHost:
    """A host's connection (also its own `SSHConnection.connect` context manager).

    A command gets the answer of the first prefix in `answers` its argv starts with (a
    reply, or a function of the argv giving one), else exit 0 and no output. Every command
    and upload is recorded in `ran`, in order.
    """

    def __init__(self, answers: Mapping[tuple[str, ...], Answer] | None = None) -> None:
        self.answers = dict(answers or {})
        self.ran: list[tuple[str, ...]] = []

    def __enter__(self) -> FakeHost:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, argv: Sequence[str], **_: object) -> Result:
        argv = tuple(argv)
        self.ran.append(argv)
        answer = next((a for prefix, a in self.answers.items() if argv[: len(prefix)] == prefix), (0, b""))
        status, out = answer(argv) if callable(answer) else answer
        return Result(status, out, b"")

    def put_file(self, path: str, data: bytes, **_: object) -> None:
        self.ran.append(("put_file", path))


def file_listing(files: Mapping[str, tuple[bytes, str]]) -> Callable[[tuple[str, ...]], Reply]:
    """Answers engine.facts.read_files' batched read (`... sh -c SCRIPT - PATH...`, on the host or
    through lxc-attach) from `files`: path -> (content, "owner:group:mode"); others are not there."""

    def answer(argv: tuple[str, ...]) -> Reply:
        paths = argv[argv.index(facts._READ_FILES) + 2 :]
        lines = [f"{files[p][1]} {base64.b64encode(files[p][0]).decode()}" if p in files else "-" for p in paths]
        return 0, "".join(f"{line}\n" for line in lines).encode()

    return answer
