"""Notify benchmark: 10,000 customer-visible events for 2,000 orders through the real notifier
(consumer, order view, scheduler, rendering, courier) to a local SMTP sink and webhook receiver,
next to an anchor timed in the same run: the same messages sent straight to the same sink and
receiver with aiosmtplib and httpx, at the same concurrency, and nothing else.

    python -m bench.notify [--orders 2000] [--quick]

See bench/README.md for what is measured and why.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from uuid import UUID, uuid4

import aiosmtplib
import asyncpg
import httpx
import psutil
from aiokafka import AIOKafkaProducer

from bench.cpu import CpuMeter, stack_processes
from bench.measures import drop_database, percentile
from services.notifier.settings import NotifierSettings
from shared.devstack.mailsink import free_port
from shared.devstack.stack import REPO, Devstack
from shared.events import (
    BackorderBooked,
    Customer,
    EtaChanged,
    Event,
    OrderedLine,
    OrderPlaced,
    StockReserved,
    StockShort,
    Stream,
    envelope_json,
    new_event_id,
)
from shared.settings import Settings

RESULTS = REPO / "bench" / "results" / "notify-latest.json"
GOAL_MESSAGES_PER_S = 1_000
GOAL_ANCHOR_SHARE = 0.5
CHANNEL = "bench-shop"
LOCALES = ("en-GB", "de-DE", "da-DK", "hu-HU", "it-IT")


@dataclass(frozen=True)
class NotifyConfig:
    orders: int = 2_000
    skus: int = 50
    timeout_s: float = 300.0


@dataclass
class NotifyResult:
    config: NotifyConfig
    events: int
    messages: int  # deliveries: one per message and channel (email, webhook)
    by_kind: dict[str, int]
    failed: int
    elapsed_s: float
    messages_per_s: float
    latency_ms: dict[str, float]
    anchor_s: float
    anchor_messages_per_s: float
    concurrency: dict[str, int]
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per process group, first event to last delivery
    problems: list[str] = field(default_factory=list)

    @property
    def anchor_share(self) -> float:
        return self.messages_per_s / self.anchor_messages_per_s if self.anchor_messages_per_s else 0.0


def order_events(n: int, sku_count: int, today: date) -> list[tuple[str, Event]]:
    """Five customer-visible events per order: placed with two lines, one reserved, one short and
    booked with a date, then that date slips (a delay)."""
    events: list[tuple[str, Event]] = []
    for i in range(n):
        order_id = uuid4()
        sku_a, sku_b = f"NB-{i % sku_count:03d}", f"NB-{(i + 7) % sku_count:03d}"
        promised = today + timedelta(days=10 + i % 20)
        customer = Customer(id=f"bench-{i}", email=f"bench-{i}@example.com", locale=LOCALES[i % len(LOCALES)])
        events += [
            ("orders", OrderPlaced(
                order_id=order_id, external_id=f"SO-{i}", channel=CHANNEL, customer=customer, partial_allowed=True,
                placed_at=datetime.now(UTC),
                lines=(OrderedLine(line_no=1, sku=sku_a, qty=1), OrderedLine(line_no=2, sku=sku_b, qty=2)),
            )),
            ("stock", StockReserved(order_id=order_id, line_no=1, sku=sku_a, qty=1)),
            ("stock", StockShort(
                order_id=order_id, line_no=2, sku=sku_b, qty_short=2, qty_reserved=0, ordered_at=datetime.now(UTC),
                customer_tier="standard", partial_allowed=True, order_short_lines=1,
            )),
            ("allocations", BackorderBooked(order_id=order_id, line_no=2, sku=sku_b, qty_waiting=2, promised_date=promised)),
            ("allocations", EtaChanged(
                order_id=order_id, line_no=2, sku=sku_b, previous_date=promised, new_date=promised + timedelta(days=9),
                reason="purchase_order_changed",
            )),
        ]
    return events


async def publish(settings: Settings, events: list[tuple[str, Event]]) -> dict[UUID, float]:
    """Every event on its topic with its key, as a relay would; returns when each was handed over."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5,
                                max_batch_size=262_144)
    await producer.start()
    sent_at: dict[UUID, float] = {}
    try:
        futures = []
        for stream, event in events:
            event_id = new_event_id()
            value = envelope_json(event, event_id, datetime.now(UTC), str(getattr(event, "order_id", event.key)), None, "bench")
            sent_at[event_id] = time.time()
            headers = [("event_type", event.event_type.encode()), ("event_id", str(event_id).encode())]
            topic = settings.topic(Stream(stream))
            futures.append(await producer.send(topic, value=value.encode(), key=event.key.encode(), headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent_at


async def stats(http: httpx.AsyncClient, url: str) -> dict[str, dict[str, float]]:
    data: dict[str, dict[str, float]] = (await http.get(url)).json()
    return data


async def wait_delivered(database_url: str, order_ids: list[UUID], deadline: float) -> list[asyncpg.Record]:
    """Every notification of the run's orders composed and finished (none pending or being sent)
    for a few polls running."""
    conn = await asyncpg.connect(database_url)
    try:
        quiet, last = 0, -1
        while time.monotonic() < deadline:
            unconfirmed = await conn.fetchval(
                "SELECT $2::int - count(*) FROM order_state WHERE order_id = ANY($1) AND confirmed_at IS NOT NULL",
                order_ids, len(order_ids))
            if unconfirmed:
                quiet = 0
                await asyncio.sleep(0.2)
                continue
            rows = await conn.fetch("SELECT id, kind, channel, status, cause_event_ids, subject, body_text, body_html,"
                                    " CAST(payload AS text) AS payload FROM notification WHERE order_id = ANY($1)", order_ids)
            open_windows = await conn.fetchval("SELECT count(*) FROM notice_window WHERE order_id = ANY($1)", order_ids)
            busy = sum(1 for r in rows if r["status"] in ("pending", "sending")) + open_windows
            quiet = quiet + 1 if busy == 0 and len(rows) == last else 0
            if quiet >= 5:
                return rows
            last = len(rows)
            await asyncio.sleep(0.5)
        raise TimeoutError("the notifier did not finish in time")
    finally:
        await conn.close()


async def time_anchor(rows: list[asyncpg.Record], smtp_port: int, hook_url: str, notifier: NotifierSettings) -> float:
    """The same messages, straight to the same receivers: aiosmtplib over `SMTP_CONNECTIONS` reused
    connections, httpx with `DELIVERY_PER_DESTINATION` requests in flight."""
    mail = [r for r in rows if r["channel"] == "email"]
    hooks = [r for r in rows if r["channel"] == "webhook"]
    queue: asyncio.Queue[asyncpg.Record] = asyncio.Queue()
    for row in mail:
        queue.put_nowait(row)

    async def smtp_worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, start_tls=False)
        await client.connect()
        while not queue.empty():
            row = queue.get_nowait()
            message = MIMEMultipart("alternative")  # the cheapest way the standard library builds it
            message["Message-ID"] = f"<anchor-{row['id']}@bench>"
            message["From"], message["To"] = "bench@example.com", "customer@example.com"
            message["Subject"] = Header(row["subject"], "utf-8")  # type: ignore[assignment]
            message.attach(MIMEText(row["body_text"], "plain", "utf-8"))
            message.attach(MIMEText(row["body_html"], "html", "utf-8"))
            await client.send_message(message)
        await client.quit()

    slots = asyncio.Semaphore(notifier.delivery_per_destination)

    async def post(http: httpx.AsyncClient, row: asyncpg.Record) -> None:
        async with slots:
            response = await http.post(hook_url, content=row["payload"].encode(),
                                       headers={"content-type": "application/json", "webhook-id": f"anchor-{row['id']}"})
            response.raise_for_status()

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(smtp_worker() for _ in range(min(notifier.smtp_connections, len(mail)) or 0)),
                             *(post(http, row) for row in hooks))
    return time.perf_counter() - started


