"""The citizen pages over HTTP (SQLite and PostgreSQL): the portal and forms in the citizen's
language, a failed submit with its error summary, a submission stored once however often it is
sent, uploads judged by content, the honeypot, CSRF, the rate limit and the error pages."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient

from hub.app import Hub
from tests.web.citizen.citizen import (
    PDF,
    PNG,
    POTHOLE,
    limit_rate,
    open_form,
    post_form,
    stored,
)

ES = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}


def reference_of(location: str) -> str:
    found = re.fullmatch(r"/track/([A-Z2-9]{10})", location)
    assert found is not None, location
    return found.group(1)


async def test_the_portal_lists_the_services_in_the_citizens_language(client: TestClient) -> None:
    english = await client.get("/")
    html = await english.text()
    assert english.status == 200 and '<html lang="en">' in html
    assert 'href="/forms/pothole">Report a pothole or road damage</a>' in html
    assert html.index("/forms/pothole") < html.index("/forms/general_question")  # by `order`
    assert 'action="/track"' in html and 'href="#main"' in html
    assert 'href="/?lang=es" lang="es" hreflang="es">Español</a>' in html
    spanish = await client.get("/", headers=ES)
    html = await spanish.text()
    assert '<html lang="es">' in html and "Avisar de un bache" in html
    assert "Consultar una solicitud" in html and "Saltar al contenido principal" in html
    assert "hub_lang" not in spanish.cookies  # only a ?lang= choice is remembered
    chosen = await client.get("/?lang=es")
    assert chosen.cookies["hub_lang"].value == "es"
    later = await client.get("/")  # the cookie beats Accept-Language
    assert '<html lang="es">' in await later.text()
    assert "default-src 'self'" in english.headers["Content-Security-Policy"]


async def test_track_box_goes_to_the_tracking_page(client: TestClient) -> None:
    response = await client.get("/track", params={"reference": " abc def "},
                                allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/track/ABCDEF")


async def test_a_form_ties_labels_and_hints_to_its_inputs(client: TestClient) -> None:
    page = await client.get("/forms/pothole")
    html = await page.text()
    assert page.cookies["hub_csrf"]["httponly"]
    assert '<label for="f-where">' in html and 'id="f-where-hint"' in html
    assert 'name="where.address"' in html and 'aria-describedby="f-where-hint"' in html
    assert 'id="f-hazard" name="hazard" value="yes"' in html  # the first radio is the anchor
    assert 'type="file" accept="image/jpeg,image/png,image/webp,image/heic" multiple' in html
    assert 'name="form_token"' in html and 'name="csrf"' in html
    assert "Describe the damage (optional)" in html and "Photos (optional)</label>" in html
    spanish = await (await client.get("/forms/pothole", headers=ES)).text()
    assert "¿Dónde está el daño?" in spanish and "¿Cómo podemos responderle?" in spanish
    missing = await client.get("/forms/no-such-form")
    assert missing.status == 404 and "Page not found" in await missing.text()


async def test_a_failed_submit_shows_the_errors_and_keeps_the_input(client: TestClient,
                                                                    hub: Hub) -> None:
    response = await post_form(client, {"description": "<b>kept</b>", "size": "small",
                                        "email": "not-an-email"})
    html = await response.text()
    assert response.status == 400
    assert "<title>Error: Report a pothole" in html
    start = html.index('class="error-summary"')
    summary = html[start:html.index("</ul>", start)]
    assert 'role="alert"' in summary and "autofocus" in summary
    assert re.findall(r'href="#([\w-]+)"', summary) == ["f-where", "f-hazard", "f-email"]
    assert 'id="f-hazard-error"' in html and 'aria-invalid="true"' in html
    assert "Enter an email address in the right format" in html
    assert "&lt;b&gt;kept&lt;/b&gt;</textarea>" in html and 'value="small" checked' in html
    assert 'value="not-an-email"' in html
    assert await stored(hub) == (0, 0, 0)
    spanish = await post_form(client, {}, headers=ES)
    assert "Hay un problema" in await spanish.text() and "Responda a «¿Dónde" in await spanish.text()


async def test_success_lands_on_the_tracking_page_and_a_double_submit_is_stored_once(
        client: TestClient, hub: Hub) -> None:
    tokens = await open_form(client)
    files = [("photo", "hole.png", "image/png", PNG)]
    first = await post_form(client, POTHOLE, files=files, hidden_fields=tokens)
    assert first.status == 303, await first.text()
    again = await post_form(client, POTHOLE, files=files, hidden_fields=tokens)
    assert again.headers["Location"] == first.headers["Location"]
    assert await stored(hub) == (1, 1, 1)
    reference = reference_of(first.headers["Location"])
    page = await client.get(f"/track/{reference}")
    html = await page.text()
    assert "Report a pothole or road damage" in html and "A deep hole in the bus lane" in html
    assert 'download="hole.png">hole.png</a>' in html.split("Files:", 1)[1]


@pytest.mark.parametrize(("filename", "content", "expected"), [
    ("hole.jpg", PDF, "The file hole.jpg must be one of: image/jpeg"),
    ("big.png", PNG + b"\x00" * (8 * 1024 * 1024), "The file big.png must be smaller than 8 MB"),
])
async def test_a_bad_upload_is_a_field_error_and_nothing_is_stored(
        client: TestClient, hub: Hub, filename: str, content: bytes, expected: str) -> None:
    response = await post_form(client, POTHOLE, files=[("photo", filename, "image/png",
                                                        content)])
    html = await response.text()
    assert response.status == 400 and expected in html
    assert 'href="#f-photo"' in html and 'id="f-photo-error"' in html
    assert await stored(hub) == (0, 0, 0)


async def test_a_body_past_the_forms_own_limit_is_refused(client: TestClient, hub: Hub) -> None:
    huge = [("photo", f"p{i}.png", "image/png", PNG + b"\x00" * (9 * 1024 * 1024))
            for i in range(3)]
    response = await post_form(client, POTHOLE, files=huge)
    assert response.status == 413 and "too large" in await response.text()
    assert await stored(hub) == (0, 0, 0)


async def test_an_unreadable_body_is_a_friendly_400(client: TestClient, hub: Hub) -> None:
    for content_type, body in (("multipart/form-data", b"--x\r\n"),
                               ("multipart/form-data; boundary=zz", b"garbage"),
                               ("text/plain", b"hello")):
        response = await client.post("/forms/pothole", data=body,
                                     headers={"Content-Type": content_type})
        html = await response.text()
        assert response.status == (415 if content_type == "text/plain" else 400), content_type
        assert "Traceback" not in html and "<html lang=" in html
    assert await stored(hub) == (0, 0, 0)


async def test_a_filled_honeypot_is_thanked_and_forgotten(client: TestClient, hub: Hub) -> None:
    response = await post_form(client, {**POTHOLE, "website": "http://spam.example"})
    assert response.status == 200 and "Thank you" in await response.text()
    assert await stored(hub) == (0, 0, 0)


async def test_a_post_without_its_csrf_token_is_refused(client: TestClient, hub: Hub) -> None:
    tokens = await open_form(client)
    for sent in ({"form_token": tokens["form_token"]},
                 {"form_token": tokens["form_token"], "csrf": "x" * 32}):
        response = await post_form(client, POTHOLE, hidden_fields=sent)
        assert response.status == 403 and "This form has expired" in await response.text()
    client.session.cookie_jar.clear()  # the hidden field without its cookie
    response = await post_form(client, POTHOLE, hidden_fields=tokens)
    assert response.status == 403
    assert await stored(hub) == (0, 0, 0)


async def test_the_rate_limit_is_a_polite_429(client: TestClient, hub: Hub) -> None:
    limit_rate(client, 2)
    statuses = [(await post_form(client, {})).status for _ in range(3)]
    assert statuses == [400, 400, 429]
    response = await client.get("/track/ABCDEFGHJK", headers=ES)
    html = await response.text()
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    assert "Demasiadas solicitudes" in html and '<html lang="es">' in html


async def test_error_pages_are_friendly_and_tell_nothing(client: TestClient,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    missing = await client.get("/no-such-page", headers=ES)
    html = await missing.text()
    assert missing.status == 404 and "No se encuentra la página" in html
    assert "text/html" in missing.headers["Content-Type"]

    def broken(_rules: object) -> None:
        raise RuntimeError("the hub's own bug")

    monkeypatch.setattr("hub.web.citizen.pages.live_forms", broken)
    failed = await client.get("/")
    html = await failed.text()
    assert failed.status == 500 and "Sorry, there is a problem with the service" in html
    assert "Traceback" not in html and "own bug" not in html
    api = await client.get("/api/v1/no-such-thing")
    assert api.content_type == "application/json"  # the API keeps its JSON errors
