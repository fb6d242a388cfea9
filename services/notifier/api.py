"""Notifier HTTP API: platforms register their webhook and their customers' preferences; operators
read every message with its delivery attempts and send one again on purpose."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel
from sqlalchemy import text

from services.notifier.delivery import Courier
from services.notifier.schemas import (
    AttemptRead,
    ChannelRead,
    ChannelUpdate,
    NotificationDetail,
    NotificationList,
    NotificationRead,
    PreferencesRead,
    PreferencesUpdate,
)
from services.notifier.tables import CustomerContact
from shared.problems import problems
from shared.service import Context, invalid

router = APIRouter(prefix="/v1", tags=["notifications"])

Name = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00/]+$")]
NO_NOTIFICATION = {404: "No notification with this id"}

UPSERT_CHANNEL = text(
    """
    INSERT INTO channel (name, webhook_url, webhook_secret, send_email, updated_at)
    VALUES (:name, :webhook_url, :webhook_secret, :send_email, now())
    ON CONFLICT (name) DO UPDATE SET webhook_url = excluded.webhook_url, webhook_secret = excluded.webhook_secret,
        send_email = excluded.send_email, updated_at = now()
    RETURNING name AS channel, webhook_url, webhook_secret IS NOT NULL AS has_webhook_secret, send_email, updated_at
    """
)
READ_CHANNEL = text(
    "SELECT name AS channel, webhook_url, webhook_secret IS NOT NULL AS has_webhook_secret, send_email, updated_at"
    " FROM channel WHERE name = :name"
)
UPSERT_PREFERENCES = text(
    """
    INSERT INTO customer_preference (customer_id, language, good_news, still_waiting, updated_at)
    VALUES (:customer_id, :language, :good_news, :still_waiting, now())
    ON CONFLICT (customer_id) DO UPDATE SET language = excluded.language, good_news = excluded.good_news,
        still_waiting = excluded.still_waiting, updated_at = now()
    RETURNING customer_id, language, good_news, still_waiting, updated_at
    """
)
READ_PREFERENCES = text(
    "SELECT customer_id, language, good_news, still_waiting, updated_at FROM customer_preference WHERE customer_id = :customer_id"
)
NOTIFICATION_COLUMNS = (
    "id, order_id, customer_id, kind, kinds, channel, recipient, language, status, attempts, last_error, subject,"
    " created_at, sent_at, CASE WHEN status IN ('pending', 'sending') THEN next_attempt_at END AS next_attempt_at, resend_of"
)
LIST_NOTIFICATIONS = text(
    f"""
    SELECT {NOTIFICATION_COLUMNS} FROM notification
    WHERE (CAST(:order_id AS uuid) IS NULL OR order_id = :order_id) AND (CAST(:status AS text) IS NULL OR status = :status)
    ORDER BY created_at DESC, id LIMIT :limit
    """
)
READ_NOTIFICATION = text(f"SELECT {NOTIFICATION_COLUMNS}, body_text FROM notification WHERE id = :id")
READ_ATTEMPTS = text(
    "SELECT attempt, started_at, finished_at, outcome, error FROM delivery_attempt WHERE notification_id = :id ORDER BY attempt"
)
RESEND = text(
    f"""
    INSERT INTO notification (id, order_id, customer_id, kind, kinds, channel, destination, recipient, language, subject,
                              body_text, body_html, payload, cause_event_ids, resend_of)
    SELECT :new_id, order_id, customer_id, kind, kinds, channel, destination, recipient, language, subject,
           body_text, body_html, payload, cause_event_ids, id
    FROM notification WHERE id = :id
    RETURNING {NOTIFICATION_COLUMNS}
    """
)


class ContactRead(BaseModel):
    order_id: UUID
    customer_id: str
    locale: str


@router.get("/contacts/{order_id}", responses=problems({404: "No contact known for this order"}))
async def read_contact(order_id: UUID, context: Context) -> ContactRead:
    """Who the notifier will tell about an order and in which language (the address stays inside)."""
    async with context.sessions() as session:
        contact = await session.get(CustomerContact, order_id)
    if contact is None:
        raise HTTPException(404, f"no contact known for order {order_id}")
    return ContactRead.model_validate(contact, from_attributes=True)


@router.put("/channels/{channel}", responses=problems(body=True))
async def register_channel(channel: Name, body: ChannelUpdate, context: Context) -> ChannelRead:
    """Register (or change) a platform's webhook: messages about its orders are POSTed there,
    signed per Standard Webhooks with the secret; `send_email: false` stops email to its customers."""
    if body.webhook_url and not body.webhook_secret:
        raise invalid("webhook_secret", "is required with a webhook_url")
    params = {"name": channel, **body.model_dump()}
    async with context.sessions() as session, session.begin():
        row = (await session.execute(UPSERT_CHANNEL, params)).mappings().one()
    return ChannelRead.model_validate(dict(row))


@router.get("/channels/{channel}", responses=problems({404: "The channel is not registered (its customers get email only)"}))
async def read_channel(channel: Name, context: Context) -> ChannelRead:
    async with context.sessions() as session:
        row = (await session.execute(READ_CHANNEL, {"name": channel})).mappings().first()
    if row is None:
        raise HTTPException(404, f"channel {channel} is not registered (its customers get email only)")
    return ChannelRead.model_validate(dict(row))


@router.put("/customers/{customer_id}/preferences", responses=problems(body=True))
async def set_preferences(customer_id: Name, body: PreferencesUpdate, context: Context) -> PreferencesRead:
    """Switch the optional messages (good news, still waiting) off or on, and pick the language;
    confirmations, delays and cancellations always go."""
    async with context.sessions() as session, session.begin():
        row = (await session.execute(UPSERT_PREFERENCES, {"customer_id": customer_id, **body.model_dump()})).mappings().one()
    return PreferencesRead.model_validate(dict(row))


@router.get("/customers/{customer_id}/preferences", responses=problems())
async def read_preferences(customer_id: Name, context: Context) -> PreferencesRead:
    async with context.sessions() as session:
        row = (await session.execute(READ_PREFERENCES, {"customer_id": customer_id})).mappings().first()
    return PreferencesRead.model_validate(dict(row)) if row else PreferencesRead(customer_id=customer_id)


@router.get("/notifications", responses=problems())
async def list_notifications(
    context: Context,
    order_id: UUID | None = None,
    status: Literal["pending", "sending", "sent", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> NotificationList:
    """Messages, newest first, with their delivery state and rendered subject."""
    async with context.sessions() as session:
        rows = (await session.execute(LIST_NOTIFICATIONS, {"order_id": order_id, "status": status, "limit": limit})).mappings()
        return NotificationList(items=[NotificationRead.model_validate(dict(row)) for row in rows])


@router.get("/notifications/{notification_id}", responses=problems(NO_NOTIFICATION))
async def read_notification(notification_id: UUID, context: Context) -> NotificationDetail:
    """One message with its text and every delivery attempt."""
    async with context.sessions() as session:
        row = (await session.execute(READ_NOTIFICATION, {"id": notification_id})).mappings().first()
        if row is None:
            raise HTTPException(404, f"no notification {notification_id}")
        log = (await session.execute(READ_ATTEMPTS, {"id": notification_id})).mappings()
        attempts = [AttemptRead.model_validate(dict(attempt)) for attempt in log]
    return NotificationDetail.model_validate({**row, "attempt_log": attempts})


@router.post("/notifications/{notification_id}/resend", status_code=202, responses=problems(NO_NOTIFICATION))
async def resend(notification_id: UUID, context: Context) -> NotificationRead:
    """Send a message again on purpose: a new notification (new id, so receivers do not drop it as
    a repeat) with the same content, linked by `resend_of`."""
    async with context.sessions() as session, session.begin():
        row = (await session.execute(RESEND, {"id": notification_id, "new_id": uuid4()})).mappings().first()
    if row is None:
        raise HTTPException(404, f"no notification {notification_id}")
    for worker in context.workers:
        if isinstance(worker, Courier):
            worker.wake()
    return NotificationRead.model_validate(dict(row))
