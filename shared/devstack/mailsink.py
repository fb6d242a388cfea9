"""A local SMTP server for development: every message the notifier sends is saved as an `.eml`
file (open it with any mail program) instead of reaching a customer."""

from __future__ import annotations

import logging
import re
import socket
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("devstack.mail")


class SaveAsEml:
    """aiosmtpd handler: one file per message, named by arrival time and Message-ID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.saved = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        match = re.search(rb"^Message-ID:\s*<([^>@\s]+)", content, re.MULTILINE | re.IGNORECASE)
        name = match.group(1).decode(errors="replace") if match else "message"
        path = self.directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}-{name}.eml"
        path.write_bytes(content)
        self.saved += 1
        return "250 Message accepted for delivery"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class MailSink:
    """Port 0 picks a free port (aiosmtpd's controller cannot be given 0 itself)."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 2525) -> None:
        self.directory = directory
        self.host = host
        self.port = port or free_port(host)
        self.handler = SaveAsEml(directory)
        self._controller = Controller(self.handler, hostname=host, port=self.port, ready_timeout=10)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        log.info("mail sink on %s:%d saves every message to %s", self.host, self.port, self.directory)

    def stop(self) -> None:
        self._controller.stop()
