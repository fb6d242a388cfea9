"""What the notifier's HTTP API accepts and shows (its tables are another matter)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator

from services.notifier.domain import LANGUAGES
from shared.fields import storable


class ChannelUpdate(BaseModel):
    """A platform's webhook and whether its customers also get email."""

    model_config = ConfigDict(extra="forbid")
    webhook_url: Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(storable)] | None = None
    webhook_secret: Annotated[str, Field(max_length=512), AfterValidator(storable)] | None = None
    send_email: StrictBool = True  # "yes" is a platform bug worth hearing about, not true

    @field_validator("webhook_url")
    @classmethod
    def http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @field_validator("webhook_secret")
    @classmethod
    def standard_webhooks_secret(cls, secret: str | None) -> str | None:
        """The Standard Webhooks form: `whsec_` and base64 of at least 24 random bytes."""
        if secret is None:
            return None
        body = secret.removeprefix("whsec_")
        if not body:
            raise ValueError("must not be empty")
        try:
            key = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be `whsec_` followed by base64") from None
        if len(key) < 24:
            raise ValueError("must hold at least 24 bytes of key (base64 of 24+ random bytes)")
        return secret


class ChannelRead(BaseModel):
    channel: str
    webhook_url: str | None
    has_webhook_secret: bool
    send_email: bool
    updated_at: datetime


class PreferencesUpdate(BaseModel):
    """The optional messages a customer can switch off, and the language they read."""

    model_config = ConfigDict(extra="forbid")
    language: Literal["en", "de", "da", "hu", "it"] | None = Field(default=None, description=f"one of {', '.join(LANGUAGES)}")
    good_news: StrictBool = True
    still_waiting: StrictBool = True


class PreferencesRead(PreferencesUpdate):
    customer_id: str
    updated_at: datetime | None = None


class AttemptRead(BaseModel):
    attempt: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    error: str | None


class NotificationRead(BaseModel):
    id: UUID
    order_id: UUID
    customer_id: str
    kind: str
    kinds: list[str]
    channel: str
    recipient: str
    language: str
    status: str
    attempts: int
    last_error: str | None
    subject: str
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    resend_of: UUID | None


class NotificationDetail(NotificationRead):
    body_text: str
    attempt_log: list[AttemptRead]


class NotificationList(BaseModel):
    items: list[NotificationRead]
