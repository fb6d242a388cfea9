"""Inventory service wiring: stock per SKU, SKU policy, purchase orders and receipts intake, and
the release clock of preorders."""

from services.inventory import api, handlers, supply_api
from services.inventory.releases import PreorderReleases
from shared.service import ServiceSpec, create_app

SPEC = ServiceSpec(
    name="inventory",
    title="Inventory",
    routers=[api.router, supply_api.router],
    handlers=handlers.HANDLERS,
    workers=lambda context: [PreorderReleases(context)],
)
app = create_app(SPEC)
