"""Signed customer links: intact, for their purpose and in time, or refused with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.tokens import Claim, TokenRefused, sign, verify

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
KEY = "test-key"


def claim(days: float = 30, purpose: str = "track", subject: str = "order-1") -> Claim:
    return Claim(purpose, subject, (NOW + timedelta(days=days)).replace(microsecond=0))


def test_a_signed_claim_reads_back() -> None:
    assert verify(sign(claim(), KEY), "track", KEY, NOW) == claim()


def test_an_expired_link_is_told_apart_from_a_forged_one() -> None:
    with pytest.raises(TokenRefused) as refused:
        verify(sign(claim(days=-1), KEY), "track", KEY, NOW)
    assert refused.value.expired
    with pytest.raises(TokenRefused) as forged:
        verify(sign(claim(), "another-key"), "track", KEY, NOW)
    assert not forged.value.expired and "altered" in str(forged.value)


def test_a_link_for_one_purpose_opens_nothing_else() -> None:
    with pytest.raises(TokenRefused, match="something else"):
        verify(sign(claim(purpose="decide"), KEY), "track", KEY, NOW)


@pytest.mark.parametrize("broken", ["", "abc", ".", "abc.", ".abc", "a.b.c"])
def test_broken_links_are_refused(broken: str) -> None:
    with pytest.raises(TokenRefused):
        verify(broken, "track", KEY, NOW)


@given(position=st.integers(min_value=0), replacement=st.sampled_from("AbZ09-_"))
def test_any_changed_character_is_refused(position: int, replacement: str) -> None:
    token = sign(claim(subject="6f1c2a3e-8b4d-4c1e-9f0a-1b2c3d4e5f60"), KEY)
    index = position % len(token)
    changed = token[:index] + replacement + token[index + 1 :]
    if changed == token:
        return
    with pytest.raises(TokenRefused):
        verify(changed, "track", KEY, NOW)
