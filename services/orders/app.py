"""Orders service wiring: takes orders from platforms and follows every line to the shipping dock."""

from services.orders import api, handlers
from shared.service import ServiceSpec, create_app

SPEC = ServiceSpec(
    name="orders",
    title="Orders",
    routers=[api.router],
    handlers=handlers.HANDLERS,
)
app = create_app(SPEC)
