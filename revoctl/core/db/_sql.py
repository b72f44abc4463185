"""What the SQL stores share: the database server's clock, and their statements built from
the models' tables (SQLAlchemy Core) once per dialect.

Importing this module imports no SQLAlchemy: the stores' raw-driver reads (``breakers
status``, ``health``) use `SERVER_CLOCK` as text; the functions below import it when a
pooled statement is first built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Table
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.orm import DeclarativeBase

SERVER_CLOCK = {
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())::float8",
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
}
"""The database server's clock in epoch seconds, read when the statement runs."""


def table(model: type[DeclarativeBase]) -> Table:
    """``model.__table__``, typed as the `Table` it is (SQLAlchemy types it as any FromClause)."""
    from sqlalchemy import Table

    found = model.__table__
    if not isinstance(found, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return found


def server_clock(backend: str) -> ColumnElement[Any]:
    """`SERVER_CLOCK` as a column expression, labelled ``now``."""
    from sqlalchemy import Double, literal_column

    return literal_column(SERVER_CLOCK[backend], Double()).label("now")


def upsert(backend: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` on ``table`` that takes ``ON CONFLICT`` clauses (PostgreSQL and SQLite
    spell them alike; SQLAlchemy has one construct per dialect)."""
    if backend == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    from sqlalchemy.dialects.postgresql import insert

    return insert(table)
