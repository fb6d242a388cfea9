"""All SQL of the notifier: its view of each order, the moments waiting for their window, the
still-waiting schedule, and the messages. Every function takes many orders at once: a consumer
batch or a scheduler round is a few statements, not a few per order."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.domain import Consolation, Kind, LineFacts, Notice, OrderFacts, Preferences

LINE_FIELDS = tuple(f.name for f in fields(LineFacts))
IDS = "CAST(:ids AS uuid[])"

# A row is made for an order not placed yet: facts about its lines may come before OrderPlaced, on
# other topics. The order rows' locks serialise everything about an order (consumers, scheduler);
# they are taken in id order, and the lines are read after the locks are held.
ENSURE_ORDERS = text(f"INSERT INTO order_state (order_id) SELECT id FROM unnest({IDS}) AS id ORDER BY id ON CONFLICT DO NOTHING")
READ_ORDERS = (
    "SELECT order_id, placed, external_id, customer_id, locale, channel, confirmed_at IS NOT NULL AS confirmed"
    f" FROM order_state WHERE order_id = ANY({IDS}) ORDER BY order_id"
)
LOCK_ORDERS = text(READ_ORDERS + " FOR UPDATE")
READ_LINES = text(
    f"SELECT order_id, {', '.join(LINE_FIELDS)} FROM line_state WHERE order_id = ANY({IDS}) ORDER BY order_id, line_no"
)
PLACE_ORDER = text(
    "UPDATE order_state SET placed = true, external_id = :external_id, customer_id = :customer_id, locale = :locale,"
    " channel = :channel WHERE order_id = :order_id"
)
SAVE_CONTACT = text(
    "INSERT INTO customer_contact (order_id, customer_id, email, locale) VALUES (:order_id, :customer_id, :email, :locale)"
    " ON CONFLICT DO NOTHING"
)
SAVE_LINE = text(
    f"INSERT INTO line_state (order_id, {', '.join(LINE_FIELDS)}) VALUES (:order_id, {', '.join(':' + f for f in LINE_FIELDS)})"
    " ON CONFLICT (order_id, line_no) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in LINE_FIELDS if f != "line_no")
)
MARK_CONFIRMED = text(f"UPDATE order_state SET confirmed_at = now() WHERE order_id = ANY({IDS})")
ADD_NOTICE = text("INSERT INTO notice (order_id, notice, cause_event_id) VALUES (:order_id, CAST(:notice AS jsonb), :cause)")
# The window opens with the order's first pending moment and closes `window` seconds later.
OPEN_WINDOWS = text(
    f"INSERT INTO notice_window (order_id, due_at) SELECT id, now() + make_interval(secs => :window) FROM unnest({IDS}) AS id"
    " ORDER BY id ON CONFLICT DO NOTHING"
)
SAVE_CONSOLATION = text(
    "INSERT INTO consolation (order_id, line_no, kind, code, percent) VALUES (:order_id, :line_no, :kind, :code, :percent)"
    " ON CONFLICT DO NOTHING"
)
STOP_STILL_WAITING = text(f"DELETE FROM still_waiting_schedule WHERE order_id = ANY({IDS})")

# Scheduler: orders whose window closed or whose still-waiting update is due, locked so that a second
# notifier instance passes over them (SKIP LOCKED) instead of composing the same message.
LOCK_DUE_ORDERS = text(
    """
    SELECT o.order_id FROM order_state o
    WHERE o.placed AND o.order_id IN (
        (SELECT order_id FROM notice_window WHERE due_at <= now() ORDER BY due_at LIMIT :limit)
        UNION
        (SELECT order_id FROM still_waiting_schedule WHERE due_at <= now() ORDER BY due_at LIMIT :limit))
    ORDER BY o.order_id
    FOR UPDATE OF o SKIP LOCKED
    """
)
READ_NOTICES = text(f"SELECT order_id, notice, cause_event_id FROM notice WHERE order_id = ANY({IDS}) ORDER BY id")
READ_SCHEDULE = text(
    "SELECT o.order_id, o.last_message_at, coalesce(s.due_at <= now(), false) AS still_waiting_due"
    f" FROM order_state o LEFT JOIN still_waiting_schedule s USING (order_id) WHERE o.order_id = ANY({IDS})"
)
CLOSE_WINDOWS = text(
    f"WITH gone AS (DELETE FROM notice WHERE order_id = ANY({IDS})) DELETE FROM notice_window WHERE order_id = ANY({IDS})"
)
MARK_MESSAGED = text(f"UPDATE order_state SET last_message_at = now() WHERE order_id = ANY({IDS})")
SCHEDULE_STILL_WAITING = text(
    f"INSERT INTO still_waiting_schedule (order_id, due_at) SELECT id, now() + make_interval(secs => :period)"
    f" FROM unnest({IDS}) AS id ORDER BY id ON CONFLICT (order_id) DO UPDATE SET due_at = excluded.due_at"
)
READ_PREFERENCES = text(
    "SELECT customer_id, language, good_news, still_waiting FROM customer_preference"
    " WHERE customer_id = ANY(CAST(:ids AS text[]))"
)
READ_CHANNELS = text("SELECT name, webhook_url, send_email FROM channel WHERE name = ANY(CAST(:names AS text[]))")
READ_CONSOLATIONS = text(f"SELECT order_id, line_no, kind, code, percent FROM consolation WHERE order_id = ANY({IDS})")
INSERT_NOTIFICATION = text(
    """
    INSERT INTO notification (id, order_id, customer_id, kind, kinds, channel, destination, recipient, language, subject,
                              body_text, body_html, payload, cause_event_ids, resend_of)
    VALUES (:id, :order_id, :customer_id, :kind, CAST(:kinds AS text[]), :channel, :destination, :recipient, :language,
            :subject, :body_text, :body_html, CAST(:payload AS jsonb), CAST(:cause_event_ids AS uuid[]), :resend_of)
    """
)


# --- the consumer's side -------------------------------------------------------------------------


async def lock_orders(session: AsyncSession, order_ids: Sequence[UUID], create_missing: bool = True) -> dict[UUID, OrderFacts]:
    """The orders as the notifier knows them, locked (made if never seen, unless the caller knows
    they exist: the scheduler's due orders)."""
    if not order_ids:
        return {}
    ids = sorted(set(order_ids))
    if create_missing:
        await session.execute(ENSURE_ORDERS, {"ids": ids})
    return await _orders(session, ids, LOCK_ORDERS)


async def read_order(session: AsyncSession, order_id: UUID) -> OrderFacts | None:
    """One order as the notifier knows it, for reading only (the tracking page)."""
    return (await _orders(session, [order_id], text(READ_ORDERS))).get(order_id)


async def _orders(session: AsyncSession, ids: list[UUID], query: Any) -> dict[UUID, OrderFacts]:
    rows = (await session.execute(query, {"ids": ids})).all()
    lines: dict[UUID, list[LineFacts]] = defaultdict(list)
    for row in (await session.execute(READ_LINES, {"ids": ids})).all():
        lines[row[0]].append(LineFacts(*row[1:]))
    return {
        row.order_id: OrderFacts(row.order_id, row.external_id, row.customer_id, row.locale, row.channel, row.placed,
                                 row.confirmed, tuple(lines[row.order_id]))
        for row in rows
    }


def notice_json(notice: Notice) -> str:
    return json.dumps(
        {
            "kind": notice.kind.value,
            "line_no": notice.line_no,
            "previous_date": notice.previous_date.isoformat() if notice.previous_date else None,
            "new_date": notice.new_date.isoformat() if notice.new_date else None,
            "units": [list(pair) for pair in notice.units],
            "consolation": notice.consolation,
        }
    )


def notice_from(data: dict[str, Any]) -> Notice:
    def day(value: str | None) -> date | None:
        return date.fromisoformat(value) if value else None

    return Notice(
        Kind(data["kind"]), data.get("line_no"), day(data.get("previous_date")), day(data.get("new_date")),
        tuple((int(a), int(b)) for a, b in data.get("units", ())), bool(data.get("consolation")),
    )


async def save_views(
    session: AsyncSession,
    loaded: Mapping[UUID, OrderFacts],
    orders: Mapping[UUID, OrderFacts],
    emails: Mapping[UUID, str],
    notices: Sequence[tuple[UUID, Notice, UUID | None]],
    consolations: Sequence[tuple[UUID, int, Consolation]],
    window_s: float,
) -> None:
    """Write back what a batch changed: placed orders and their contacts, changed lines, new
    confirmations, the moments (opening their orders' windows) and consolations; and stop the
    still-waiting updates of orders where nothing waits any more."""
    placed = [
        {"order_id": o.order_id, "external_id": o.external_id, "customer_id": o.customer_id, "locale": o.locale,
         "channel": o.channel, "email": emails[o.order_id]}
        for o in orders.values() if o.order_id in emails
    ]
    if placed:
        await session.execute(PLACE_ORDER, placed)
        await session.execute(SAVE_CONTACT, placed)
    changed = []
    for order_id, order in orders.items():
        before = {line.line_no: line for line in loaded[order_id].lines}
        changed += [{"order_id": order_id, **asdict(line)} for line in order.lines if before.get(line.line_no) != line]
    if changed:
        await session.execute(SAVE_LINE, changed)
    confirmed = [order_id for order_id, order in orders.items() if order.confirmed and not loaded[order_id].confirmed]
    if confirmed:
        await session.execute(MARK_CONFIRMED, {"ids": confirmed})
    if notices:
        rows = [{"order_id": order_id, "notice": notice_json(notice), "cause": cause} for order_id, notice, cause in notices]
        await session.execute(ADD_NOTICE, rows)
        await session.execute(OPEN_WINDOWS, {"ids": sorted({order_id for order_id, _, _ in notices}), "window": window_s})
    if consolations:
        await session.execute(SAVE_CONSOLATION, [
            {"order_id": order_id, "line_no": line_no, "kind": c.kind, "code": c.code, "percent": c.percent}
            for order_id, line_no, c in consolations
        ])
    done = [order_id for order_id, order in orders.items() if order.confirmed and not order.waiting_lines]
    if done:
        await session.execute(STOP_STILL_WAITING, {"ids": done})


# --- the scheduler's side ------------------------------------------------------------------------


async def lock_due_orders(session: AsyncSession, limit: int) -> list[UUID]:
    return list((await session.execute(LOCK_DUE_ORDERS, {"limit": limit})).scalars())


@dataclass
class Pending:
    """What a due order has waiting: its moments (with the events that caused them), when it was
    last told anything, and whether its still-waiting update is due."""

    notices: list[Notice]
    causes: list[UUID]
    last_message_at: datetime | None = None
    still_waiting_due: bool = False


async def read_pending(session: AsyncSession, order_ids: Sequence[UUID]) -> dict[UUID, Pending]:
    pending = {order_id: Pending([], []) for order_id in order_ids}
    for row in (await session.execute(READ_NOTICES, {"ids": list(order_ids)})).all():
        entry = pending[row.order_id]
        entry.notices.append(notice_from(row.notice))
        if row.cause_event_id and row.cause_event_id not in entry.causes:
            entry.causes.append(row.cause_event_id)
    for row in (await session.execute(READ_SCHEDULE, {"ids": list(order_ids)})).all():
        pending[row.order_id].last_message_at = row.last_message_at
        pending[row.order_id].still_waiting_due = row.still_waiting_due
    return pending


async def close_windows(session: AsyncSession, order_ids: Sequence[UUID]) -> None:
    if order_ids:
        await session.execute(CLOSE_WINDOWS, {"ids": list(order_ids)})


async def after_messages(
    session: AsyncSession, messaged: Sequence[UUID], reschedule: Sequence[UUID], stop: Sequence[UUID], period_s: float
) -> None:
    """The next still-waiting update is due a full period after the order's last message of any
    kind (or after an update that was due but switched off); none once nothing waits."""
    if messaged:
        await session.execute(MARK_MESSAGED, {"ids": sorted(messaged)})
    if reschedule:
        await session.execute(SCHEDULE_STILL_WAITING, {"ids": sorted(reschedule), "period": period_s})
    if stop:
        await session.execute(STOP_STILL_WAITING, {"ids": list(stop)})


async def read_preferences(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, Preferences]:
    rows = await session.execute(READ_PREFERENCES, {"ids": sorted(set(customer_ids))})
    return {row.customer_id: Preferences(row.language, row.good_news, row.still_waiting) for row in rows}


async def read_channels(session: AsyncSession, names: Sequence[str]) -> dict[str, tuple[str | None, bool]]:
    """Per platform: its webhook URL (None: none registered) and whether its customers get email.
    A channel never registered is absent (email only)."""
    rows = await session.execute(READ_CHANNELS, {"names": sorted(set(names))})
    return {row.name: (row.webhook_url, row.send_email) for row in rows}


async def read_consolations(session: AsyncSession, order_ids: Sequence[UUID]) -> dict[UUID, dict[int, Consolation]]:
    found: dict[UUID, dict[int, Consolation]] = defaultdict(dict)
    for row in await session.execute(READ_CONSOLATIONS, {"ids": list(order_ids)}):
        found[row.order_id][row.line_no] = Consolation(row.kind, row.code, row.percent)
    return found


async def insert_notifications(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(INSERT_NOTIFICATION, list(rows))
