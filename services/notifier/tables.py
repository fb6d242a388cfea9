"""Notifier tables: what it knows about customers so later events can be told in their language."""

from datetime import datetime
from uuid import UUID

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class CustomerContact(SQLModel, table=True):
    """One row per order: who to tell and in which language (learned from OrderPlaced)."""

    __tablename__ = "customer_contact"
    order_id: UUID = Field(primary_key=True)
    customer_id: str
    email: str
    locale: str
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()))


metadata = SQLModel.metadata
