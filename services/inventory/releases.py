"""The release clock: on a preorder SKU's release day its preordered lines are decided in the order
they were placed (see handlers.release_preorders_due). Checked every PREORDER_RELEASE_CHECK_S, so a
line is released within that long of midnight UTC of its release date, or of a date moved earlier."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.inventory import handlers
from shared.bus.failures import is_unreachable
from shared.logs import OutageTracker
from shared.service import ServiceContext

log = logging.getLogger("inventory.releases")


class PreorderReleases:
    """A worker of the inventory service (ServiceSpec.workers)."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.database = OutageTracker("preorder releases: database", log)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self.context.uow() as uow:
                    await handlers.release_preorders_due(uow)
                self.database.recovered("rounds failed")
            except Exception as error:  # keep the clock: the database is away (told once), or a bug
                if is_unreachable(error):
                    self.database.failed(error, "; preorders are released when it is back")
                else:
                    log.exception("releasing preorders failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.context.settings.preorder_release_check_s)
