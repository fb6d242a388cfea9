"""The notifier's templates: every kind in every language, translated, localised and escaped."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from html import unescape
from typing import Any
from uuid import UUID

import pytest

from services.notifier.domain import LANGUAGES, Consolation, Item, Kind, LineView, Message, Section
from services.notifier.render import Rendered, render, template_names

TODAY = date(2026, 11, 20)
ORDER_ID = UUID("00000000-0000-0000-0000-000000000001")
TRANSLATED = [language for language in LANGUAGES if language != "en"]


def waiting_line(sku: str = "LAMP-7", qty: int = 3, promised: date | None = date(2026, 12, 12), line_no: int = 2) -> LineView:
    days_left = None if promised is None else max((promised - TODAY).days, 0)
    return LineView(line_no, sku, qty, qty_now=1, qty_waiting=qty - 1, promised_date=promised, days_left=days_left)


def section(kind: Kind, sku: str = "LAMP-7", promised: date | None = date(2026, 12, 12)) -> Section:
    """A section of each kind with every part it can have filled in."""
    waiting = (waiting_line(sku, promised=promised), waiting_line("DESK-1", 5, None, 3))
    if kind is Kind.CONFIRMATION:
        lines = (
            LineView(1, "CHAIR-2", 4, qty_now=4),
            waiting_line(sku, promised=promised),
            waiting_line("DESK-1", 5, None, 3),
            LineView(4, "SOFA-9", 1, qty_rejected=1, rejected_reason="discontinued"),
            LineView(5, "RUG-3", 2, qty_rejected=2, rejected_reason="not_backorderable"),
            LineView(6, "VASE-5", 6, qty_rejected=6, rejected_reason="backorder_limit"),
            LineView(7, "GHOST-0", 1, qty_rejected=1, rejected_reason="unknown_sku"),
            LineView(8, "ODD-4", 1, qty_rejected=1, rejected_reason="warehouse_on_fire"),
            LineView(9, "BED-6", 3, qty_now=1, qty_cancelled=2),
        )
        return Section(kind, lines=lines)
    if kind is Kind.DELAY:
        return Section(kind, lines=(waiting_line(sku, promised=promised),), previous_date=date(2026, 12, 1), new_date=promised,
                       consolation=Consolation("discount", "SORRY15", 15))
    if kind is Kind.GOOD_NEWS:
        return Section(kind, lines=(waiting_line(sku, promised=promised),), previous_date=date(2027, 1, 8), new_date=promised)
    if kind is Kind.STILL_WAITING:
        update = (waiting_line(sku, promised=promised), waiting_line("DESK-1", 5, None, 3), waiting_line("CHAIR-2", 2, TODAY, 1),
                  waiting_line("BED-6", 2, date(2026, 11, 21), 9))
        return Section(kind, lines=update)
    return Section(kind, items=(Item(1, "CHAIR-2", 4), Item(9, "BED-6", 1)), waiting=waiting)


def message(language: str, *sections: Section, external_id: str = "A-10042") -> Message:
    return Message(ORDER_ID, external_id, "customer-1", language, "Nordic Home", sections, TODAY)


def rendered(language: str, kind: Kind, **kwargs: Any) -> Rendered:
    return render(message(language, section(kind, **kwargs)))


def visible(html: str) -> str:
    """What a reader sees of the HTML part: the markup and the head removed, entities decoded."""
    body = re.sub(r"(?s)<head>.*?</head>", "", html)
    return unescape(re.sub(r"<[^>]+>", " ", body))


TAG = re.compile(r"</?[a-zA-Z!][^>]*>")

# Phrases of the English templates that must not survive in a translation.
ENGLISH = {
    Kind.CONFIRMATION: ("Thank you for your order", "ships now", "on backorder", "cannot be supplied"),
    Kind.DELAY: ("We are sorry", "rather not wait", "next order"),
    Kind.GOOD_NEWS: ("Good news", "sooner than expected", "new expected date"),
    Kind.READY: ("ready and will leave", "Still waiting", "expected on"),
    Kind.SHIPPED: ("on their way", "Still waiting"),
    Kind.CANCELLED: ("As requested", "charged for"),
    Kind.STILL_WAITING: ("short update", "expected in", "very soon"),
}
EVERYWHERE = ("Hello", "Kind regards", "your order", " units")


# --- the template set -----------------------------------------------------------------------------


def test_english_has_every_template() -> None:
    names = template_names("en")
    assert {"layout.txt", "layout.html"} <= names
    for kind in Kind:
        assert {f"{kind}.txt", f"{kind}.html", f"{kind}.subject.txt"} <= names


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_language_has_exactly_the_english_templates(language: str) -> None:
    names, english = template_names(language), template_names("en")
    assert not english - names, f"{language} lacks {sorted(english - names)}"
    assert not names - english, f"{language} has extra {sorted(names - english)}"


# --- every kind, every language ---------------------------------------------------------------------


def assert_well_formed(result: Rendered, language: str) -> None:
    assert result.subject and "\n" not in result.subject and result.subject == result.subject.strip()
    assert result.text.strip() and result.html.strip()
    assert not TAG.search(result.text), TAG.search(result.text)
    assert result.html.startswith("<!DOCTYPE html>") and f'<html lang="{language}">' in result.html
    assert result.html.rstrip().endswith("</html>")
    assert "A-10042" in result.text and "Nordic Home" in result.text and "A-10042" in visible(result.html)


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_kind_renders_alone(language: str, kind: Kind) -> None:
    result = rendered(language, kind)
    assert_well_formed(result, language)
    assert "A-10042" in result.subject
    assert "LAMP-7" in result.text or "CHAIR-2" in result.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_several_moments_render_as_one_message(language: str) -> None:
    singles = {kind: rendered(language, kind) for kind in Kind}
    frame = set.intersection(*(set(single.text.splitlines()) for single in singles.values()))
    together = render(message(language, *(section(kind) for kind in reversed(Kind))))
    assert_well_formed(together, language)
    assert together.subject == singles[Kind.CANCELLED].subject  # the headline names the message
    lines = together.text.splitlines()
    for kind, single in singles.items():
        body = [line for line in single.text.splitlines() if line not in frame]
        assert body and all(line in lines for line in body), kind
    for line in frame - {""}:
        assert lines.count(line) == 1, f"greeting and sign-off once: {line!r}"


def test_the_headline_decides_the_subject() -> None:
    result = render(message("en", section(Kind.STILL_WAITING), section(Kind.DELAY), section(Kind.SHIPPED)))
    assert result.subject == rendered("en", Kind.DELAY).subject


# --- translated -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("language", TRANSLATED)
def test_no_template_is_left_in_english(language: str, kind: Kind) -> None:
    english, result = rendered("en", kind), rendered(language, kind)
    assert result.subject != english.subject
    assert result.text != english.text
    for phrase in ENGLISH[kind] + EVERYWHERE:
        assert phrase in english.text, f"stale telltale {phrase!r}"
        assert phrase not in result.text, f"{language}/{kind}.txt: {phrase!r}"
        assert phrase not in visible(result.html), f"{language}/{kind}.html: {phrase!r}"


# --- localised ------------------------------------------------------------------------------------

DAY = {"en": "December 12", "de": "12. Dezember", "da": "12. december", "hu": "december 12.", "it": "12 dicembre"}
NEXT_YEAR = {"en": "January 8, 2027", "de": "8. Januar 2027", "da": "8. januar 2027", "hu": "2027. január 8.",
             "it": "8 gennaio 2027"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_dates_are_written_the_local_way(language: str) -> None:
    result = rendered(language, Kind.CONFIRMATION)
    assert DAY[language] in result.text and DAY[language] in visible(result.html)
    assert "2026" not in result.text  # this year's dates go without the year
    later = rendered(language, Kind.CONFIRMATION, promised=date(2027, 1, 8))
    assert NEXT_YEAR[language] in later.text and NEXT_YEAR[language] in visible(later.html)


DAYS = {
    "en": ("in 1 day,", "in 22 days,"),
    "de": ("in 1 Tag,", "in 22 Tagen,"),
    "da": ("om 1 dag,", "om 22 dage,"),
    "hu": ("1 nap múlva", "22 nap múlva"),  # no plural after a number in Hungarian
    "it": ("tra 1 giorno,", "tra 22 giorni,"),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_days_left_are_counted_in_the_language(language: str) -> None:
    text = rendered(language, Kind.STILL_WAITING).text
    one, many = DAYS[language]
    assert one in text and many in text


def test_numbers_are_grouped_the_local_way() -> None:
    big = Section(Kind.SHIPPED, items=(Item(1, "BOLT-1", 12500),))
    assert "12,500 units" in render(message("en", big)).text
    assert "12.500 Stück" in render(message("de", big)).text
    assert "12\xa0500 db" in render(message("hu", big)).text


# --- what the customer reads ----------------------------------------------------------------------

REASONS = ("discontinued", "not_backorderable", "backorder_limit", "unknown_sku", "warehouse_on_fire")


def rejected(language: str, reason: str) -> str:
    line = LineView(1, "SOFA-9", 2, qty_rejected=2, rejected_reason=reason)
    return render(message(language, Section(Kind.CONFIRMATION, lines=(line,)))).text


@pytest.mark.parametrize("language", LANGUAGES)
def test_rejections_are_explained_in_plain_words(language: str) -> None:
    texts = {reason: rejected(language, reason) for reason in REASONS}
    for text in texts.values():
        assert not any(code in text for code in ("not_backorderable", "backorder_limit", "unknown_sku", "warehouse_on_fire"))
    assert len(set(texts.values())) == len(REASONS)  # each known reason has its own explanation
    generic = texts["warehouse_on_fire"]
    assert all(len(text) > len(generic) for reason, text in texts.items() if reason != "warehouse_on_fire")


def test_english_rejections_read_naturally() -> None:
    assert "Unfortunately, 2 units cannot be supplied. The product has been discontinued." in rejected("en", "discontinued")
    assert "cannot be reordered" in rejected("en", "not_backorderable")
    assert "Unfortunately, 2 units cannot be supplied.\n" in rejected("en", "warehouse_on_fire")


PERCENT = {"en": "15%", "de": "15\xa0%", "da": "15\xa0%", "hu": "15%", "it": "15%"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_long_delay_offers_the_consolation(language: str) -> None:
    result = rendered(language, Kind.DELAY)
    for part in (result.text, visible(result.html)):
        assert "SORRY15" in part and PERCENT[language] in part and "Nordic Home" in part
    free = replace(section(Kind.DELAY), consolation=Consolation("free_shipping", "SHIPFREE"))
    assert "SHIPFREE" in render(message(language, free)).text
    plain = render(message(language, replace(section(Kind.DELAY), consolation=None))).text
    assert "SORRY15" not in plain and PERCENT[language] not in plain


NO_DATE = {"en": "as soon as we know", "de": "sobald wir ihn kennen", "da": "så snart vi kender den", "hu": "amint megtudjuk",
           "it": "non appena la conosceremo"}
NOT_GIVEN = {"en": "No date had been given", "de": "noch keinen Termin genannt", "da": "endnu ikke givet dig en dato",
             "hu": "még nem adtunk meg időpontot", "it": "non le avevamo comunicato alcuna data"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_date_is_said_in_words(language: str) -> None:
    for kind in (Kind.CONFIRMATION, Kind.READY, Kind.SHIPPED, Kind.CANCELLED, Kind.STILL_WAITING):
        assert NO_DATE[language] in rendered(language, kind, promised=None).text, kind
    dated = rendered(language, Kind.DELAY)
    assert NO_DATE[language] not in dated.text and NOT_GIVEN[language] not in dated.text
    lost = render(message(language, replace(section(Kind.DELAY, promised=None), previous_date=None)))
    assert NO_DATE[language] in lost.text and NOT_GIVEN[language] in lost.text
    assert NO_DATE[language] in visible(lost.html) and NOT_GIVEN[language] in visible(lost.html)


def test_nothing_waiting_says_nothing_about_waiting() -> None:
    result = render(message("en", replace(section(Kind.SHIPPED), waiting=())))
    assert "Still waiting" not in result.text and "Still waiting" not in result.html


def test_still_waiting_tells_how_soon() -> None:
    text = rendered("en", Kind.STILL_WAITING).text
    assert "- LAMP-7: 2 units, expected in 22 days, on December 12" in text
    assert "- CHAIR-2: 1 unit, expected today or very soon" in text
    assert "- DESK-1: 4 units, we do not have a date yet" in text


# --- escaping -------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_html_escapes_what_the_shop_sent(language: str) -> None:
    hostile = "<script>alert(1)</script>"
    for kind in Kind:
        result = render(message(language, section(kind, sku=hostile), external_id=hostile))
        assert "<script" not in result.html, kind
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in result.html, kind
        assert hostile in result.text  # the text part is plain text: shown as written, not run


def test_the_subject_stays_one_line() -> None:
    result = render(message("en", section(Kind.READY), external_id="A-1\r\nBcc: someone@example.com"))
    assert "\n" not in result.subject and "\r" not in result.subject
    assert result.subject == "Items from your order A-1 Bcc: someone@example.com are ready to ship"


# --- preorders: the release date, in each language -------------------------------------------------

RELEASE_WORDS = {"en": "released", "de": "erscheint", "da": "udkommer", "hu": "megjelenés", "it": "esce"}
RELEASE_NOTE = {
    "en": "release date", "de": "Erscheinungstermin", "da": "udgivelsesdato", "hu": "megjelenésének", "it": "di uscita",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_preordered_line_is_confirmed_with_its_release_date_not_as_a_backorder(language: str) -> None:
    release = date(2027, 3, 12)
    line = LineView(1, "GAME-1", 2, qty_waiting=2, promised_date=release, preorder=True)
    text = render(message(language, Section(Kind.CONFIRMATION, lines=(line,)))).text
    assert RELEASE_WORDS[language] in text and "12" in text
    backorder = render(message(language, Section(Kind.CONFIRMATION, lines=(replace(line, preorder=False),)))).text
    assert RELEASE_WORDS[language] not in backorder


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", [Kind.DELAY, Kind.GOOD_NEWS])
def test_a_moved_release_is_worded_for_a_release(language: str, kind: Kind) -> None:
    moved = section(kind)
    preorder = replace(moved, lines=tuple(replace(line, preorder=True) for line in moved.lines), consolation=None)
    result = render(message(language, preorder))
    assert RELEASE_NOTE[language] in result.text and RELEASE_NOTE[language] in result.html
    assert RELEASE_NOTE[language] not in render(message(language, moved)).text
