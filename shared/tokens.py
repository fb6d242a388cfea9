"""Signed links for customers: a token names what it is for (`purpose`), what it is about
(`subject`, e.g. an order id) and until when it is good, signed with HMAC-SHA256 under a key only
the services know. No database is needed to check one, and a token made for one purpose is
refused for another. Pure: the caller gives the key and the time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime


class TokenRefused(ValueError):
    """Why a token cannot be used; `expired` tells a stale link from a forged or broken one."""

    def __init__(self, reason: str, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


@dataclass(frozen=True)
class Claim:
    purpose: str
    subject: str
    expires_at: datetime


def sign(claim: Claim, key: str) -> str:
    """`<payload>.<signature>`, both URL-safe base64 without padding."""
    payload = _b64(json.dumps({"p": claim.purpose, "s": claim.subject, "e": int(claim.expires_at.timestamp())},
                              separators=(",", ":")).encode())
    return f"{payload}.{_signature(payload, key)}"


def verify(token: str, purpose: str, key: str, now: datetime) -> Claim:
    """The token's claim, if it is intact, for this purpose and not expired; TokenRefused otherwise."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature:
        raise TokenRefused("the link is incomplete")
    if not hmac.compare_digest(signature, _signature(payload, key)):
        raise TokenRefused("the link has been altered or is not one of ours")
    try:
        fields = json.loads(_unb64(payload))
        claim = Claim(str(fields["p"]), str(fields["s"]), datetime.fromtimestamp(int(fields["e"]), UTC))
    except (ValueError, KeyError, TypeError) as error:
        raise TokenRefused("the link is malformed") from error
    if claim.purpose != purpose:
        raise TokenRefused("the link is for something else")
    if now >= claim.expires_at:
        raise TokenRefused("the link has expired", expired=True)
    return claim


def _signature(payload: str, key: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
