"""Notifier event handlers: for now it learns each order's contact; the messages come with the
notifier issue."""

from sqlalchemy.dialects.postgresql import insert

from services.notifier.tables import CustomerContact
from shared.bus.consumer import Handler
from shared.bus.outbox import UnitOfWork
from shared.events import OrderPlaced


async def on_order_placed(event: OrderPlaced, uow: UnitOfWork) -> None:
    contact = {
        "order_id": event.order_id,
        "customer_id": event.customer.id,
        "email": event.customer.email,
        "locale": event.customer.locale,
    }
    await uow.session.execute(insert(CustomerContact).values(contact).on_conflict_do_nothing())


HANDLERS: dict[str, Handler] = {OrderPlaced.event_type: on_order_placed}
