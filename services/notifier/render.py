"""Turns a composed Message into the subject, plain text and HTML of the email, from the Jinja templates of its language."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton
from babel.numbers import format_decimal, format_percent
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from services.notifier.domain import Message, language_of

TEMPLATE_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@pass_context
def _day(context: Context, value: date) -> str:
    """Day and month name in the message's language; the year too when it is not the year the message
    is sent (a page gives `today` itself)."""
    today = context.get("today") or context["message"].today
    return _format_day(value, value.year == today.year, context["locale"])


@lru_cache(maxsize=4096)
def _format_day(value: date, this_year: bool, locale: str) -> str:
    """Cached: Babel resolves the skeleton and the locale's patterns on every call."""
    return str(format_skeleton("dMMMM" if this_year else "yMMMMd", value, locale=locale))


@pass_context
def _number(context: Context, value: float) -> str:
    return _format_number(value, context["locale"])


@lru_cache(maxsize=4096)
def _format_number(value: float, locale: str) -> str:
    """Cached: quantities repeat (1, 2, 3 units), and Babel parses the locale's pattern every call."""
    return str(format_decimal(value, locale=locale))


@pass_context
def _percent(context: Context, value: float) -> str:
    """A whole percentage: 15 is "15%" in English, "15 %" in German."""
    return format_percent(value / 100, locale=context["locale"])


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates change with a deploy, not while running: no stat() per render
    )
    env.filters.update(day=_day, number=_number, percent=_percent)
    return env


def template_names(language: str) -> set[str]:
    return {path.name for path in (TEMPLATE_DIR / language).iterdir() if path.is_file()}


def babel_locale(locale: str, language: str) -> str:
    """The customer's own locale for dates and numbers (en-GB: "12 December") when it is a variant
    of the language we write in and Babel knows it; otherwise the language's default."""
    return _babel_locale(locale, language)


@lru_cache(maxsize=1024)
def _babel_locale(locale: str, language: str) -> str:
    candidate = locale.replace("-", "_")
    if candidate.split("_")[0].lower() != language:
        return language
    try:
        return str(Locale.parse(candidate))
    except (ValueError, UnknownLocaleError):
        return language


def render(message: Message) -> Rendered:
    """The templates see `message`, `language` and (the layouts) `subject`; see templates/en for the wording."""
    env, language = environment(), language_of(message.language)
    context = {"message": message, "language": language, "locale": babel_locale(message.locale, language)}
    subject = " ".join(env.get_template(f"{language}/{message.kind}.subject.txt").render(context).split())
    text = env.get_template(f"{language}/layout.txt").render(context, subject=subject)
    html = env.get_template(f"{language}/layout.html").render(context, subject=subject)
    return Rendered(subject, re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", html)
