"""Inventory service wiring: stock per SKU, SKU policy, purchase orders and receipts intake."""

from services.inventory import api, handlers, supply_api
from shared.service import ServiceSpec, create_app

SPEC = ServiceSpec(
    name="inventory",
    title="Inventory",
    routers=[api.router, supply_api.router],
    handlers=handlers.HANDLERS,
)
app = create_app(SPEC)
