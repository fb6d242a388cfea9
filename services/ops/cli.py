"""`fulfil`: the ops engineer's command line. Follows the streams, traces an order across them,
shows the backorder book, stock, lag and dead letters, and replays dead letters. Reads the
broker without a consumer group and the services' databases read-only; reaches the services'
HTTP APIs for the book and stock. Configured by the same variables as the services.

Exit codes scripts can rely on: 0 done, 1 nothing found (an order without events, an unknown id),
2 bad usage, 3 a dependency (broker, database, service) could not be reached."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar
from uuid import UUID

import httpx
import typer
from aiokafka.errors import KafkaConnectionError, KafkaError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree

from services.ops.beliefs import order_beliefs
from services.ops.trace import order_trace, trace_json, walk
from shared.events import Stream
from shared.ops.dlq import DeadLetter, dead_letters, replay, select
from shared.ops.lag import LagReport, lag_report
from shared.ops.reader import reading
from shared.ops.records import RecordFilter, StreamRecord
from shared.settings import Settings

EXIT_NOT_FOUND = 1
EXIT_UNREACHABLE = 3

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
dlq_app = typer.Typer(help="Dead letters: list, show and replay them.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)

# One colour per kind of event, so a stream reads at a glance.
TYPE_STYLES = {
    "OrderPlaced": "bold cyan", "LineCancelled": "red", "ShipmentRequested": "blue", "ShipmentReported": "bright_blue",
    "Shipped": "bold blue", "StockReserved": "green", "StockShort": "yellow", "LineRejected": "bold red",
    "StockReleased": "magenta", "PurchaseOrderChanged": "bright_magenta", "GoodsPutAway": "bright_green",
    "GoodsReceived": "bold green", "BackorderAllocated": "bold yellow", "BackorderBooked": "yellow",
    "EtaChanged": "bright_yellow", "NotificationSent": "white", "NotificationFailed": "bold red",
}

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output (one JSON document; tail: one per line).")]


def settings() -> Settings:
    return Settings()


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; an unreachable dependency is exit code 3 with one clear line."""
    try:
        return asyncio.run(work)
    except (KafkaConnectionError, KafkaError) as error:
        fail(f"cannot reach the broker at {settings().kafka_bootstrap_servers}: {error}", EXIT_UNREACHABLE)
    except httpx.HTTPError as error:
        fail(f"cannot reach the service: {error}", EXIT_UNREACHABLE)
    except OSError as error:
        fail(f"cannot reach a dependency: {error}", EXIT_UNREACHABLE)


def fail(message: str, code: int) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()


def record_line(record: StreamRecord) -> str:
    """One readable line: time, where, type, key, essentials, correlation id."""
    style = TYPE_STYLES.get(record.event_type, "white")
    when = record.time.strftime("%H:%M:%S.%f")[:-3]
    correlation = f" [dim]corr={record.correlation_id}[/dim]" if record.correlation_id else ""
    return (
        f"[dim]{when}[/dim] {record.address:<18} [{style}]{record.event_type:<20}[/{style}] "
        f"key={record.key} {record.essentials()}{correlation}"
    )


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=errors, transient=True)


def stream_topics(config: Settings, topics: list[str] | None) -> list[str]:
    return topics or [config.topic(stream) for stream in Stream]


