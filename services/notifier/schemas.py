"""What the notifier's HTTP API accepts and shows (its tables are another matter)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from services.notifier.domain import LANGUAGES
from shared.fields import Omittable

# The rules as patterns, so that the OpenAPI states them; the validators below apply the same
# patterns and say what is wrong in words.
WEBHOOK_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9][A-Za-z0-9.\-]*(:[0-9]{1,5})?([/?#][!-~]*)?$"
# Standard Webhooks: `whsec_` (optional) and canonical base64 of at least 24 bytes (8 groups of 4).
WEBHOOK_SECRET = r"^(whsec_)?([A-Za-z0-9+/]{4}){8,}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


class ChannelUpdate(BaseModel):
    """A platform's webhook and whether its customers also get email. Leave the webhook out for
    none; a webhook_url needs its webhook_secret."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"dependentRequired": {"webhook_url": ["webhook_secret"]}})
    webhook_url: Omittable[Annotated[str, Field(max_length=2048, json_schema_extra={"pattern": WEBHOOK_URL})]] = None
    webhook_secret: Omittable[Annotated[str, Field(max_length=512, json_schema_extra={"pattern": WEBHOOK_SECRET})]] = None
    send_email: StrictBool = True  # "yes" is a platform bug worth hearing about, not true

    @field_validator("webhook_url")
    @classmethod
    def http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.fullmatch(WEBHOOK_URL, url):
            raise ValueError("must be an http:// or https:// URL with a host (ASCII, no spaces)")
        return url

    @field_validator("webhook_secret")
    @classmethod
    def standard_webhooks_secret(cls, secret: str | None) -> str | None:
        """Why a secret does not match WEBHOOK_SECRET, in words."""
        if secret is None or re.fullmatch(WEBHOOK_SECRET, secret):
            return secret
        body = secret.removeprefix("whsec_")
        if not body:
            raise ValueError("must not be empty")
        try:
            key = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be `whsec_` followed by base64") from None
        raise ValueError(f"must hold at least 24 bytes of key (base64 of 24+ random bytes), not {len(key)}")


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