async def run_notify(
    stack: Devstack, config: NotifyConfig, smtp_port: int, http_port: int, receivers_pid: int | None = None
) -> NotifyResult:
    notifier_settings = NotifierSettings()
    database_url = stack.settings.service_database_url("notifier")
    hook_url = f"http://127.0.0.1:{http_port}/hooks/{CHANNEL}"
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    async with httpx.AsyncClient(base_url=stack.base_url("notifier"), timeout=30) as api:
        registered = await api.put(f"/v1/channels/{CHANNEL}", json={"webhook_url": hook_url, "webhook_secret": secret})
        registered.raise_for_status()
    warm_up = order_events(10, config.skus, date.today())  # consumer group joined, connections and templates warm
    await publish(stack.settings, warm_up)
    await wait_delivered(database_url, [e.order_id for _, e in warm_up if isinstance(e, OrderPlaced)], time.monotonic() + 120)
    events = order_events(config.orders, config.skus, date.today())
    print(f"  publishing {len(events):,} events for {config.orders:,} orders ...", flush=True)

    def processes() -> dict[str, list[psutil.Process]]:
        groups = stack_processes(stack)
        if receivers_pid:
            groups["receivers"] = [psutil.Process(receivers_pid)]
        return groups

    meter = CpuMeter(processes)
    meter.start()
    sent_at = await publish(stack.settings, events)
    first_event = min(sent_at.values())
    order_ids = [event.order_id for _, event in events if isinstance(event, OrderPlaced)]
    await stack.wait_quiescent(timeout=config.timeout_s)  # every event consumed
    rows = await wait_delivered(database_url, order_ids, time.monotonic() + config.timeout_s)
    cpu = meter.stop()  # includes a few idle polls after the last delivery
    async with httpx.AsyncClient(timeout=30) as http:
        arrived = await stats(http, f"http://127.0.0.1:{http_port}/stats")
    problems: list[str] = []
    latencies, last_arrival = [], first_event
    for row in rows:
        if row["status"] != "sent":
            continue
        at = arrived["mail" if row["channel"] == "email" else "hooks"].get(str(row["id"]))
        if at is None:
            problems.append(f"notification {row['id']} is recorded sent but never arrived")
            continue
        causes = [sent_at[c] for c in row["cause_event_ids"] if c in sent_at]
        if causes:
            latencies.append((at - max(causes)) * 1000)
        last_arrival = max(last_arrival, at)
    delivered = len(latencies)
    if len({str(r["id"]) for r in rows}) != len(rows):
        problems.append("a notification id twice")
    elapsed = last_arrival - first_event
    print(f"  {delivered:,} messages delivered in {elapsed:.2f} s; timing the anchor ...", flush=True)
    anchor_s = await time_anchor([r for r in rows if r["status"] == "sent"], smtp_port, hook_url, notifier_settings)
    by_kind: dict[str, int] = {}
    for row in rows:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
    return NotifyResult(
        config=config, events=len(events), messages=delivered, by_kind=by_kind,
        failed=sum(1 for r in rows if r["status"] == "failed"), elapsed_s=elapsed,
        messages_per_s=delivered / elapsed if elapsed > 0 else 0.0,
        latency_ms={"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99), "max": max(latencies, default=0.0)},
        anchor_s=anchor_s, anchor_messages_per_s=delivered / anchor_s if anchor_s > 0 else 0.0,
        concurrency={"delivery_concurrency": notifier_settings.delivery_concurrency,
                     "delivery_per_destination": notifier_settings.delivery_per_destination,
                     "smtp_connections": notifier_settings.smtp_connections},
        cpu_s=cpu,
        problems=problems,
    )


def report(result: NotifyResult) -> str:
    ok_rate = result.messages_per_s >= GOAL_MESSAGES_PER_S
    ok_share = result.anchor_share >= GOAL_ANCHOR_SHARE
    return "\n".join([
        "",
        "notify benchmark (coalescing window 0 s: latency is event to delivery without it)",
        f"  events          {result.events:,} for {result.config.orders:,} orders",
        f"  messages        {result.messages:,} delivered ({', '.join(f'{k} {v}' for k, v in sorted(result.by_kind.items()))}),"
        f" {result.failed} failed",
        f"  rate            {result.messages_per_s:,.0f} messages/s (first event to last delivery {result.elapsed_s:.2f} s)"
        f"  goal {GOAL_MESSAGES_PER_S:,}: {'met' if ok_rate else 'NOT met'}",
        f"  latency         p50 {result.latency_ms['p50']:.0f} ms, p99 {result.latency_ms['p99']:.0f} ms,"
        f" max {result.latency_ms['max']:.0f} ms",
        f"  anchor          {result.anchor_messages_per_s:,.0f} messages/s ({result.anchor_s:.2f} s,"
        " same messages, same receivers, aiosmtplib + httpx only)",
        f"  ours/anchor     {result.anchor_share:.2f}  goal >= {GOAL_ANCHOR_SHARE}: {'met' if ok_share else 'NOT met'}",
        f"  concurrency     {result.concurrency}",
        f"  CPU seconds     {', '.join(f'{k} {v:.1f}' for k, v in result.cpu_s.items())}",
        *(f"  PROBLEM: {p}" for p in result.problems),
    ])


async def bench(config: NotifyConfig) -> NotifyResult:
    """Our own stack with the notifier only, and the receivers in a process of their own."""
    smtp_port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "bench.notify_sink", str(smtp_port), str(http_port)]
    sink = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220 (once, before measuring)
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    os.environ.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), SMTP_SECURITY="none", NOTIFY_COALESCE_WINDOW_S="0")
    settings = Settings(orders_port=18501, inventory_port=18502, allocator_port=18503, notifier_port=18504)
    stack = Devstack(settings, root=REPO / ".devstack" / "bench-notify", log_to_files=True, pg_port=25438, kafka_port=29098)
    print("starting the stack: PostgreSQL + broker + the notifier service only ...", flush=True)
    try:
        await stack.start_servers()
        if stack.embedded:
            await drop_database(stack.settings.admin_database_url(), stack.settings.database_prefix + "notifier")
        await stack.prepare(("notifier",))
        stack.start_service("notifier", stack.settings.port("notifier"))
        await stack.wait_ready()
        return await run_notify(stack, config, smtp_port, http_port, sink.pid)
    finally:
        await stack.stop(drain=False)
        sink.terminate()
        sink.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notify")
    parser.add_argument("--orders", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="200 orders: a smoke run, not a measurement")
    args = parser.parse_args(argv)
    config = NotifyConfig(orders=200 if args.quick else args.orders)
    result = asyncio.run(bench(config))
    print(report(result))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(asdict(result) | {"measured_at": datetime.now(UTC).isoformat(),
                                                      "anchor_share": result.anchor_share}, indent=2, default=str) + "\n")
    print(f"\nresults written to {RESULTS}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
