"""Orders service wiring: takes orders from platforms and follows every line to the shipping dock."""

from services.orders import api, handlers
from shared.service import ServiceSpec, create_app
from shared.settings import SUBSCRIPTIONS

SPEC = ServiceSpec(
    name="orders",
    title="Orders",
    routers=[api.router],
    handlers=handlers.HANDLERS,
    consumes=SUBSCRIPTIONS["orders"],
)
app = create_app(SPEC)
