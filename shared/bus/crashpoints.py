"""Named places where a test can make a service process die as `kill -9` would, to prove that a
crash there loses nothing and applies nothing twice.

Test-only: a process crashes only when FAULT_CRASH_AT names the point (`point` or `point:N` to die
at its N-th pass, default 1). Unset, a crash point costs one dict lookup."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("bus.crashpoints")

CONSUMER_AFTER_DB_COMMIT = "consumer.after_db_commit"
"""A consumer batch's effects and inbox rows are committed, its offsets are not."""
RELAY_BEFORE_PUBLISH = "relay.before_publish"
"""Outbox rows are committed and claimed by the relay, nothing of them is sent yet."""
RELAY_AFTER_PUBLISH = "relay.after_publish"
"""The broker acknowledged a batch of outbox rows, the relay has not marked them sent."""
POINTS = (CONSUMER_AFTER_DB_COMMIT, RELAY_BEFORE_PUBLISH, RELAY_AFTER_PUBLISH)


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get("FAULT_CRASH_AT", "").strip()
    if not spec:
        return None
    point, _, nth = spec.partition(":")
    if point not in POINTS:
        raise ValueError(f"FAULT_CRASH_AT={spec!r}: unknown crash point (known: {', '.join(POINTS)})")
    return point, int(nth or "1")


_ARMED = _armed()
_passes: dict[str, int] = {}


def crash_point(point: str, passes: int = 1) -> None:
    """Die here with SIGKILL (no cleanup, no flush) if FAULT_CRASH_AT names this point and pass.
    `passes`: how many passes this one counts for; a consumer's commit counts each event it
    applied, so "the N-th pass" means the same whether a poll brought one event or fifty."""
    if _ARMED is None or _ARMED[0] != point:
        return
    _passes[point] = _passes.get(point, 0) + passes
    if _passes[point] >= _ARMED[1]:
        log.warning("crash point %s reached (pass %d): killing this process", point, _passes[point])
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
