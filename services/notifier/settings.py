"""The notifier's own settings (environment variables of the same names): how it sends, how often it
speaks, and what it offers for a long delay."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.notifier.domain import NoticePolicy, RetryPolicy


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    # Email over SMTP (aiosmtplib). `make run` starts a local sink on 127.0.0.1:2525.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_connections: int = Field(default=8, ge=1)  # kept open and reused
    mail_from: str = "Backorder notifications <notifications@backorder.invalid>"
    # The right-hand side of every Message-ID (`<notification id@domain>`).
    mail_message_id_domain: str = "backorder.invalid"

    # Events of one order within this window become one message.
    notify_coalesce_window_s: float = Field(default=2.0, ge=0)
    # A delay that puts a promise more than this many days past the line's first promise carries a
    # consolation, once per line.
    notify_consolation_after_days: int = Field(default=7, ge=0)
    notify_consolation_kind: Literal["discount", "free_shipping"] = "discount"
    notify_consolation_percent: int = Field(default=10, ge=1, le=100)
    # A date moving earlier by at least this many days is good news.
    notify_good_news_min_days: int = Field(default=1, ge=1)
    # While a line waits: at most one update per order in this many days (fractions for tests).
    notify_still_waiting_every_days: float = Field(default=7.0, gt=0)
    # How often the scheduler looks for closed windows and due updates.
    notify_poll_interval_s: float = Field(default=0.1, gt=0)

    # Delivery: attempts with exponential backoff and jitter for transient failures.
    delivery_max_attempts: int = Field(default=6, ge=1)
    delivery_backoff_s: float = Field(default=2.0, gt=0)
    delivery_backoff_max_s: float = Field(default=300.0, gt=0)
    delivery_concurrency: int = Field(default=64, ge=1)  # messages in flight, all destinations
    delivery_per_destination: int = Field(default=16, ge=1)  # in flight to one webhook host or the SMTP server
    delivery_timeout_s: float = Field(default=10.0, gt=0)
    # A claimed message not recorded within this long (its sender crashed) is sent again, same id.
    delivery_lease_s: float = Field(default=60.0, gt=0)

    def notice_policy(self) -> NoticePolicy:
        return NoticePolicy(self.notify_consolation_after_days, self.notify_good_news_min_days)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.delivery_max_attempts, self.delivery_backoff_s, self.delivery_backoff_max_s)


@lru_cache
def get_notifier_settings() -> NotifierSettings:
    return NotifierSettings()
