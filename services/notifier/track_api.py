"""The customer's tracking page, `GET /track/{token}`: opened from the link in every message (and
`tracking_url` of an order), with no API key; the signed token says which order, and until when."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from services.notifier import store
from services.notifier.domain import Preferences
from services.notifier.tracking import render_refusal, render_tracking, tracking_page
from shared.book import BookUnavailable, places_in_book
from shared.links import tracked_order
from shared.service import Context
from shared.tokens import TokenRefused

router = APIRouter(tags=["tracking"])
HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
PAGES = {
    200: {**HTML, "description": "The order, line by line, in the customer's language"},
    403: {**HTML, "description": "A link that was altered, broken or made for something else"},
    404: {**HTML, "description": "A good link to an order the notifier does not know (yet)"},
    410: {**HTML, "description": "An expired link"},
}


@router.get("/track/{token}", response_class=HTMLResponse, responses=PAGES)  # type: ignore[arg-type]
async def track(
    token: Annotated[str, Path(description="the signed token of the link")], request: Request, context: Context
) -> HTMLResponse:
    """What ships, what waits until when, its place in the book, the purchase orders coming to it,
    and a timeline from ordered to shipped; a page that says why when the link cannot be used."""
    now = datetime.now(UTC)  # any token is looked at: a bad one gets the page saying so, not a JSON error
    reader = request.headers.get("accept-language", "").split(",")[0].split(";")[0].strip() or None
    try:
        order_id = tracked_order(context.settings, token, now)
    except TokenRefused as refused:
        return HTMLResponse(render_refusal(str(refused), refused.expired, reader), status_code=410 if refused.expired else 403)
    async with context.sessions() as session:
        order = await store.read_order(session, order_id)
        wishes = (await store.read_preferences(session, [order.customer_id])) if order is not None else {}
    if order is None or not order.placed:
        return HTMLResponse(render_refusal("unknown order", False, reader), status_code=404)
    try:
        book = await places_in_book(context.settings, order_id) if order.waiting_lines else {}
    except BookUnavailable:
        book = {}  # the page still tells what ships and until when; only the places are missing
    language = wishes.get(order.customer_id, Preferences()).language or order.locale
    return HTMLResponse(render_tracking(tracking_page(order, book, now.date()), language))
