"""The OpenAPI document: public, 3.1, generated from the same route table the app registers, and
every reference in it resolves."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from hub.web.api import ROUTES


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


async def test_document_matches_the_registered_routes(client: TestClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    registered = set()
    for resource in client.app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter", "")
        if path.startswith("/api/v1"):
            registered |= {(route.method, path) for route in resource
                           if route.method != "HEAD"}
    assert documented == registered
    assert {(r.method, r.path) for r in ROUTES} == documented
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


async def test_document_names_the_contract_fields(client: TestClient) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    item = doc["components"]["schemas"]["ConversationItem"]["properties"]
    assert {"id", "reference", "queue", "status", "priority", "channel", "subject", "tags",
            "contact", "assignee", "created_at", "last_message_at"} <= set(item)
    reply = doc["paths"]["/api/v1/conversations/{id}/replies"]["post"]
    assert "202" in reply["responses"]
    assert doc["components"]["schemas"]["ReplyIn"]["additionalProperties"] is False
