"""Notifier service wiring: tells customers, in their language, what happens to their order."""

from collections.abc import Sequence

from services.notifier import api, handlers, track_api
from services.notifier.delivery import Courier
from services.notifier.scheduler import MessageScheduler
from services.notifier.settings import get_notifier_settings
from shared.service import ServiceContext, ServiceSpec, Worker, create_app


def workers(context: ServiceContext) -> Sequence[Worker]:
    """The scheduler composes closed windows into messages and wakes the courier, which sends them."""
    settings = get_notifier_settings()
    courier = Courier(context, settings)
    return [MessageScheduler(context, settings, courier.wake), courier]


SPEC = ServiceSpec(
    name="notifier",
    title="Notifier",
    routers=[api.router, track_api.router],
    handlers=handlers.HANDLERS,
    workers=workers,
)
app = create_app(SPEC)
