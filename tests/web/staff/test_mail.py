"""Email HTML and attachments in the workspace over HTTP: the HTML served alone, sanitised
again, under its own strict CSP and only for a sandboxed frame of the workspace; remote images
only when asked; attachments downloaded, safe images inline for a preview; all of it only for
staff who may see the conversation."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from hub.app import Hub
from tests.web.staff.desk import OUTSIDER, REMOTE, Desk, add_html_mail, sign_in


async def test_the_text_part_is_the_default_and_the_html_opens_in_a_sandboxed_frame(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    mail = await add_html_mail(hub)
    await sign_in(client)
    base = f"/staff/conversations/{mail.conv}"
    page = await (await client.get(base)).text()
    assert "Hello team, the lamp is out." in page and "<iframe" not in page
    assert f'href="{base}?html={mail.message}#message-{mail.message}"' in page
    opened = await client.get(f"{base}?html={mail.message}")
    page = await opened.text()
    frame = page[page.index("<iframe"):page.index("</iframe>")]
    assert f'src="/staff/messages/{mail.message}/html"' in frame and "title=" in frame
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in frame
    assert "allow-scripts" not in page and "Load remote images" in page
    assert "frame-src 'self'" in opened.headers["Content-Security-Policy"]
    assert "script-src 'self'" in opened.headers["Content-Security-Policy"]


async def test_the_html_document_is_clean_and_strict(client: TestClient, desk: Desk,
                                                     hub: Hub) -> None:
    mail = await add_html_mail(hub)
    await sign_in(client)
    url = f"/staff/messages/{mail.message}/html"
    response = await client.get(url)
    body = await response.text()
    csp = response.headers["Content-Security-Policy"]
    assert response.status == 200 and "<b>team</b>" in body
    assert "<script" not in body and "onerror" not in body and REMOTE not in body
    assert f'src="/staff/attachments/{mail.logo}?inline=1"' in body  # cid: -> our route
    assert "default-src 'none'" in csp and "img-src 'self';" in csp and "script" not in csp
    assert "frame-ancestors 'self'" in csp and "sandbox allow-same-origin" in csp
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    images = await client.get(url + "?images=1")
    body = await images.text()
    assert f'src="http://{REMOTE}/track.png"' in body and "onerror" not in body
    assert "img-src 'self' http: https:;" in images.headers["Content-Security-Policy"]
    assert (await client.get(f"/staff/messages/{desk.conv}/html")).status == 404  # no HTML


async def test_attachments_download_and_safe_images_preview(client: TestClient, desk: Desk,
                                                            hub: Hub) -> None:
    mail = await add_html_mail(hub)
    await sign_in(client)
    page = await (await client.get(f"/staff/conversations/{mail.conv}")).text()
    assert f'<img src="/staff/attachments/{mail.photo}?inline=1"' in page
    assert f'href="/staff/attachments/{mail.page}" download' in page
    assert f'src="/staff/attachments/{mail.page}?inline=1"' not in page
    photo = await client.get(f"/staff/attachments/{mail.photo}?inline=1")
    assert photo.status == 200 and photo.headers["Content-Type"] == "image/png"
    assert photo.headers["Content-Disposition"].startswith("inline;")
    download = await client.get(f"/staff/attachments/{mail.photo}")
    assert download.headers["Content-Disposition"].startswith("attachment;")
    html = await client.get(f"/staff/attachments/{mail.page}?inline=1")
    assert html.headers["Content-Type"] == "application/octet-stream"
    assert html.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in html.headers["Content-Security-Policy"]
    assert html.headers["X-Content-Type-Options"] == "nosniff"


async def test_another_queues_mail_and_files_are_not_found(client: TestClient, desk: Desk,
                                                           hub: Hub) -> None:
    mail = await add_html_mail(hub)
    await sign_in(client, OUTSIDER)
    for path in (f"/staff/messages/{mail.message}/html",
                 f"/staff/attachments/{mail.photo}?inline=1",
                 f"/staff/attachments/{mail.page}"):
        assert (await client.get(path)).status == 404, path
    client.session.cookie_jar.clear()
    signed_out = await client.get(f"/staff/attachments/{mail.photo}", allow_redirects=False)
    assert signed_out.status == 303
