"""The notifier's HTTP API refuses bad input with the field and the reason (problem+json), and
answers unknown ids with 404s."""

from __future__ import annotations

import base64
import os
from uuid import uuid4

import pytest

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def field_errors(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"]: e["reason"] for e in response.json()["errors"]}


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"webhook_url": "ftp://shop.example/hooks", "webhook_secret": SECRET}, "webhook_url", "http"),
        ({"webhook_url": "not a url", "webhook_secret": SECRET}, "webhook_url", "http"),
        ({"webhook_url": "https://shop.example/hooks", "webhook_secret": "whsec_"}, "webhook_secret", "empty"),
        ({"webhook_url": "https://shop.example/hooks", "webhook_secret": "whsec_%%%"}, "webhook_secret", "base64"),
        ({"webhook_url": "https://shop.example/hooks", "webhook_secret": "whsec_c2hvcnQ="}, "webhook_secret", "24 bytes"),
        ({"webhook_url": "https://shop.example/hooks"}, "webhook_secret", "required"),
        ({"send_email": "sometimes"}, "send_email", "boolean"),
        ({"webhook_url": "https://shop.example/hooks", "webhook_secret": SECRET, "colour": "red"}, "colour", "not permitted"),
    ],
)
async def test_a_bad_channel_registration_names_the_field_and_why(notifier_api, body, field, reason) -> None:
    errors = field_errors(await notifier_api.put(f"/v1/channels/shop-{uuid4().hex[:6]}", json=body))
    assert field in errors and reason in errors[field].lower(), errors


async def test_a_channel_is_registered_changed_and_read_without_its_secret(notifier_api) -> None:
    name = f"shop-{uuid4().hex[:6]}"
    assert (await notifier_api.get(f"/v1/channels/{name}")).status_code == 404
    hook = {"webhook_url": "https://shop.example/h", "webhook_secret": SECRET}
    first = await notifier_api.put(f"/v1/channels/{name}", json=hook)
    assert first.status_code == 200 and first.json()["send_email"] is True
    changed = await notifier_api.put(f"/v1/channels/{name}", json={"send_email": False})
    assert changed.json() | {"updated_at": None} == {
        "channel": name, "webhook_url": None, "has_webhook_secret": False, "send_email": False, "updated_at": None
    }
    read = (await notifier_api.get(f"/v1/channels/{name}")).json()
    assert read["send_email"] is False and SECRET not in str(read)


@pytest.mark.parametrize(
    ("body", "field"),
    [({"language": "fr"}, "language"), ({"language": ""}, "language"), ({"good_news": "no"}, "good_news"),
     ({"still_waiting": None}, "still_waiting"), ({"volume": 3}, "volume")],
)
async def test_bad_preferences_name_the_field(notifier_api, body, field) -> None:
    assert field in field_errors(await notifier_api.put(f"/v1/customers/c-{uuid4().hex[:6]}/preferences", json=body))


async def test_preferences_default_to_everything_and_are_kept(notifier_api) -> None:
    customer = f"c-{uuid4().hex[:6]}"
    default = (await notifier_api.get(f"/v1/customers/{customer}/preferences")).json()
    assert (default["language"], default["good_news"], default["still_waiting"]) == (None, True, True)
    put = await notifier_api.put(f"/v1/customers/{customer}/preferences", json={"language": "hu", "still_waiting": False})
    assert put.status_code == 200
    read = (await notifier_api.get(f"/v1/customers/{customer}/preferences")).json()
    assert (read["language"], read["good_news"], read["still_waiting"]) == ("hu", True, False)


async def test_notification_lookups_with_bad_or_unknown_ids(notifier_api) -> None:
    assert "query.status" in field_errors(await notifier_api.get("/v1/notifications", params={"status": "lost"}))
    assert "query.order_id" in field_errors(await notifier_api.get("/v1/notifications", params={"order_id": "x"}))
    assert "query.limit" in field_errors(await notifier_api.get("/v1/notifications", params={"limit": 0}))
    for response in (await notifier_api.get(f"/v1/notifications/{uuid4()}"),
                     await notifier_api.post(f"/v1/notifications/{uuid4()}/resend")):
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    assert (await notifier_api.get("/v1/notifications", params={"order_id": str(uuid4())})).json() == {"items": []}
