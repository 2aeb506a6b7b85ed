"""`column IN (ids)` with the whole list as one bound parameter.

SQLAlchemy's expanding IN renders the statement again for each call, and its text changes with
the list's length, so every length is a statement of its own to prepare (asyncpg caches
prepared statements by their text). Here PostgreSQL gets the list as one array
(`= ANY(:ids)`), SQLite as one JSON text read by `json_each`: one statement text for any list,
which can be built once and cached.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import SQLCoreOperations


def among(column: SQLCoreOperations[int], dialect: str, key: str = "ids",
          ids: Iterable[int] | None = None) -> ColumnElement[bool]:
    """`column` is one of the ids bound to parameter `key` (give them as `ids`, or when
    executing as `id_list(ids, dialect)`). `dialect`: `session.get_bind().dialect.name`."""
    value = None if ids is None else id_list(ids, dialect)
    if dialect == "postgresql":
        return column == any_(bindparam(key, value, type_=ARRAY(BigInteger)))
    listed = func.json_each(bindparam(key, value))
    return column.in_(select(literal_column("value", BigInteger)).select_from(listed))


def id_list(ids: Iterable[int], dialect: str) -> Any:
    """The value of an `among` parameter."""
    values = sorted(set(ids))
    return values if dialect == "postgresql" else json.dumps(values)
