"""The audit log: who changed what, written in the same transaction as the change (at its
commit, with the transaction's other entries in one statement)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import utcnow
from hub.storage.rows import add_row
from hub.storage.tables import AuditEntry


def record(session: AsyncSession, actor: str, action: str, target_type: str,
           target_id: object = None, **detail: Any) -> None:
    add_row(session, AuditEntry, actor=actor, action=action, target_type=target_type,
            target_id=None if target_id is None else str(target_id), detail=detail,
            created_at=utcnow())
