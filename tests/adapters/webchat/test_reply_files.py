"""A staff reply with files on the web chat (SQLite and PostgreSQL): the visitor's pushed
`message` frame lists each file with a capability link (`/chat/api/files/{id}/{signature}`)
that serves the very bytes staff attached; a tampered link is 404."""

from __future__ import annotations

from aiohttp import FormData

from .conftest import ChatHub

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c6360000002000185d114090000000049454e44ae426082")
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


async def test_a_reply_with_files_is_pushed_with_links_to_the_same_bytes(chat: ChatHub) -> None:
    visitor = await chat.visitor()
    ack = await visitor.say("Where do I park for the town hall?")
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    data = FormData()
    data.add_field("body", "Here is the map and the rules.")
    data.add_field("attachment", PNG, filename="map.png", content_type="image/png")
    data.add_field("attachment", PDF, filename="parking rules.pdf",
                   content_type="application/pdf")
    answer = await chat.api("POST", f"/api/v1/conversations/{conversation.id}/replies",
                            data=data)
    assert answer.status == 202, await answer.text()

    pushed = await visitor.next("message")
    assert pushed["body"] == "Here is the map and the rules."
    files = pushed["attachments"]
    assert [(f["filename"], f["content_type"], f["size"]) for f in files] == [
        ("map.png", "image/png", len(PNG)), ("parking rules.pdf", "application/pdf", len(PDF))]
    for file, content in zip(files, (PNG, PDF), strict=True):
        assert file["url"].startswith("/chat/api/files/")
        served = await chat.client.get(file["url"])
        assert served.status == 200 and await served.read() == content
    tampered = files[0]["url"][:-2] + ("00" if not files[0]["url"].endswith("00") else "11")
    assert (await chat.client.get(tampered)).status == 404
