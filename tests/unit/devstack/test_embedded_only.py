"""Which servers a stack starts: configured ones when both variables name them, the embedded ones
otherwise, and always the embedded ones for stacks whose tests kill the servers (the fault suite)."""

from __future__ import annotations

import pytest

from shared.devstack.stack import Devstack
from shared.settings import Settings


def test_configured_servers_are_used_unless_the_stack_must_own_its_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example/postgres")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    assert not Devstack(Settings()).embedded
    assert Devstack(Settings(), embedded_only=True).embedded


def test_without_both_variables_the_servers_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example/postgres")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert Devstack(Settings()).embedded
