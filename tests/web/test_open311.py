"""Open311 GeoReport v2 against the real hub over HTTP (SQLite and PostgreSQL).

`GeoReport` below is a client written from the GeoReport v2 spec (wiki.open311.org/GeoReport_v2):
JSON resources under the endpoint, form-encoded POST with `api_key` and `attribute[code]`,
errors as `[{"code", "description"}]`. The hub runs on the shipped forms and routing rules.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import select

from hub import cli
from hub.apikeys import create_key, key_holder
from hub.app import Hub
from hub.config import Settings
from hub.storage.db import Database
from hub.storage.tables import Conversation, Message
from hub.web.app import create_app
from tests.support.adapter import RecordingAdapter
from tests.support.config_file import config_file

SHIPPED = Path(__file__).resolve().parents[2] / "routing_rules"


@dataclass
class GeoReport:
    """A GeoReport v2 client: `endpoint` is the URL discovery names, e.g. .../open311/v2."""

    http: aiohttp.ClientSession
    endpoint: str
    api_key: str = ""

    async def get(self, resource: str, **params: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.endpoint}/{resource}.json", params=params) as answer:
            return answer.status, await answer.json()

    async def post_request(self, service_code: str, *, attributes: dict[str, str | list[str]],
                           api_key: str | None = None, **fields: str) -> tuple[int, Any]:
        form: list[tuple[str, str]] = [("api_key", self.api_key if api_key is None else api_key),
                                       ("service_code", service_code), *fields.items()]
        for code, value in attributes.items():
            if isinstance(value, list):  # multivaluelist: attribute[code][]=a&attribute[code][]=b
                form += [(f"attribute[{code}][]", v) for v in value]
            else:
                form.append((f"attribute[{code}]", value))
        async with self.http.post(f"{self.endpoint}/requests.json", data=form) as answer:
            return answer.status, await answer.json()


@pytest.fixture
async def open311(settings_data: dict[str, dict[str, object]], tmp_path: Path,
                  adapter: RecordingAdapter) -> AsyncIterator[tuple[Hub, GeoReport]]:
    rules = tmp_path / "rules"
    shutil.copytree(SHIPPED, rules)
    (rules / "30-enrich.toml").unlink()  # its after-hours auto-reply depends on the clock
    shutil.rmtree(rules / "tests")
    settings_data["routing"] = {"rules_dir": str(rules), "watch": False}
    hub = Hub(Settings.model_validate(settings_data), adapters=[adapter])
    await hub.prepare()
    async with hub.db.transaction() as session:
        key = await create_key(session, "city-app")
    server = TestServer(create_app(hub))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield hub, GeoReport(http, str(server.make_url("/open311/v2")), key)
    finally:
        await server.close()
        await hub.stop()


POTHOLE = {"lat": "40.7128", "long": "-74.0060", "address_string": "12 Elm St",
           "email": "jane@example.org", "first_name": "Jane", "last_name": "Roe",
           "description": "A deep hole in the bus lane", "media_url": "https://img.example/1.jpg"}


async def test_discovery_services_and_a_service_definition(
        open311: tuple[Hub, GeoReport]) -> None:
    _hub, client = open311
    status, discovery = await client.get("discovery")
    assert status == 200 and discovery["endpoints"][0]["url"].endswith("/open311/v2")
    status, services = await client.get("services")
    assert status == 200
    by_code = {s["service_code"]: s for s in services}
    assert set(by_code) == {"pothole", "missed_collection", "noise", "general_question",
                            "permit_enquiry"}
    assert by_code["pothole"]["metadata"] is True and by_code["pothole"]["type"] == "realtime"
    assert by_code["general_question"]["service_name"] == "Ask a question"
    status, spanish = await client.get("services", locale="es")
    assert {s["service_code"]: s for s in spanish}["general_question"]["service_name"] == \
        "Hacer una pregunta"
    status, definition = await client.get("services/pothole")
    assert status == 200 and definition["service_code"] == "pothole"
    attrs = {a["code"]: a for a in definition["attributes"]}
    assert set(attrs) == {"hazard", "size"}  # where/description/photo are standard parameters
    assert attrs["hazard"]["datatype"] == "singlevaluelist" and attrs["hazard"]["required"]
    assert [v["key"] for v in attrs["hazard"]["values"]] == ["yes", "no"]
    assert [a["order"] for a in definition["attributes"]] == [1, 2]
    status, waste = await client.get("services/missed_collection")
    kinds = {a["code"]: a["datatype"] for a in waste["attributes"]}
    assert kinds == {"bins": "multivaluelist", "collection_date": "datetime"}


async def test_post_a_request_and_read_it_back(open311: tuple[Hub, GeoReport]) -> None:
    hub, client = open311
    status, answer = await client.post_request("pothole", attributes={"hazard": "yes",
                                                                      "size": "large"}, **POTHOLE)
    assert status == 200, answer
    reference = answer[0]["service_request_id"]
    assert reference in answer[0]["service_notice"]
    status, again = await client.post_request("pothole", attributes={"hazard": "yes",
                                                                     "size": "large"}, **POTHOLE)
    assert again[0]["service_request_id"] == reference  # a retried POST is stored once

    status, (found,) = await client.get(f"requests/{reference}")
    assert status == 200
    assert found["service_request_id"] == reference and found["status"] == "open"
    assert found["service_code"] == "pothole"
    assert (found["lat"], found["long"], found["address"]) == (40.7128, -74.006, "12 Elm St")
    shown = repr(found)
    for private in ("jane", "Jane", "Roe", "deep hole", "img.example"):
        assert private not in shown

    async with hub.db.read() as session:
        conv = (await session.scalars(select(Conversation))).one()
        message = (await session.scalars(select(Message))).one()
    assert (conv.channel, conv.queue, conv.priority) == ("webform", "roads", "urgent")
    assert message.meta["media_url"] == "https://img.example/1.jpg"  # kept, never fetched
    assert message.meta["open311"] == {"client": "city-app"}
    assert message.meta["form"]["fields"]["hazard"] == "yes"


async def test_the_request_list_filters(open311: tuple[Hub, GeoReport]) -> None:
    hub, client = open311
    _s, pothole = await client.post_request("pothole", attributes={"hazard": "no"}, **POTHOLE)
    _s, noise = await client.post_request(
        "noise", attributes={"source": "music"}, lat="40.7", long="-74.0",
        phone="+12125550123", description="Loud party every night")
    assert _s == 200, noise
    pothole_ref, noise_ref = pothole[0]["service_request_id"], noise[0]["service_request_id"]

    async def listed(**params: str) -> list[str]:
        status, found = await client.get("requests", **params)
        assert status == 200, found
        return [r["service_request_id"] for r in found]

    assert set(await listed()) == {pothole_ref, noise_ref}
    assert await listed(service_code="pothole") == [pothole_ref]
    assert await listed(service_request_id=f"{noise_ref},NOPE") == [noise_ref]
    assert await listed(status="closed") == []
    assert await listed(start_date="2999-01-01T00:00:00Z") == []
    async with hub.db.transaction() as session:
        conv = await session.scalar(select(Conversation).where(
            Conversation.reference == pothole_ref))
        assert conv is not None
        conv.status = "resolved"
    assert await listed(status="closed") == [pothole_ref]
    assert await listed(status="open") == [noise_ref]
    _s, (noise_public,) = await client.get(f"requests/{noise_ref}")
    assert "lat" not in noise_public and "address" not in noise_public  # not a public place


async def test_open311_errors(open311: tuple[Hub, GeoReport]) -> None:
    _hub, client = open311
    attributes = {"hazard": "yes"}
    status, body = await client.post_request("pothole", attributes=attributes,
                                             api_key="o311_wrong", **POTHOLE)
    assert status == 403 and body == [{"code": 403, "description": "invalid api_key"}]
    status, body = await client.post_request("pothole", attributes=attributes, api_key="",
                                             **POTHOLE)
    assert status == 403 and body[0]["code"] == 403
    status, body = await client.post_request("graffiti", attributes=attributes, **POTHOLE)
    assert status == 404 and body[0]["code"] == 404 and "graffiti" in body[0]["description"]
    status, body = await client.post_request("pothole", attributes={"size": "large"}, **POTHOLE)
    assert status == 400 and body[0]["code"] == 400
    assert "attribute[hazard]" in body[0]["description"]
    status, body = await client.post_request("pothole", attributes={"hazard": "perhaps"},
                                             **POTHOLE)
    assert status == 400 and "attribute[hazard]" in body[0]["description"]
    status, body = await client.get("services/graffiti")
    assert status == 404 and body[0]["code"] == 404
    status, body = await client.get("requests/NOSUCHREF")
    assert status == 404 and body[0]["code"] == 404
    status, body = await client.get("requests", status="pending")
    assert status == 400 and body[0]["code"] == 400


def test_cli_creates_api_keys(settings: Settings, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    config = config_file(settings, tmp_path)
    assert cli.main(["apikey", "create", "city-app", "--config", str(config)]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("o311_")
    assert cli.main(["apikey", "create", "city-app", "--config", str(config)]) == 1
    assert "exists already" in capsys.readouterr().err

    async def holder() -> str | None:
        db = Database(settings.database.url)
        async with db.transaction() as session:
            row = await key_holder(session, key)
            wrong = await key_holder(session, key + "x")
        await db.dispose()
        return row.name if row is not None and wrong is None else None

    assert asyncio.run(holder()) == "city-app"
    # Revoked: it opens nothing at once; a new key for the same client can be made.
    assert cli.main(["apikey", "revoke", "city-app", "--config", str(config)]) == 0
    assert asyncio.run(holder()) is None
    assert cli.main(["apikey", "revoke", "city-app", "--config", str(config)]) == 1
    capsys.readouterr()
    assert cli.main(["apikey", "create", "city-app", "--config", str(config)]) == 0
    key = capsys.readouterr().out.strip()
    assert asyncio.run(holder()) == "city-app"
