"""All SQL of the notifier: its view of each order, the moments waiting for their window, the
still-waiting schedule, and the messages with their delivery state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.domain import Consolation, Kind, LineFacts, Notice, OrderFacts, Preferences

LINE_FIELDS = tuple(f.name for f in fields(LineFacts))

ENSURE_ORDER = text("INSERT INTO order_state (order_id) VALUES (:order_id) ON CONFLICT DO NOTHING")
# The order row's lock serialises everything about one order (every consumer, the scheduler). Its
# lines and notices are read after the lock is held, in statements of their own.
LOCK_ORDER = text(
    "SELECT placed, external_id, customer_id, locale, channel, confirmed_at IS NOT NULL AS confirmed, last_message_at"
    " FROM order_state WHERE order_id = :order_id FOR UPDATE"
)
READ_LINES = text(f"SELECT {', '.join(LINE_FIELDS)} FROM line_state WHERE order_id = :order_id ORDER BY line_no")
PLACE_ORDER = text(
    "UPDATE order_state SET placed = true, external_id = :external_id, customer_id = :customer_id, locale = :locale,"
    " channel = :channel WHERE order_id = :order_id"
)
SAVE_LINE = text(
    f"INSERT INTO line_state (order_id, {', '.join(LINE_FIELDS)}) VALUES (:order_id, {', '.join(':' + f for f in LINE_FIELDS)})"
    " ON CONFLICT (order_id, line_no) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in LINE_FIELDS if f != "line_no")
)
SAVE_CONTACT = text(
    "INSERT INTO customer_contact (order_id, customer_id, email, locale) VALUES (:order_id, :customer_id, :email, :locale)"
    " ON CONFLICT DO NOTHING"
)
MARK_CONFIRMED = text("UPDATE order_state SET confirmed_at = now() WHERE order_id = :order_id")
ADD_NOTICE = text("INSERT INTO notice (order_id, notice, cause_event_id) VALUES (:order_id, CAST(:notice AS jsonb), :cause)")
# The window opens with the order's first pending moment and closes `window` seconds later.
OPEN_WINDOW = text(
    "INSERT INTO notice_window (order_id, due_at) VALUES (:order_id, now() + make_interval(secs => :window))"
    " ON CONFLICT DO NOTHING"
)
STOP_STILL_WAITING = text("DELETE FROM still_waiting_schedule WHERE order_id = :order_id")
SAVE_CONSOLATION = text(
    "INSERT INTO consolation (order_id, line_no, kind, code, percent) VALUES (:order_id, :line_no, :kind, :code, :percent)"
    " ON CONFLICT DO NOTHING"
)

# Scheduler: orders whose window closed or whose still-waiting update is due, locked so that a second
# notifier instance passes over them (SKIP LOCKED) instead of composing the same message.
LOCK_DUE_ORDERS = text(
    """
    SELECT o.order_id FROM order_state o
    WHERE o.placed AND o.order_id IN (
        (SELECT order_id FROM notice_window WHERE due_at <= now() ORDER BY due_at LIMIT :limit)
        UNION
        (SELECT order_id FROM still_waiting_schedule WHERE due_at <= now() ORDER BY due_at LIMIT :limit))
    FOR UPDATE OF o SKIP LOCKED
    """
)
READ_NOTICES = text("SELECT notice, cause_event_id FROM notice WHERE order_id = :order_id ORDER BY id")
STILL_WAITING_DUE = text("SELECT due_at <= now() FROM still_waiting_schedule WHERE order_id = :order_id")
CLOSE_WINDOW = text(
    "WITH gone AS (DELETE FROM notice WHERE order_id = :order_id) DELETE FROM notice_window WHERE order_id = :order_id"
)
SCHEDULE_STILL_WAITING = text(
    "INSERT INTO still_waiting_schedule (order_id, due_at) VALUES (:order_id, now() + make_interval(secs => :period))"
    " ON CONFLICT (order_id) DO UPDATE SET due_at = excluded.due_at"
)
MARK_MESSAGED = text("UPDATE order_state SET last_message_at = now() WHERE order_id = :order_id")
READ_PREFERENCES = text("SELECT language, good_news, still_waiting FROM customer_preference WHERE customer_id = :customer_id")
READ_CHANNEL = text("SELECT webhook_url, send_email FROM channel WHERE name = :name")
READ_CONSOLATIONS = text("SELECT line_no, kind, code, percent FROM consolation WHERE order_id = :order_id")
INSERT_NOTIFICATION = text(
    """
    INSERT INTO notification (id, order_id, customer_id, kind, kinds, channel, destination, recipient, language, subject,
                              body_text, body_html, payload, cause_event_ids, resend_of)
    VALUES (:id, :order_id, :customer_id, :kind, CAST(:kinds AS text[]), :channel, :destination, :recipient, :language,
            :subject, :body_text, :body_html, CAST(:payload AS jsonb), CAST(:cause_event_ids AS uuid[]), :resend_of)
    """
)


def _line_params(order_id: UUID, line: LineFacts) -> dict[str, Any]:
    return {"order_id": order_id, **asdict(line)}


async def lock_order(session: AsyncSession, order_id: UUID) -> tuple[OrderFacts, datetime | None]:
    """The order as the notifier knows it (a row is made for an order not placed yet: facts about
    its lines may arrive before OrderPlaced, on other topics), locked, with its last message time."""
    await session.execute(ENSURE_ORDER, {"order_id": order_id})
    row = (await session.execute(LOCK_ORDER, {"order_id": order_id})).one()
    lines = tuple(
        LineFacts(**dict(zip(LINE_FIELDS, r, strict=True))) for r in await session.execute(READ_LINES, {"order_id": order_id})
    )
    order = OrderFacts(order_id, row.external_id, row.customer_id, row.locale, row.channel, row.placed, row.confirmed, lines)
    return order, row.last_message_at


async def place_order(session: AsyncSession, order: OrderFacts, email: str) -> None:
    params = {"order_id": order.order_id, "external_id": order.external_id, "customer_id": order.customer_id,
              "locale": order.locale, "channel": order.channel}
    await session.execute(PLACE_ORDER, params)
    await session.execute(SAVE_CONTACT, {**params, "email": email})


async def save_lines(session: AsyncSession, before: OrderFacts, after: OrderFacts) -> None:
    old = {line.line_no: line for line in before.lines}
    changed = [_line_params(after.order_id, line) for line in after.lines if old.get(line.line_no) != line]
    if changed:
        await session.execute(SAVE_LINE, changed)


async def mark_confirmed(session: AsyncSession, order_id: UUID) -> None:
    await session.execute(MARK_CONFIRMED, {"order_id": order_id})


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


async def add_notices(
    session: AsyncSession, order_id: UUID, notices: Sequence[Notice], cause: UUID | None, window_s: float
) -> None:
    """Record the moments and open the order's window if it is not open yet."""
    if not notices:
        return
    await session.execute(ADD_NOTICE, [{"order_id": order_id, "notice": notice_json(n), "cause": cause} for n in notices])
    await session.execute(OPEN_WINDOW, {"order_id": order_id, "window": window_s})


