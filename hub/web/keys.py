"""What every part of the web app shares: the application keys and who the caller is.

Kept apart from `app.py` (which builds the application from the API, the live events and the
adapters' webhooks) so that those modules can import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from hub.storage.tables import Staff

if TYPE_CHECKING:
    from hub.app import Hub

HUB_KEY: web.AppKey[Hub] = web.AppKey("hub")


@dataclass(frozen=True, slots=True)
class Caller:
    staff: Staff  # detached row: read its attributes, never lazy-load
    token_hash: str

    @property
    def email(self) -> str:
        return self.staff.email

    @property
    def role(self) -> str:
        return self.staff.role


CALLER_KEY: web.RequestKey[Caller] = web.RequestKey("caller", Caller)
# the read session a route guarded with `reads` shares with its handler (hub.web.auth_mw)
SESSION_KEY: web.RequestKey[AsyncSession] = web.RequestKey("read_session", AsyncSession)


def caller(request: web.Request) -> Caller:
    return request[CALLER_KEY]
