"""What the notifier needs to tell customers: its view of each order and line, the moments waiting
for their window to close, the still-waiting schedule, consolations, channels, preferences, and
every message with its delivery attempts.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE order_state (
    order_id uuid PRIMARY KEY,
    placed boolean NOT NULL DEFAULT false,
    external_id text NOT NULL DEFAULT '',
    customer_id text NOT NULL DEFAULT '',
    locale text NOT NULL DEFAULT 'en',
    channel text NOT NULL DEFAULT '',
    confirmed_at timestamptz,
    last_message_at timestamptz
);
CREATE TABLE line_state (
    order_id uuid NOT NULL,
    line_no integer NOT NULL,
    sku text NOT NULL DEFAULT '',
    qty integer NOT NULL DEFAULT 0,
    reserved integer NOT NULL DEFAULT 0,
    short integer NOT NULL DEFAULT 0,
    rejected_reason text,
    booked boolean NOT NULL DEFAULT false,
    promised_date date,
    first_promised_date date,
    allocated integer NOT NULL DEFAULT 0,
    shipped integer NOT NULL DEFAULT 0,
    cancelled integer NOT NULL DEFAULT 0,
    consolation_offered boolean NOT NULL DEFAULT false,
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE notice (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id uuid NOT NULL,
    notice jsonb NOT NULL,
    cause_event_id uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notice_order ON notice (order_id);
CREATE TABLE notice_window (
    order_id uuid PRIMARY KEY,
    due_at timestamptz NOT NULL
);
CREATE INDEX notice_window_due ON notice_window (due_at);
CREATE TABLE still_waiting_schedule (
    order_id uuid PRIMARY KEY,
    due_at timestamptz NOT NULL
);
CREATE INDEX still_waiting_due ON still_waiting_schedule (due_at);
CREATE TABLE consolation (
    order_id uuid NOT NULL,
    line_no integer NOT NULL,
    kind text NOT NULL,
    code text NOT NULL UNIQUE,
    percent integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE channel (
    name text PRIMARY KEY,
    webhook_url text,
    webhook_secret text,
    send_email boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE customer_preference (
    customer_id text PRIMARY KEY,
    language text,
    good_news boolean NOT NULL DEFAULT true,
    still_waiting boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE notification (
    id uuid PRIMARY KEY,
    order_id uuid NOT NULL,
    customer_id text NOT NULL,
    kind text NOT NULL,
    kinds text[] NOT NULL,
    channel text NOT NULL CHECK (channel IN ('email', 'webhook')),
    destination text NOT NULL,
    recipient text NOT NULL,
    language text NOT NULL,
    subject text NOT NULL,
    body_text text NOT NULL,
    body_html text NOT NULL,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    last_error text,
    cause_event_ids uuid[] NOT NULL DEFAULT '{}',
    resend_of uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz
);
CREATE INDEX notification_due ON notification (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX notification_order ON notification (order_id, created_at);
CREATE TABLE delivery_attempt (
    notification_id uuid NOT NULL REFERENCES notification (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    outcome text NOT NULL,
    error text,
    PRIMARY KEY (notification_id, attempt)
);
"""


def upgrade() -> None:
    for statement in TABLES.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for table in ("delivery_attempt", "notification", "customer_preference", "channel", "consolation",
                  "still_waiting_schedule", "notice_window", "notice", "line_state", "order_state"):
        op.drop_table(table)
