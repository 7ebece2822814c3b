"""A real SMTP server (aiosmtpd) that keeps what it receives, for the failure mailer's tests."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    sender: str
    recipients: list[str]
    login: str | None
    message: Message


@dataclass
class Inbox:
    host: str
    port: int
    login: tuple[str, str] | None = None  # (user, password) the server accepts; None: no AUTH
    received: list[Received] = field(default_factory=list)

    def wait(self, count: int = 1, timeout: float = 120.0) -> list[Received]:
        """The messages received so far, once there are `count` of them (or the timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return list(self.received)

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.login == (data.login.decode(), data.password.decode())
        return AuthResult(success=ok, handled=False, auth_data=data)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        content = envelope.original_content or b""
        login = session.auth_data.login.decode() if session.authenticated and session.auth_data else None
        self.received.append(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), login or None, message_from_bytes(content))
        )
        return "250 OK"


@contextmanager
def smtp_server(
    host: str, port: int, login: tuple[str, str] | None = None, tls: tuple[Path, Path] | None = None
) -> Iterator[Inbox]:
    """Serve SMTP on host:port until exit: plain, or with STARTTLS required when `tls` is
    (cert, key); a login (AUTH PLAIN/LOGIN, after STARTTLS) required when `login` is given."""
    inbox = Inbox(host, port, login)
    options: dict[str, Any] = {}
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        options |= {"tls_context": context, "require_starttls": True}
    if login:
        options |= {"authenticator": inbox.authenticate, "auth_required": True}
    controller = Controller(inbox, hostname=host, port=port, **options)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
