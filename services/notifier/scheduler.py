"""The scheduler: turns each order whose coalescing window closed (or whose still-waiting update is
due) into one message, rendered in the customer's language, as one notification per channel."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from services.notifier import store
from services.notifier.domain import Kind, Message, Notice, Preferences, compose, still_waiting_due
from services.notifier.render import Rendered, render
from services.notifier.settings import NotifierSettings
from shared.links import tracking_url
from shared.service import RoundsWorker, ServiceContext

log = logging.getLogger("notifier.scheduler")
ORDERS_PER_TRANSACTION = 200


def webhook_payload(message: Message, rendered: Rendered, at: datetime) -> dict[str, Any]:
    """The JSON a platform receives (Standard Webhooks shape: type, timestamp, data); the
    notification id is added per notification."""
    return {
        "type": f"order.{message.kind.value}",
        "timestamp": at.isoformat(),
        "data": {
            "order_id": str(message.order_id),
            "external_id": message.external_id,
            "channel": message.channel,
            "customer_id": message.customer_id,
            "kinds": [kind.value for kind in message.kinds],
            "language": message.language,
            "sections": [asdict(section) for section in message.sections],
            "subject": rendered.subject,
            "text": rendered.text,
        },
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def notification_rows(
    message: Message, rendered: Rendered, webhook_url: str | None, send_email: bool, causes: list[UUID], at: datetime
) -> list[dict[str, Any]]:
    """One notification per channel: email unless the platform turned it off, a webhook when the
    platform registered one. The recipient is the customer id or the channel, never an address."""
    rows = []
    targets = ([("email", "smtp", message.customer_id)] if send_email else []) + (
        [("webhook", webhook_url, message.channel)] if webhook_url else []
    )
    payload = webhook_payload(message, rendered, at)
    kinds = [k.value for k in message.kinds]
    cause_ids = [str(c) for c in causes]
    for channel, destination, recipient in targets:
        notification_id = uuid4()
        payload["data"]["notification_id"] = str(notification_id)
        rows.append(
            {
                "id": notification_id, "order_id": message.order_id, "customer_id": message.customer_id,
                "kind": message.kind.value, "kinds": kinds, "channel": channel,
                "destination": destination, "recipient": recipient, "language": message.language,
                "subject": rendered.subject, "body_text": rendered.text, "body_html": rendered.html,
                "payload": json.dumps(payload, default=_json_default),
                "cause_event_ids": cause_ids, "resend_of": None,
            }
        )
    return rows


class MessageScheduler(RoundsWorker):
    """Runs in every notifier instance; SKIP LOCKED on the order rows keeps two instances from
    composing the same window or the same still-waiting update."""

    def __init__(self, context: ServiceContext, settings: NotifierSettings, composed: Callable[[], None]) -> None:
        super().__init__("notifier scheduler", "messages wait in the database", log, settings.notify_poll_interval_s)
        self.context = context
        self.settings = settings
        self.composed = composed  # wakes the courier

    async def round(self) -> bool:
        count = await self.compose_due()
        if count:
            self.composed()
        return count >= ORDERS_PER_TRANSACTION

    async def compose_due(self) -> int:
        """Compose every due order (up to a batch) in one transaction; returns how many orders."""
        period = timedelta(days=self.settings.notify_still_waiting_every_days)
        policy = self.settings.notice_policy()
        async with self.context.uow() as uow:
            session = uow.session
            order_ids = await store.lock_due_orders(session, ORDERS_PER_TRANSACTION)
            if not order_ids:
                return 0
            now = datetime.now(UTC)
            orders = await store.lock_orders(session, order_ids, create_missing=False)
            pending = await store.read_pending(session, order_ids)
            preferences = await store.read_preferences(session, [o.customer_id for o in orders.values()])
            channels = await store.read_channels(session, [o.channel for o in orders.values()])
            consolations = await store.read_consolations(session, order_ids)
            rows: list[dict[str, Any]] = []
            messaged, reschedule, stop = [], [], []
            for order_id in order_ids:
                order, due = orders[order_id], pending[order_id]
                notices = list(due.notices)
                if due.still_waiting_due and still_waiting_due(order, due.last_message_at, now, period):
                    notices.append(Notice(Kind.STILL_WAITING))
                message = None
                if notices:
                    wishes = preferences.get(order.customer_id, Preferences())
                    message = compose(order, notices, wishes, now.date(), consolations.get(order_id), policy)
                if message is not None:
                    message = replace(message, tracking_url=tracking_url(self.context.settings, order_id, now))
                    webhook_url, send_email = channels.get(order.channel, (None, True))
                    rows += notification_rows(message, render(message), webhook_url, send_email, due.causes, now)
                    messaged.append(order_id)
                if not (order.confirmed and order.waiting_lines):
                    stop.append(order_id)
                elif message is not None or due.still_waiting_due:
                    reschedule.append(order_id)
            await store.close_windows(session, order_ids)
            await store.after_messages(session, messaged, reschedule, stop, period.total_seconds())
            await store.insert_notifications(session, rows)
        return len(order_ids)
