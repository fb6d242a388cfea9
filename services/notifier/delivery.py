"""The courier: claims due notifications, sends them (SMTP, signed webhooks) outside any database
transaction, and records every attempt with its outcome, retrying transient failures with backoff.

A claim is a lease: a sender that dies after the send and before the record leaves the row to be
sent again when the lease ends, under the same notification id (email Message-ID, webhook-id), so
receivers can drop the repeat. Concurrency is bounded overall and per destination, so a dead or
slow endpoint holds only its own share of the slots."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from typing import Any
from uuid import UUID

import aiosmtplib
import httpx
from sqlalchemy import text
from standardwebhooks import Webhook

from services.notifier.domain import Outcome, RetryPolicy, http_outcome, smtp_outcome
from services.notifier.settings import NotifierSettings
from shared import metrics
from shared.bus.failures import is_unreachable
from shared.events import NotificationFailed, NotificationSent
from shared.logs import OutageTracker
from shared.service import ServiceContext

log = logging.getLogger("notifier.delivery")

# Candidates are locked with SKIP LOCKED (another instance passes over them), then at most `room`
# per destination are taken, so one destination's backlog cannot fill every free slot.
CLAIM = text(
    """
    WITH candidate AS (
        SELECT id, order_id, channel, destination, recipient, next_attempt_at FROM notification
        WHERE status IN ('pending', 'sending') AND next_attempt_at <= now() AND (status = 'pending' OR lease_until < now())
        ORDER BY next_attempt_at LIMIT :scan FOR UPDATE SKIP LOCKED
    ), ranked AS (
        SELECT c.*, row_number() OVER (PARTITION BY c.destination ORDER BY c.next_attempt_at) AS rank FROM candidate c
    ), chosen AS (
        SELECT r.* FROM ranked r
        LEFT JOIN unnest(CAST(:busy AS text[]), CAST(:room AS int[])) AS b(destination, room) ON b.destination = r.destination
        WHERE r.rank <= coalesce(b.room, :per_destination)
        ORDER BY r.next_attempt_at LIMIT :limit
    )
    UPDATE notification n
    SET status = 'sending', attempts = n.attempts + 1, lease_until = now() + make_interval(secs => :lease)
    FROM chosen LEFT JOIN customer_contact contact ON contact.order_id = chosen.order_id AND chosen.channel = 'email'
                LEFT JOIN channel platform ON platform.name = chosen.recipient AND chosen.channel = 'webhook'
    WHERE n.id = chosen.id
    RETURNING n.id, n.order_id, n.kind, n.kinds, n.channel, n.destination, n.recipient, n.language, n.subject,
              n.body_text, n.body_html, CAST(n.payload AS text) AS payload, n.attempts, n.cause_event_ids,
              contact.email, platform.webhook_secret
    """
)
RECORD_ATTEMPTS = text(
    """
    INSERT INTO delivery_attempt (notification_id, attempt, started_at, finished_at, outcome, error)
    SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS int[]), CAST(:started AS timestamptz[]),
                         CAST(:finished AS timestamptz[]), CAST(:outcomes AS text[]), CAST(:errors AS text[]))
    ON CONFLICT DO NOTHING
    """
)
# Only rows this sender still holds the lease of: a row another sender claimed again is its to record.
RECORD_RESULTS = text(
    """
    UPDATE notification n
    SET status = u.status, next_attempt_at = u.next_at, last_error = u.error, lease_until = NULL,
        sent_at = CASE WHEN u.status = 'sent' THEN u.finished_at ELSE n.sent_at END
    FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS int[]), CAST(:statuses AS text[]), CAST(:next_ats AS timestamptz[]),
                CAST(:errors AS text[]), CAST(:finished AS timestamptz[])) AS u(id, attempt, status, next_at, error, finished_at)
    WHERE n.id = u.id AND n.status = 'sending' AND n.attempts = u.attempt
    RETURNING n.id
    """
)


@dataclass(frozen=True)
class Claimed:
    id: UUID
    order_id: UUID
    kind: str
    kinds: list[str]
    channel: str
    destination: str
    recipient: str
    language: str
    subject: str
    body_text: str
    body_html: str
    payload: str
    attempts: int
    cause_event_ids: list[UUID]
    email: str | None
    webhook_secret: str | None


@dataclass(frozen=True)
class Attempt:
    notification: Claimed
    outcome: Outcome
    error: str | None
    started_at: datetime
    finished_at: datetime


class SmtpPool:
    """SMTP connections kept open and reused: a connection per message costs more than the message."""

    def __init__(self, settings: NotifierSettings) -> None:
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.smtp_connections)

    async def send(self, message: MIMEMultipart) -> None:
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                if client is None or not client.is_connected:
                    client = await self._connect()
                await client.send_message(message)
            except BaseException:
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
                raise
            self._idle.append(client)

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host, port=s.smtp_port, use_tls=s.smtp_security == "tls",
            start_tls=s.smtp_security == "starttls", timeout=s.delivery_timeout_s,
        )
        await client.connect()
        if s.smtp_user:
            await client.login(s.smtp_user, s.smtp_password or "")
        return client

    async def close(self) -> None:
        for client in self._idle:
            with contextlib.suppress(Exception):
                await client.quit()
        self._idle.clear()


def email_message(n: Claimed, settings: NotifierSettings) -> MIMEMultipart:
    """multipart/alternative, plain text and HTML, in UTF-8. Built with the compat32 MIME classes:
    the modern EmailMessage API parses every header through its registry, a tenth of the
    courier's CPU at a few hundred messages a second."""
    message = MIMEMultipart("alternative")
    message["Message-ID"] = f"<{n.id}@{settings.mail_message_id_domain}>"
    message["From"] = settings.mail_from
    message["To"] = n.email or ""
    message["Subject"] = Header(n.subject, "utf-8")  # type: ignore[assignment]
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Content-Language"] = n.language
    message["X-Order-Id"] = str(n.order_id)
    message.attach(MIMEText(n.body_text, "plain", "utf-8"))
    message.attach(MIMEText(n.body_html, "html", "utf-8"))
    return message


