"""Inventory reads: plain queries apart from the write model."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.inventory import store
from services.inventory.domain.stock import BUCKETS, SkuPolicy
from services.inventory.domain.supply import InboundSupply, PurchaseOrder, SupplyPosition
from services.inventory.schemas import StockRead

POLICY_COLUMNS = ", ".join(f"p.{name}" for name in SkuPolicy.__dataclass_fields__)
OPEN_QTY = "GREATEST(l.qty_ordered - l.qty_received, 0)"


async def stock_row(session: AsyncSession, sku: str) -> StockRead | None:
    row = (await session.execute(text(f"SELECT sku, {', '.join(BUCKETS)} FROM stock WHERE sku = :sku"), {"sku": sku})).first()
    return StockRead.model_validate(row._mapping) if row else None


async def policy(session: AsyncSession, sku: str) -> SkuPolicy | None:
    row = (await session.execute(text(f"SELECT {POLICY_COLUMNS} FROM sku_policy p WHERE p.sku = :sku"), {"sku": sku})).first()
    return SkuPolicy(**row._mapping) if row else None


async def purchase_order(session: AsyncSession, po_id: str) -> PurchaseOrder | None:
    """As the write model stores it (one loader for both, so a read never disagrees with a change)."""
    stored = await store.load_purchase_order(session, po_id)
    return stored[0] if stored else None


async def inbound_supply(session: AsyncSession, sku: str) -> list[InboundSupply]:
    """Open purchase-order quantities of one SKU."""
    rows = await session.execute(
        text(
            f"SELECT po.id, po.expected_at, {OPEN_QTY} AS qty_open FROM purchase_order_line l "
            "JOIN purchase_order po ON po.id = l.purchase_order_id "
            f"WHERE l.sku = :sku AND po.status = 'open' AND {OPEN_QTY} > 0"
        ),
        {"sku": sku},
    )
    return [InboundSupply(row.id, row.expected_at, row.qty_open) for row in rows]


async def supply_positions(session: AsyncSession) -> list[SupplyPosition]:
    """SKUs that can be bought and may need buying. The WHERE clause only narrows the scan (it is
    looser than the rule in domain.supply.suggested_qty, which decides)."""
    rows = await session.execute(
        text(
            f"SELECT {POLICY_COLUMNS}, s.available, s.backordered, COALESCE(o.on_order, 0) AS on_order "
            "FROM sku_policy p JOIN stock s ON s.sku = p.sku "
            f"LEFT JOIN (SELECT l.sku, SUM({OPEN_QTY}) AS on_order FROM purchase_order_line l "
            "  JOIN purchase_order po ON po.id = l.purchase_order_id WHERE po.status = 'open' GROUP BY l.sku) o ON o.sku = p.sku "
            "WHERE p.supplier IS NOT NULL AND s.backordered + p.safety_stock > s.available + COALESCE(o.on_order, 0) "
            "ORDER BY p.supplier, p.sku"
        )
    )
    positions = []
    for row in rows:
        values = row._mapping
        sku_policy = SkuPolicy(**{key: values[key] for key in SkuPolicy.__dataclass_fields__})
        positions.append(SupplyPosition(sku_policy, values["available"], values["backordered"], int(values["on_order"])))
    return positions
