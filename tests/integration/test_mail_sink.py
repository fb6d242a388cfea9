"""The development mail sink `make run` starts: what the notifier sends lands as an .eml file a new
user can open, and the services are pointed at it only when no SMTP server is configured."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import aiosmtplib
import pytest

from shared.devstack.mailsink import MailSink
from shared.devstack.stack import Devstack
from shared.settings import Settings


async def test_every_message_is_saved_as_an_eml_file_named_by_its_message_id(tmp_path) -> None:
    sink = MailSink(tmp_path / "mail", port=0)
    sink.start()
    try:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "shop@example.com", "ada@example.com", "Your order"
        message["Message-ID"] = "<0b5c0d2e-1111-4a4a-9c9c-123456789abc@backorder.invalid>"
        message.set_content("Hello")
        message.add_alternative("<p>Hello</p>", subtype="html")
        await aiosmtplib.send(message, hostname=sink.host, port=sink.port, start_tls=False)
    finally:
        sink.stop()
    saved = list((tmp_path / "mail").glob("*.eml"))
    assert len(saved) == 1 and saved[0].name.endswith("-0b5c0d2e-1111-4a4a-9c9c-123456789abc.eml")
    parsed = email.message_from_bytes(saved[0].read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Your order" and parsed.get_body(("html",)) is not None


async def test_the_services_mail_the_sink_unless_an_smtp_server_is_configured(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTP_HOST", raising=False)
    stack = Devstack(Settings(), root=tmp_path)
    stack.mail_sink = MailSink(tmp_path / "mail", port=0)
    env = stack.service_env()
    assert (env["SMTP_HOST"], env["SMTP_PORT"], env["SMTP_SECURITY"]) == ("127.0.0.1", str(stack.mail_sink.port), "none")
    monkeypatch.setenv("SMTP_HOST", "mail.example.com")
    assert Devstack(Settings(), root=tmp_path).service_env()["SMTP_HOST"] == "mail.example.com"
