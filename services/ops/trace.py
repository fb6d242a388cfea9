"""One order's history across every topic, as a tree of causes: pure, from the records a reader
fetched. An order's own events are found by its id in the payload, not by correlation id (a
receipt's BackorderAllocated and ShipmentRequested carry the receipt's); the events that caused
them (the receipt, a put-away) are kept as context, so the tree says why each step happened."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.ops.dlq import DLQ_SUFFIX
from shared.ops.records import StreamRecord


@dataclass
class TraceNode:
    record: StreamRecord
    about_order: bool  # False: a cause kept for context (a receipt, a release)
    children: list[TraceNode] = field(default_factory=list)
    dead_letters: list[dict[str, str]] = field(default_factory=list)  # consumer and reason of each parking
    copies: int = 1  # times it is on its topic (a relay republishes after a broker loss)


def order_trace(records: Iterable[StreamRecord], order_id: str) -> list[TraceNode]:
    """The roots of the order's causal tree, each level in time order."""
    nodes: dict[str, TraceNode] = {}
    parked: list[StreamRecord] = []
    for record in sorted(records, key=_when):
        event_id = record.event_id
        if event_id is None:
            continue
        if record.topic.endswith(DLQ_SUFFIX):
            parked.append(record)
        elif event_id in nodes:
            nodes[event_id].copies += 1
        else:
            nodes[event_id] = TraceNode(record, about_order=record.order_id == order_id)
    kept = {event_id for event_id, node in nodes.items() if node.about_order}
    for event_id in list(kept):  # causes, up to the first one
        cause = _cause(nodes[event_id].record, nodes)
        while cause is not None and cause not in kept:
            kept.add(cause)
            cause = _cause(nodes[cause].record, nodes)
    for record in parked:
        if record.event_id is not None and record.event_id in kept:
            consumer, reason = record.headers.get("dlq.consumer", "?"), record.headers.get("dlq.reason", "")
            nodes[record.event_id].dead_letters.append({"consumer": consumer, "reason": reason})
    roots: list[TraceNode] = []
    for event_id in sorted(kept, key=lambda e: _when(nodes[e].record)):
        node = nodes[event_id]
        parent = _cause(node.record, nodes)
        if parent is not None and parent in kept:
            nodes[parent].children.append(node)
        else:
            roots.append(node)
    return roots


def walk(roots: Iterable[TraceNode], depth: int = 0) -> Iterator[tuple[int, TraceNode]]:
    """Depth-first, causes before effects: the order a reader follows."""
    for node in roots:
        yield depth, node
        yield from walk(node.children, depth + 1)


def trace_json(roots: list[TraceNode]) -> list[dict[str, Any]]:
    return [
        {**node.record.as_json(), "depth": depth, "about_order": node.about_order, "copies": node.copies,
         "dead_letters": node.dead_letters}
        for depth, node in walk(roots)
    ]


def _cause(record: StreamRecord, nodes: dict[str, TraceNode]) -> str | None:
    """The event that caused this one, if it is on a topic: its causation id, or for a message
    (which answers several events at once) the last of the events it told about."""
    if record.causation_id is not None:
        return record.causation_id if record.causation_id in nodes else None
    told = [str(event_id) for event_id in record.payload.get("cause_event_ids") or () if str(event_id) in nodes]
    return max(told, key=lambda event_id: _when(nodes[event_id].record)) if told else None


def _when(record: StreamRecord) -> tuple[int, str, int, int]:
    return record.timestamp_ms, record.topic, record.partition, record.offset
