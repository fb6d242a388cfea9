"""The notifier learns each order's contact (who, which language) from OrderPlaced."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from shared.events import Customer, OrderedLine, OrderPlaced
from tests.support import publish


async def test_order_placed_teaches_the_notifier_who_to_tell_in_which_language(stack, producer, notifier_api) -> None:
    event = OrderPlaced(
        order_id=uuid4(), external_id=uuid4().hex, channel="web",
        customer=Customer(id="c-42", email="marie@example.fr", locale="fr-FR"), partial_allowed=False,
        placed_at=datetime.now(UTC), lines=(OrderedLine(line_no=1, sku="N-1", qty=1),),
    )
    first = await publish(producer, stack.settings, event)
    assert first is not None
    await publish(producer, stack.settings, event, event_id=first.event_id)  # redelivered
    await stack.wait_quiescent()
    contact = (await notifier_api.get(f"/v1/contacts/{event.order_id}")).json()
    # The address stays in the notifier's database: the API shows who and which language only.
    assert contact == {"order_id": str(event.order_id), "customer_id": "c-42", "locale": "fr-FR"}


async def test_contact_lookups_with_bad_or_unknown_ids_get_problem_responses(notifier_api) -> None:
    bad = await notifier_api.get("/v1/contacts/not-a-uuid")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "path.order_id"
    unknown = await notifier_api.get(f"/v1/contacts/{uuid4()}")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
