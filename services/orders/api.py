"""Orders HTTP API: platforms place, read and cancel orders; the warehouse confirms shipments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Header, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from services.orders import handlers, views
from services.orders.book import with_places_in_book
from services.orders.domain import LineState
from services.orders.handlers import Conflict, NotFound
from services.orders.schemas import CancelRequest, OrderCreate, OrderList, OrderRead, ShipmentConfirm, ShipmentList, ShipmentRead
from shared.links import tracking_url
from shared.problems import Responses, problems
from shared.service import Context

router = APIRouter(prefix="/v1", tags=["orders"])

REPLAYED = {"Idempotent-Replayed": "true"}
LineNo = Annotated[int, Path(ge=1, le=1_000_000, description="1-based line number")]
IdempotencyKey = Annotated[
    str | None, Header(min_length=1, max_length=255, description="replays the first response for a repeated request")
]
NO_ORDER = {404: "No order with this id"}
CANCEL_PROBLEMS = problems({404: "No order with this id, or no such line", 409: "Nothing left to cancel"}, body=True)
REPLAYED_HEADER = {"Idempotent-Replayed": {"description": "`true` on a replay", "schema": {"type": "string", "enum": ["true"]}}}
PLACED: Responses = {
    200: {"description": "Replay of the first response", "model": OrderRead, "headers": REPLAYED_HEADER},
    201: {"description": "Placed", "headers": {"Location": {"description": "the order's URL", "schema": {"type": "string"}}}},
}


@router.post(
    "/orders", status_code=201, response_model=OrderRead,
    responses=PLACED | problems({409: "This Idempotency-Key, or channel + external_id, was used with another body"}, body=True),
)
async def place_order(body: OrderCreate, context: Context, idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Place an order: 201 and OrderPlaced. The same Idempotency-Key, or the same channel and
    external_id, replays the first response with 200 and `Idempotent-Replayed: true`; the same
    identity with a different body is a 409."""
    try:
        async with context.uow() as uow:
            placement = await handlers.place_order(uow, body, idempotency_key)
    except Conflict as error:
        raise HTTPException(409, str(error)) from error
    if placement.replayed:
        return JSONResponse(placement.response, status_code=200, headers=REPLAYED)
    return JSONResponse(placement.response, status_code=201, headers={"Location": f"/v1/orders/{placement.response['id']}"})


@router.get("/orders", responses=problems())
async def list_orders(
    context: Context,
    status: Annotated[LineState | None, Query(description="only orders with at least one line in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2_000_000_000)] = 0,
) -> OrderList:
    async with context.sessions() as session:
        orders = await views.list_orders(session, status, limit, offset)
    return OrderList(orders=orders, limit=limit, offset=offset)


@router.get("/orders/{order_id}", responses=problems(NO_ORDER))
async def read_order(order_id: UUID, context: Context) -> OrderRead:
    """Every line with its state and quantities, the dates it was promised, and for a waiting line
    its place in the backorder book and the purchase orders coming to it."""
    async with context.sessions() as session:
        order = await views.read_order(session, order_id)
    if order is None:
        raise HTTPException(404, f"no order {order_id}")
    order.tracking_url = tracking_url(context.settings, order.id, datetime.now(UTC))
    return await with_places_in_book(order, context.settings)


@router.post("/orders/{order_id}/cancel", responses=CANCEL_PROBLEMS)
async def cancel_order(order_id: UUID, context: Context, body: Annotated[CancelRequest | None, Body()] = None) -> OrderRead:
    """Cancel everything not shipped on every open line; one LineCancelled per line."""
    return await _cancel(context, order_id, None, body or CancelRequest())


@router.post("/orders/{order_id}/lines/{line_no}/cancel", responses=CANCEL_PROBLEMS)
async def cancel_line(
    order_id: UUID, line_no: LineNo, context: Context, body: Annotated[CancelRequest | None, Body()] = None
) -> OrderRead:
    """Cancel what has not shipped of one line; 409 when nothing is left to cancel."""
    return await _cancel(context, order_id, line_no, body or CancelRequest())


async def _cancel(context: Context, order_id: UUID, line_no: int | None, body: CancelRequest) -> OrderRead:
    try:
        async with context.uow() as uow:
            await handlers.cancel(uow, order_id, line_no, body.reason)
    except NotFound as error:
        raise HTTPException(404, str(error)) from error
    except Conflict as error:
        raise HTTPException(409, str(error)) from error
    return await read_order(order_id, context)


@router.post(
    "/orders/{order_id}/shipments", response_model=ShipmentRead,
    responses={
        200: {"description": "Shipped (or a replay)", "headers": REPLAYED_HEADER},
        **problems({404: "No order with this id, or no such shipment", 409: "The shipment was withdrawn"}, body=True),
    },
)
async def confirm_shipment(order_id: UUID, body: ShipmentConfirm, context: Context) -> JSONResponse:
    """The warehouse sent a requested shipment in full: its lines ship and Shipped is emitted.
    Confirming it again replays 200 with `Idempotent-Replayed: true`."""
    try:
        async with context.uow() as uow:
            replayed = await handlers.confirm_shipment(uow, order_id, body.shipment_id, datetime.now(UTC))
    except NotFound as error:
        raise HTTPException(404, str(error)) from error
    except Conflict as error:
        raise HTTPException(409, str(error)) from error
    async with context.sessions() as session:
        shipment = await views.read_shipment(session, order_id, body.shipment_id)
    assert shipment is not None  # just confirmed in a committed transaction
    return JSONResponse(shipment.model_dump(mode="json"), headers=REPLAYED if replayed else None)


@router.get("/orders/{order_id}/shipments", responses=problems(NO_ORDER))
async def list_shipments(order_id: UUID, context: Context) -> ShipmentList:
    """Requested, confirmed and withdrawn shipments, with their lines and where each comes from."""
    async with context.sessions() as session:
        shipments = await views.list_shipments(session, order_id)
    if shipments is None:
        raise HTTPException(404, f"no order {order_id}")
    return ShipmentList(shipments=shipments)