@app.command()
def tail(
    topic: Annotated[list[str] | None, typer.Option("--topic", "-t", help="Topic to read (repeatable; default: all).")] = None,
    event_type: Annotated[list[str] | None, typer.Option("--type", help="Only this event type (repeatable).")] = None,
    sku: Annotated[str | None, typer.Option(help="Only events about this SKU.")] = None,
    order: Annotated[str | None, typer.Option(help="Only events about this order id.")] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the first event, not at the end.")] = False,
    follow: Annotated[bool, typer.Option("--follow/--no-follow", help="Keep printing new events, or stop at the end.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Follow the event streams live, one line per event, without joining any consumer group.
    Without --from-beginning it starts at the end (with --no-follow it then shows everything)."""
    config = settings()
    selected = RecordFilter(frozenset(event_type or ()), sku, order)

    def show(record: StreamRecord) -> None:
        if selected(record):
            print_json(record.as_json()) if as_json else console.print(record_line(record))

    async def work() -> None:
        async with reading(config.kafka_bootstrap_servers, stream_topics(config, topic)) as reader:
            if not follow:
                for record in sorted(await reader.history(), key=lambda r: (r.timestamp_ms, r.topic, r.partition, r.offset)):
                    show(record)
                return
            await reader.start_at(beginning=from_beginning)
            errors.print(f"following {len(reader.partitions)} partitions from {'the beginning' if from_beginning else 'the end'}")
            async for record in reader.follow():
                show(record)

    with contextlib.suppress(KeyboardInterrupt):
        run(work())


@app.command()
def trace(order_id: Annotated[UUID, typer.Argument(help="The order's id.")], as_json: JsonOption = False) -> None:
    """Every event about one order across all topics, as a tree of causes, with what each service
    now believes about its lines: where the order stopped."""
    config = settings()

    async def work() -> tuple[list[Any], dict[str, Any]]:
        with progress_bar() as bar:
            task = bar.add_task("reading every topic", total=None)
            async with reading(config.kafka_bootstrap_servers, config.all_topics()) as reader:
                records = await reader.history(progress=lambda done, total: bar.update(task, completed=done, total=total))
        return order_trace(records, str(order_id)), await order_beliefs(config, order_id)

    roots, beliefs = run(work())
    if not roots:
        if as_json:
            print_json({"order_id": str(order_id), "events": [], "services": beliefs})
        fail(f"no event about order {order_id} on any topic", EXIT_NOT_FOUND)
    if as_json:
        print_json({"order_id": str(order_id), "events": trace_json(roots), "services": beliefs})
        return
    tree = Tree(f"[bold]order {order_id}[/bold]")
    branches: list[Tree] = [tree]
    for depth, node in walk(roots):
        del branches[depth + 1 :]
        label = record_line(node.record) + (f" [dim]({node.record.producer})[/dim]" if node.record.producer else "")
        if not node.about_order:
            label = f"[dim]cause:[/dim] {label}"
        if node.copies > 1:
            label += f" [dim]x{node.copies} copies[/dim]"
        for letter in node.dead_letters:
            label += f"\n[bold red]dead-lettered by {letter['consumer']}:[/bold red] {letter['reason']}"
        branches.append(branches[depth].add(label))
    console.print(tree)
    for service, belief in beliefs.items():
        console.print(rows_table(f"{service} believes", belief.get("lines", []), belief.get("error")))
    notifications = beliefs.get("notifier", {}).get("notifications")
    if notifications:
        console.print(rows_table("messages to the customer", notifications))


def rows_table(title: str, rows: list[dict[str, Any]], error: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    if error:
        table.add_column("unreadable")
        table.add_row(f"[red]{error}[/red]")
        return table
    columns = list(rows[0]) if rows else ["(no rows)"]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    return table


def service_get(service: str, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
    response = httpx.get(f"{settings().service_url(service)}{path}", params=params, timeout=10)
    if response.status_code == 404:
        fail(f"{service}: {response.json().get('detail', 'not found')}", EXIT_NOT_FOUND)
    if response.status_code >= 400:
        fail(f"{service} answered {response.status_code}: {response.text[:300]}", EXIT_UNREACHABLE)
    return response


def http(call: Callable[[], T]) -> T:
    try:
        return call()
    except httpx.HTTPError as error:
        fail(f"cannot reach the service: {error}", EXIT_UNREACHABLE)


@app.command()
def book(sku: Annotated[str | None, typer.Argument(help="One SKU (default: all).")] = None, as_json: JsonOption = False) -> None:
    """The backorder book: each SKU's queue in serving order with promised dates and the purchase
    orders that cover them, and its statistics."""
    params = {"sku": sku} if sku else {}
    page = http(lambda: service_get("allocator", "/v1/backorders", {**params, "limit": 1000}).json())
    stats = http(lambda: service_get("allocator", "/v1/backorders/stats", params).json())
    if as_json:
        print_json({"backorders": page, "stats": stats})
        return
    queue = Table(title=f"backorder book{f' of {sku}' if sku else ''} ({page['total']} lines waiting)", title_justify="left")
    for column in ("sku", "#", "order", "line", "waiting", "allocated", "tier", "promised", "covered by", "age"):
        queue.add_column(column)
    for item in page["items"]:
        queue.add_row(
            item["sku"], str(item["position"]), item["order_id"], str(item["line_no"]), str(item["qty_waiting"]),
            str(item["qty_allocated"]), item["tier"], item["promised_date"] or "[yellow]no date[/yellow]",
            ", ".join(item.get("covering_purchase_orders") or []) or "-", age(item["age_seconds"]),
        )
    console.print(queue)
    supply = page.get("supply") or []
    if supply:
        console.print(rows_table("open purchase orders", supply))
    console.print(rows_table("statistics", stats["items"]))


@app.command()
def stock(sku: Annotated[str, typer.Argument(help="The SKU.")], as_json: JsonOption = False) -> None:
    """A SKU's stock: on hand, reserved, available, backordered, its policy and availability."""
    level = http(lambda: service_get("inventory", f"/v1/stock/{sku}").json())
    availability = http(lambda: service_get("inventory", f"/v1/availability/{sku}").json())
    if as_json:
        print_json({"stock": level, "availability": availability})
        return
    table = Table(title=f"stock of {sku}", title_justify="left", show_header=False)
    for name, value in {**level, **{f"availability.{k}": v for k, v in availability.items()}}.items():
        table.add_row(name, str(value))
    console.print(table)


@app.command()
def lag(
    as_json: JsonOption = False, every: Annotated[bool, typer.Option("--all", help="Show lag-free partitions too.")] = False
) -> None:
    """Per consumer group and partition: committed offset, highwater, lag and the age of the oldest
    event not consumed; per service: outbox rows not yet published and the oldest one's age."""
    report: LagReport = run(lag_report(settings()))
    if as_json:
        print_json(report.as_json())
        return
    table = Table(title=f"consumer lag (total {report.total_lag})", title_justify="left")
    for column in ("group", "topic", "partition", "committed", "highwater", "lag", "oldest waiting"):
        table.add_column(column)
    for p in report.partitions:
        if p.lag or every:
            style = "bold red" if p.lag else ""
            table.add_row(p.group, p.topic, str(p.partition), str(p.committed), str(p.highwater), f"[{style}]{p.lag}[/{style}]"
                          if style else str(p.lag), age(p.oldest_age_s))
    console.print(table)
    console.print(", ".join(f"{group}: {total}" for group, total in report.by_group().items()))
    outboxes = Table(title="outbox backlog", title_justify="left")
    for column in ("service", "unsent", "oldest unsent"):
        outboxes.add_column(column)
    for backlog in report.outboxes:
        outboxes.add_row(backlog.service, backlog.error or str(backlog.unsent), age(backlog.oldest_age_s))
    console.print(outboxes)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172_800 else f"{seconds / 86_400:.1f} d"


TopicOption = Annotated[str | None, typer.Option("--topic", "-t", help="One source topic (or its .dlq).")]
IdOption = Annotated[list[str] | None, typer.Option("--id", help="A dead letter's event id (repeatable).")]


def read_letters(topic: str | None) -> list[DeadLetter]:
    async def work() -> list[DeadLetter]:
        with progress_bar() as bar:
            task = bar.add_task("reading dead letters", total=None)
            return await dead_letters(settings(), topic, lambda done, total: bar.update(task, completed=done, total=total))

    return run(work())


@dlq_app.command("list")
def dlq_list(topic: TopicOption = None, as_json: JsonOption = False) -> None:
    """Every dead letter with its reason, oldest first."""
    letters = read_letters(topic)
    if as_json:
        print_json([letter.as_json() for letter in letters])
        return
    table = Table(title=f"{len(letters)} dead letters", title_justify="left")
    for column in ("parked at", "dead letter", "type", "event id", "consumer", "reason"):
        table.add_column(column)
    for letter in letters:
        record = letter.record
        table.add_row(record.time.strftime("%Y-%m-%d %H:%M:%S"), record.address, record.event_type,
                      record.event_id or "-", letter.consumer, letter.reason)
    console.print(table)


@dlq_app.command("show")
def dlq_show(event_id: Annotated[str, typer.Option("--id", help="Its event id.")], topic: TopicOption = None) -> None:
    """One dead letter in full: reason, where it came from, headers and envelope (JSON)."""
    letters = select(read_letters(topic), [event_id])
    if not letters:
        fail(f"no dead letter with event id {event_id}", EXIT_NOT_FOUND)
    print_json([{**letter.as_json(), "headers": letter.record.headers} for letter in letters])


@dlq_app.command("replay")
def dlq_replay(
    topic: TopicOption = None, event_ids: IdOption = None,
    every: Annotated[bool, typer.Option("--all", help="Replay every dead letter (of --topic, if given).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Republish dead letters to their source topic, once their cause is fixed. Repeating a replay
    is harmless: consumers that applied an event skip it by its id."""
    if not event_ids and not every:
        fail("name the dead letters with --id EVENT_ID (repeatable) or replay them all with --all", 2)
    letters = select(read_letters(topic), event_ids or [])
    missing = sorted(set(event_ids or []) - {letter.record.event_id for letter in letters})
    if missing:
        fail(f"no dead letter with event id {', '.join(missing)}", EXIT_NOT_FOUND)

    async def work() -> list[Any]:
        with progress_bar() as bar:
            task = bar.add_task("replaying", total=len(letters))
            return await replay(settings(), letters, lambda done, total: bar.update(task, completed=done))

    done = run(work())
    if as_json:
        print_json([replayed.as_json() for replayed in done])
        return
    for replayed in done:
        record = replayed.letter.record
        console.print(f"replayed {record.event_type} {record.event_id} from {record.address} to {replayed.sent_to}"
                      f" (parked by {replayed.letter.consumer}: {replayed.letter.reason})")
    console.print(f"{len(done)} dead letters replayed")


def main() -> None:
    # The clients' own records (a reconnect attempt, ...) are noise to a person at a terminal: a
    # failure is told once, by `fail`, with what to do.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    app()


if __name__ == "__main__":
    main()

