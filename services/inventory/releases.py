"""The release clock: on a preorder SKU's release day its preordered lines are decided in the order
they were placed (see handlers.release_preorders_due). Checked every PREORDER_RELEASE_CHECK_S, so a
line is released within that long of midnight UTC of its release date, or of a date moved earlier."""

from __future__ import annotations

import logging

from services.inventory import handlers
from shared.service import RoundsWorker, ServiceContext

log = logging.getLogger("inventory.releases")


class PreorderReleases(RoundsWorker):
    """A worker of the inventory service (ServiceSpec.workers)."""

    def __init__(self, context: ServiceContext) -> None:
        super().__init__("preorder releases", "preorders are released", log, context.settings.preorder_release_check_s)
        self.context = context

    async def round(self) -> bool:
        async with self.context.uow() as uow:
            await handlers.release_preorders_due(uow)
        return False
