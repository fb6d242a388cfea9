"""Inventory's rules, pure (no database, framework or broker): `stock` for what lines get and how
units move between buckets, `supply` for purchase orders, receipts, availability and buying."""
