"""Allocator service wiring: keeps the backorder book and serves it first from every arrival."""

from services.allocator import api, handlers, views
from shared.service import ServiceSpec, create_app

SPEC = ServiceSpec(
    name="allocator",
    title="Allocator",
    routers=[api.router],
    handlers=handlers.HANDLERS,
    backorder_book=views.book_sizes,
)
app = create_app(SPEC)