class Courier:
    def __init__(self, context: ServiceContext, settings: NotifierSettings) -> None:
        self.context = context
        self.settings = settings
        self.retry: RetryPolicy = settings.retry_policy()
        self.smtp = SmtpPool(settings)
        self.http: dict[str, httpx.AsyncClient] = {}  # one per destination (webhook URL)
        self.inflight: dict[asyncio.Task[Attempt], str] = {}
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.database = OutageTracker("notifier courier: database", log)

    def _http_client(self, destination: str) -> httpx.AsyncClient:
        """A client (and connection pool) per destination, sized to what may be in flight there: a
        slow platform cannot take the connections of another, and httpx walks its pool per request.
        Redirects are not followed: a webhook answers for itself, it does not send us elsewhere."""
        client = self.http.get(destination)
        if client is None:
            pool = self.settings.delivery_per_destination
            limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
            client = self.http[destination] = httpx.AsyncClient(
                timeout=self.settings.delivery_timeout_s, follow_redirects=False, limits=limits
            )
        return client

    def _failed(self, error: BaseException, doing: str) -> None:
        """The database away is an outage, told once (OutageTracker); anything else is a bug."""
        if is_unreachable(error):
            self.database.failed(error, "; messages wait in the database until it is back")
        else:
            log.exception(doing)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _room(self) -> tuple[list[str], list[int]]:
        """Free places of every destination with messages in flight (SMTP is bounded by its pool)."""
        busy = Counter(self.inflight.values())
        limits = {d: (min(self.settings.delivery_per_destination, self.settings.smtp_connections) if d == "smtp"
                      else self.settings.delivery_per_destination) for d in [*busy, "smtp"]}
        names = sorted(limits)
        return names, [max(limits[d] - busy.get(d, 0), 0) for d in names]

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                await self._claim_and_start()
                await self._wait()
                await self._record_finished()
            if self.inflight:  # let what is on the wire finish and be recorded
                await asyncio.wait(list(self.inflight), timeout=self.settings.delivery_timeout_s)
                await self._record_finished()
        finally:
            for task in self.inflight:
                task.cancel()
            clients, self.http = list(self.http.values()), {}  # a restarted run makes new ones
            for client in clients:
                await client.aclose()
            await self.smtp.close()

    async def _claim_and_start(self) -> None:
        free = self.settings.delivery_concurrency - len(self.inflight)
        if free <= 0:
            return
        try:
            claimed = await self.claim(free)
            self.database.recovered("claims failed")
        except Exception as error:
            self._failed(error, "claiming notifications failed")
            return
        for notification in claimed:
            task = asyncio.create_task(self.deliver(notification), name=f"deliver-{notification.id}")
            self.inflight[task] = notification.destination

    async def _wait(self) -> None:
        self._wake.clear()
        waiters: list[asyncio.Future[Any]] = [*self.inflight, asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.settings.notify_poll_interval_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiters[-1].cancel()

    async def claim(self, limit: int) -> list[Claimed]:
        names, room = self._room()
        params = {
            "scan": limit * 4, "limit": limit, "busy": names, "room": room,
            "per_destination": self.settings.delivery_per_destination, "lease": self.settings.delivery_lease_s,
        }
        async with self.context.sessions() as session, session.begin():
            rows = (await session.execute(CLAIM, params)).mappings().all()
        return [Claimed(**row) for row in rows]

    async def deliver(self, n: Claimed) -> Attempt:
        started = datetime.now(UTC)
        try:
            async with asyncio.timeout(self.settings.delivery_timeout_s):
                outcome, error = await (self._email(n) if n.channel == "email" else self._webhook(n))
        except TimeoutError:
            outcome, error = Outcome.TRANSIENT, f"timed out after {self.settings.delivery_timeout_s:g} s"
        except Exception as exc:  # a sender bug must not lose the row: it is retried, then failed
            log.exception("sending notification %s failed unexpectedly", n.id)
            outcome, error = Outcome.TRANSIENT, f"{exc.__class__.__name__}: {exc}"
        return Attempt(n, outcome, error, started, datetime.now(UTC))

    async def _email(self, n: Claimed) -> tuple[Outcome, str | None]:
        """The outcome and, for a failure, the server's reason without the address in it (errors
        reach the log and NotificationFailed, which carry customer ids only)."""
        if not n.email:
            return Outcome.PERMANENT, "no email address is known for this order"
        outcome, error = await self._send_email(n)
        return outcome, error.replace(n.email, f"<customer {n.recipient}>") if error else None

    async def _send_email(self, n: Claimed) -> tuple[Outcome, str | None]:
        try:
            await self.smtp.send(email_message(n, self.settings))
        except aiosmtplib.SMTPRecipientsRefused as refused:
            code = refused.recipients[0].code if refused.recipients else 550
            return smtp_outcome(code), f"SMTP {code}: recipient refused"
        except aiosmtplib.SMTPResponseException as response:
            return smtp_outcome(response.code), f"SMTP {response.code}: {response.message}"
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Outcome.TRANSIENT, f"SMTP server unreachable: {exc.__class__.__name__}: {exc}"
        return Outcome.SENT, None

    async def _webhook(self, n: Claimed) -> tuple[Outcome, str | None]:
        if not n.webhook_secret:
            return Outcome.PERMANENT, f"channel {n.recipient} has no webhook secret any more"
        message_id = f"msg_{n.id}"
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(n.webhook_secret).sign(message_id, now, n.payload),
        }
        try:
            client = self._http_client(n.destination)
            response = await client.post(n.destination, content=n.payload.encode(), headers=headers)
        except httpx.TimeoutException:
            return Outcome.TRANSIENT, f"timed out after {self.settings.delivery_timeout_s:g} s"
        except httpx.HTTPError as exc:
            return Outcome.TRANSIENT, f"{exc.__class__.__name__}: {exc}"
        outcome = http_outcome(response.status_code)
        return outcome, None if outcome is Outcome.SENT else f"HTTP {response.status_code}: {response.text[:200]}"

    async def _record_finished(self) -> None:
        done = [task for task in self.inflight if task.done()]
        if not done:
            return
        attempts = [task.result() for task in done if not task.cancelled() and task.exception() is None]
        for task in done:
            del self.inflight[task]
        while True:
            try:
                await self.record(attempts)
                return
            except Exception as error:  # keep the results until the database is back
                self._failed(error, f"recording {len(attempts)} deliveries failed; retrying")
                if self._stopping.is_set():
                    return  # the leases expire and the rows are sent again, same ids
                await asyncio.sleep(1)

    async def record(self, attempts: list[Attempt]) -> None:
        """Every attempt is kept; a sent or given-up message is announced on the notifications topic.
        One transaction and three statements for all the results at hand."""
        if not attempts:
            return
        statuses, next_ats = [], []
        for a in attempts:
            delay = self.retry.next_delay(a.notification.attempts, a.outcome)
            statuses.append("sent" if a.outcome is Outcome.SENT else ("pending" if delay is not None else "failed"))
            next_ats.append(a.finished_at + timedelta(seconds=delay or 0))
        params = {
            "ids": [a.notification.id for a in attempts], "attempts": [a.notification.attempts for a in attempts],
            "started": [a.started_at for a in attempts], "finished": [a.finished_at for a in attempts],
            "outcomes": [a.outcome.value for a in attempts], "errors": [a.error for a in attempts],
            "statuses": statuses, "next_ats": next_ats,
        }
        async with self.context.uow() as uow:
            await uow.session.execute(RECORD_ATTEMPTS, params)
            ours = set((await uow.session.execute(RECORD_RESULTS, params)).scalars())
            for a, status in zip(attempts, statuses, strict=True):
                n = a.notification
                if n.id not in ours or status == "pending":
                    continue  # retried later, or our lease ran out and another sender owns the row now
                common: dict[str, Any] = {
                    "order_id": n.order_id, "notification_id": n.id, "kind": n.kind, "kinds": tuple(n.kinds),
                    "channel": n.channel, "recipient": n.recipient, "language": n.language, "attempts": n.attempts,
                    "cause_event_ids": tuple(n.cause_event_ids),
                }
                if status == "sent":
                    uow.emit(NotificationSent(**common), correlation_id=str(n.order_id))
                else:
                    log.warning("notification %s (%s, %s to %s) given up after %d attempts: %s",
                                n.id, n.kind, n.channel, n.recipient, n.attempts, a.error)
                    uow.emit(NotificationFailed(**common, error=a.error or "", permanent=a.outcome is Outcome.PERMANENT),
                             correlation_id=str(n.order_id))
        outcomes = {"sent": "sent", "pending": "retried", "failed": "failed"}
        recorded = Counter((a.notification.channel, outcomes[status]) for a, status in zip(attempts, statuses, strict=True)
                           if a.notification.id in ours)  # committed, and ours: a row another sender took counts there
        for (channel, outcome), n_attempts in recorded.items():
            metrics.NOTIFICATIONS.labels(channel, outcome).inc(n_attempts)
