"""A message's language guessed in the spool's parse process (hub.routing.language) is what the
rules use, but only when it was guessed among the live rule set's languages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from hub.model import InboundMessage, LanguageGuess
from hub.routing import language
from hub.routing.language import of_message, parsed_with_guess, with_guess
from tests.support.adapter import inbound
from tests.unit.routing.conftest import ctx

CODES = frozenset({"en", "es"})
SPANISH = "La farola de mi calle no funciona desde ayer por la noche, y está muy oscuro."


def test_a_message_that_states_no_language_is_guessed_among_the_codes() -> None:
    assert with_guess(inbound(text=SPANISH), CODES).language_guess == LanguageGuess(CODES, "es")


def test_nothing_is_guessed_where_the_message_states_it_or_no_language_is_known() -> None:
    assert with_guess(inbound(text=SPANISH, language="en"), CODES).language_guess is None
    assert with_guess(inbound(text=SPANISH), frozenset()).language_guess is None


def test_a_guess_among_the_same_languages_stands_for_detection() -> None:
    planted = replace(inbound(text=SPANISH), language_guess=LanguageGuess(CODES, "en"))
    assert of_message(planted, CODES) == "en"  # taken as guessed: not detected again
    assert of_message(planted, frozenset({"en", "es", "fr"})) == "es"  # other set: detected


def test_the_rules_route_by_the_guess(make: Any) -> None:
    rs = make("""
        [[rule]]
        id = "spanish"
        phase = "route"
        order = 1
        when.language = "es"
        then.queue = "roads"
        """)
    assert rs.language_codes == CODES
    context = ctx("Hello, the street light outside my house has been out since Monday")
    assert rs.decide(context).queue == "general"
    guessed = replace(context.message, language_guess=LanguageGuess(CODES, "es"))
    decision = rs.decide(replace(context, message=guessed))
    assert decision.queue == "roads" and decision.language == "es"


def test_nothing_is_guessed_for_a_rule_set_that_never_asks_for_a_language(make: Any) -> None:
    assert make().language_codes == frozenset()  # languages in its templates, none asked for
    replies = make("""
        [[rule]]
        id = "hello"
        phase = "enrich"
        order = 1
        when.new_conversation = true
        then.auto_reply = { template = "hello", once_per = "24h" }
        """)
    assert replies.language_codes == CODES  # an auto-reply is written in the citizen's language


def parse(payload: bytes, envelope: Mapping[str, Any], received_at: datetime) -> InboundMessage:
    return inbound(text=payload.decode(), received_at=received_at)


def test_parsed_with_guess_parses_then_guesses() -> None:
    msg = parsed_with_guess(parse, CODES, SPANISH.encode(), {}, datetime.now().astimezone())
    assert msg.text == SPANISH and msg.language_guess == LanguageGuess(CODES, "es")


def test_a_failing_detector_leaves_the_message_unguessed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str, codes: frozenset[str]) -> str | None:
        raise RuntimeError("detector down")

    monkeypatch.setattr(language, "detect", broken)
    msg = parsed_with_guess(parse, CODES, SPANISH.encode(), {}, datetime.now().astimezone())
    assert msg.text == SPANISH and msg.language_guess is None
