"""Notifier service wiring: tells customers, in their language, what happens to their order."""

from services.notifier import api, handlers
from shared.service import ServiceSpec, create_app
from shared.settings import SUBSCRIPTIONS

SPEC = ServiceSpec(
    name="notifier",
    title="Notifier",
    routers=[api.router],
    handlers=handlers.HANDLERS,
    consumes=SUBSCRIPTIONS["notifier"],
)
app = create_app(SPEC)