async def stop_still_waiting(session: AsyncSession, order_id: UUID) -> None:
    await session.execute(STOP_STILL_WAITING, {"order_id": order_id})


async def save_consolation(session: AsyncSession, order_id: UUID, line_no: int, consolation: Consolation) -> None:
    params = {"order_id": order_id, "line_no": line_no, "kind": consolation.kind, "code": consolation.code,
              "percent": consolation.percent}
    await session.execute(SAVE_CONSOLATION, params)


# --- the scheduler's side ------------------------------------------------------------------------


async def lock_due_orders(session: AsyncSession, limit: int) -> list[UUID]:
    return list((await session.execute(LOCK_DUE_ORDERS, {"limit": limit})).scalars())


@dataclass(frozen=True)
class Pending:
    """What a due order has waiting: its moments (with the events that caused them) and whether
    its still-waiting update is due."""

    notices: list[Notice]
    causes: list[UUID]
    still_waiting_due: bool


async def read_pending(session: AsyncSession, order_id: UUID) -> Pending:
    rows = (await session.execute(READ_NOTICES, {"order_id": order_id})).all()
    due = (await session.execute(STILL_WAITING_DUE, {"order_id": order_id})).scalar_one_or_none()
    causes = list(dict.fromkeys(row.cause_event_id for row in rows if row.cause_event_id))
    return Pending([notice_from(row.notice) for row in rows], causes, bool(due))


async def close_window(session: AsyncSession, order_id: UUID) -> None:
    await session.execute(CLOSE_WINDOW, {"order_id": order_id})


async def after_message(
    session: AsyncSession, order_id: UUID, messaged: bool, waiting: bool, was_due: bool, period_s: float
) -> None:
    """The next still-waiting update is due a full period after the order's last message of any
    kind (or after an update that was due but switched off); none once nothing waits."""
    if messaged:
        await session.execute(MARK_MESSAGED, {"order_id": order_id})
    if not waiting:
        await stop_still_waiting(session, order_id)
    elif messaged or was_due:
        await session.execute(SCHEDULE_STILL_WAITING, {"order_id": order_id, "period": period_s})


async def read_preferences(session: AsyncSession, customer_id: str) -> Preferences:
    row = (await session.execute(READ_PREFERENCES, {"customer_id": customer_id})).first()
    return Preferences(row.language, row.good_news, row.still_waiting) if row else Preferences()


async def read_channel(session: AsyncSession, name: str) -> tuple[str | None, bool]:
    """The platform's webhook URL (None: none registered) and whether its customers get email."""
    row = (await session.execute(READ_CHANNEL, {"name": name})).first()
    return (row.webhook_url, row.send_email) if row else (None, True)


async def read_consolations(session: AsyncSession, order_id: UUID) -> dict[int, Consolation]:
    rows = await session.execute(READ_CONSOLATIONS, {"order_id": order_id})
    return {row.line_no: Consolation(row.kind, row.code, row.percent) for row in rows}


async def insert_notifications(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(INSERT_NOTIFICATION, list(rows))
