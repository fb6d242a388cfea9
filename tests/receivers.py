"""Real receivers for the notifier's messages, run by the test session: an SMTP server (aiosmtpd)
that keeps what it receives and can be told to refuse, and an HTTP server that receives webhooks,
verifies each signature with the `standardwebhooks` library and can be told to fail or be slow."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks import Webhook, WebhookVerificationError

from shared.devstack.mailsink import free_port


@dataclass
class ReceivedMail:
    to: str
    message: EmailMessage
    at: float

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content() if part is not None else ""  # type: ignore[attr-defined]

    def html(self) -> str:
        part = self.message.get_body(("html",))
        return part.get_content() if part is not None else ""  # type: ignore[attr-defined]


@dataclass
class RecordingSmtp:
    """Messages by recipient; `refuse(address, codes)` answers the next DATA for that address with
    each code in turn (e.g. 451 then 250)."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    received: list[ReceivedMail] = field(default_factory=list)
    script: dict[str, deque[int]] = field(default_factory=lambda: defaultdict(deque))
    refused: list[tuple[str, int]] = field(default_factory=list)
    _controller: Controller | None = None

    def refuse(self, address: str, *codes: int) -> None:
        self.script[address.lower()].extend(codes)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0].lower()
        queue = self.script.get(rcpt)
        if queue:
            code = queue.popleft()
            if code >= 400:
                self.refused.append((rcpt, code))
                # Like real servers, a refusal names the address (the notifier must keep it to itself).
                return f"{code} {'4.3.0 try again later' if code < 500 else f'5.1.1 <{rcpt}>: mailbox unavailable'}"
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        self.received.append(ReceivedMail(rcpt, message, time.monotonic()))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[ReceivedMail]:
        return [mail for mail in self.received if mail.to == address.lower()]

    def start(self) -> None:
        self._controller = Controller(self, hostname=self.host, port=self.port, ready_timeout=10)
        self._controller.start()

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()


@dataclass
class Hook:
    name: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: dict[str, Any] | None
    status: int
    at: float


class WebhookReceiver:
    """POST /hooks/{name}: verified against the secret registered for `name`; `script(name, codes)`
    answers with each code in turn, `slow(name, seconds)` delays every answer."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self.secrets: dict[str, str] = {}
        self.codes: dict[str, deque[int]] = defaultdict(deque)
        self.delays: dict[str, float] = {}
        self.hooks: list[Hook] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/hooks/{name}"

    def register(self, name: str, secret: str) -> None:
        self.secrets[name] = secret

    def script(self, name: str, *codes: int) -> None:
        self.codes[name].extend(codes)

    def slow(self, name: str, seconds: float) -> None:
        self.delays[name] = seconds

    def of(self, name: str) -> list[Hook]:
        return [hook for hook in self.hooks if hook.name == name]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        name = scope["path"].rsplit("/", 1)[-1]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if name in self.delays:
            await asyncio.sleep(self.delays[name])
        payload, verified = None, False
        with contextlib.suppress(WebhookVerificationError, KeyError, ValueError):
            payload = Webhook(self.secrets[name]).verify(body, headers)
            verified = True
        status = self.codes[name].popleft() if self.codes.get(name) else 200
        self.hooks.append(Hook(name, headers, body, verified, payload, status, time.monotonic()))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"no"})

    def start(self) -> None:
        config = uvicorn.Config(self, host=self.host, port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="webhook-receiver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=5)
