"""The customer's links, signed (shared.tokens) with the deployment's key: the tracking page of an
order, made by orders and by the notifier's messages, opened by the notifier without an API key."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from shared.settings import Settings
from shared.tokens import Claim, TokenRefused, sign, verify

TRACK = "track"


def tracking_url(settings: Settings, order_id: UUID, now: datetime) -> str:
    """Where the customer follows the order, good for TRACKING_LINK_DAYS from now."""
    claim = Claim(TRACK, str(order_id), now + timedelta(days=settings.tracking_link_days))
    base = (settings.tracking_base_url or settings.service_url("notifier")).rstrip("/")
    return f"{base}/track/{sign(claim, settings.link_signing_key)}"


def tracked_order(settings: Settings, token: str, now: datetime) -> UUID:
    """The order a tracking link is for; TokenRefused when it is not a good one."""
    claim = verify(token, TRACK, settings.link_signing_key, now)
    try:
        return UUID(claim.subject)
    except ValueError as error:
        raise TokenRefused("the link is malformed") from error
