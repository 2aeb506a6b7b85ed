"""A citizen's submission checked against a shipped form: clean values or errors per field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.forms.schema import Form
from hub.forms.submit import BadToken, to_inbound
from hub.forms.validate import validate_submission
from hub.routing.loader import load_rules

SHIPPED = Path(__file__).resolve().parents[3] / "routing_rules"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def forms() -> dict[str, Form]:
    return load_rules(SHIPPED).forms


def test_errors_name_each_field_in_both_languages(forms: dict[str, Form]) -> None:
    checked = validate_submission(forms["missed_collection"], {
        "address": "x" * 201, "bins": ["household", "compost"],
        "collection_date": "2025-02-30", "email": "not-an-email", "phone": "12",
    })
    assert not checked.ok and checked.clean is None
    codes = {(e.field, e.code) for e in checked.errors}
    assert codes == {("address", "too_long"), ("bins", "not_a_choice"),
                     ("collection_date", "bad_date"), ("email", "bad_email"),
                     ("phone", "bad_phone")}
    by_field = {e.field: e for e in checked.errors}
    assert by_field["address"].message("en") == "Address of the collection must be 200 " \
        "characters or fewer"
    assert by_field["address"].message("es").startswith("Dirección de la recogida debe tener")
    assert set(by_field["bins"].messages()) == {"en", "es"}


def test_required_fields_and_contact(forms: dict[str, Form]) -> None:
    checked = validate_submission(forms["pothole"], {"description": "big hole"})
    assert {(e.field, e.code) for e in checked.errors} == {
        ("where", "required"), ("hazard", "required"), ("email", "contact_required")}
    permit = validate_submission(forms["permit_enquiry"], {
        "permit_type": "event", "description": "When?", "phone": "+12125550123"})
    assert [(e.field, e.code) for e in permit.errors] == [("email", "enter")]  # email required
    assert permit.errors[0].message("es") == "Indique su correo electrónico"


def test_clean_values_are_normalised(forms: dict[str, Form]) -> None:
    checked = validate_submission(forms["missed_collection"], {
        "address": " 12 Elm St ", "bins": ["recycling", "garden", "recycling"],
        "collection_date": "2025-03-27", "email": "Jane@Example.org", "phone": "(212) 555-0123",
        "name": "Jane Roe",
    })
    assert checked.ok and checked.clean is not None
    clean = checked.clean
    assert clean.values == {"address": "12 Elm St", "bins": ["recycling", "garden"],
                            "collection_date": "2025-03-27"}
    assert (clean.email, clean.phone, clean.name) == ("jane@example.org", "+12125550123",
                                                      "Jane Roe")


def test_location_by_pin_or_by_address(forms: dict[str, Form]) -> None:
    form = forms["pothole"]
    pin = validate_submission(form, {"where": {"lat": "40.71", "long": "-74.0"},
                                     "hazard": "no", "email": "a@b.org"})
    assert pin.clean is not None and pin.clean.values["where"] == {"lat": 40.71, "long": -74.0}
    typed = validate_submission(form, {"where": "5th Av and Pine", "hazard": "no",
                                       "email": "a@b.org"})
    assert typed.clean is not None and typed.clean.values["where"] == {"address": "5th Av and Pine"}
    off_map = validate_submission(form, {"where": {"lat": "91", "long": "0"}, "hazard": "no",
                                         "email": "a@b.org"})
    assert [(e.field, e.code) for e in off_map.errors] == [("where", "bad_location")]


def test_uploads_are_judged_by_content_not_name(forms: dict[str, Form]) -> None:
    form = forms["pothole"]
    base = {"where": "Elm St", "hazard": "yes", "email": "a@b.org"}
    renamed = validate_submission(form, base, {"photo": [("photo.exe", "application/x-foo", JPEG)]})
    assert renamed.clean is not None
    (upload,) = renamed.clean.uploads["photo"]
    assert (upload.filename, upload.content_type) == ("photo.exe", "image/jpeg")
    disguised = validate_submission(form, base, {"photo": [("photo.jpg", "image/jpeg", PDF)]})
    assert [(e.field, e.code) for e in disguised.errors] == [("photo", "wrong_type")]
    assert "photo.jpg" in disguised.errors[0].message("en")
    big = JPEG + b"\x00" * (8 * 1024 * 1024)
    too_big = validate_submission(form, base, {"photo": [("big.jpg", "image/jpeg", big)]})
    assert [(e.field, e.code) for e in too_big.errors] == [("photo", "too_large")]
    assert "8 MB" in too_big.errors[0].message("en")
    four = [(f"p{i}.png", "image/png", PNG) for i in range(4)]
    assert [e.code for e in validate_submission(form, base, {"photo": four}).errors] == [
        "too_many_files"]


def test_a_submission_becomes_a_webform_message(forms: dict[str, Form]) -> None:
    form = forms["pothole"]
    checked = validate_submission(form, {
        "where": {"lat": "40.71", "long": "-74", "address": "12 Elm St"}, "hazard": "yes",
        "size": "large", "description": "Deep hole", "email": "jane@example.org",
        "phone": "+12125550123", "name": "Jane"}, {"photo": [("hole.png", "image/png", PNG)]})
    assert checked.clean is not None
    msg = to_inbound(checked.clean, token="tok-12345678", language="es")
    assert (msg.channel, msg.provider_id, msg.sender) == (
        "webform", "form:pothole:tok-12345678", "jane@example.org")
    assert set(msg.extra_identities) == {("email", "jane@example.org"), ("sms", "+12125550123"),
                                         ("webform", "+12125550123")}
    assert msg.meta["form"] == {"id": "pothole", "fields": {
        "where": {"address": "12 Elm St", "lat": 40.71, "long": -74.0}, "hazard": "yes",
        "size": "large", "description": "Deep hole", "photo": ["hole.png"]}}
    assert msg.meta["location"]["lat"] == 40.71 and msg.inbox_queue == "roads"
    assert msg.subject == "Avisar de un bache o un daño en la calzada"
    assert "¿Es peligroso ahora mismo?: Sí, podría causar un accidente" in msg.text
    assert [(a.filename, a.content_type) for a in msg.attachments] == [("hole.png", "image/png")]
    with pytest.raises(BadToken):
        to_inbound(checked.clean, token="short", language="en")
