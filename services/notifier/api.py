"""Notifier HTTP API: read the contact the notifier will use for an order."""

from uuid import UUID

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from services.notifier.tables import CustomerContact
from shared.service import Context

router = APIRouter(prefix="/v1", tags=["contacts"])


class ContactRead(BaseModel):
    order_id: UUID
    customer_id: str
    email: str
    locale: str


@router.get("/contacts/{order_id}")
async def read_contact(order_id: UUID, context: Context) -> ContactRead:
    async with context.sessions() as session:
        contact = await session.get(CustomerContact, order_id)
    if contact is None:
        raise HTTPException(404, f"no contact known for order {order_id}")
    return ContactRead.model_validate(contact, from_attributes=True)
