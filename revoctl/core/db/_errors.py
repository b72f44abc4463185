"""Which database errors are transient, which are the rows' own fault, and how they become
revoctl errors."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

from revoctl.core._batch import RowsRejected
from revoctl.core.errors import BackendUnavailableError, PoolExhaustedError

TRANSIENT_CONNECT_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})
"""too_many_connections, admin_shutdown, crash_shutdown, cannot_connect_now."""
SERIALIZATION_SQLSTATES = frozenset({"40001", "40P01"})
"""serialization_failure, deadlock_detected: the whole transaction may be re-run."""
REJECTED_SQLSTATE_CLASSES = ("28", "3D")
"""Invalid authorization, unknown database: reached, but refused; retrying will not help."""
DATA_SQLSTATE_CLASSES = ("22", "23")
"""data_exception (a value too long for its column, text the encoding cannot hold, a number
out of range), integrity_constraint_violation: the rows' fault, not the database's."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the DBAPI error it wraps and its causes, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE carried anywhere in ``exc``'s chain."""
    for link in _chain(exc):
        code = getattr(link, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def _sqlite_locked(exc: BaseException) -> bool:
    return any(
        isinstance(link, sqlite3.OperationalError) and "locked" in str(link) for link in _chain(exc)
    )


def is_pool_timeout(exc: BaseException) -> bool:
    """The pool had no free connection within ``pool_timeout``."""
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return isinstance(exc, PoolTimeout)


def is_transient_connect(exc: BaseException) -> bool:
    """A connection could not be made for a reason that may pass (refused, reset, the
    server starting or full, a locked SQLite file): judged on the driver's own errors."""
    code = sqlstate(exc)
    if code is not None:
        return code.startswith("08") or code in TRANSIENT_CONNECT_SQLSTATES
    return _sqlite_locked(exc) or any(isinstance(link, OSError) for link in _chain(exc))


def is_connection_error(exc: BaseException) -> bool:
    """The connection could not be made or was lost: safe to retry acquiring one.

    A pool timeout is not one of these: the caller has already waited ``pool_timeout``.
    """
    from sqlalchemy.exc import DBAPIError

    if is_pool_timeout(exc):
        return False
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return is_transient_connect(exc)


def is_rejected(exc: BaseException) -> bool:
    """The server answered and refused (bad credentials, an unknown database): retrying
    will not help."""
    code = sqlstate(exc)
    return code is not None and code.startswith(REJECTED_SQLSTATE_CLASSES)


def unusable_sqlite_file(exc: BaseException) -> sqlite3.DatabaseError | None:
    """The SQLite file cannot be opened or is not a database: retrying will not help."""
    for link in _chain(exc):
        if isinstance(link, sqlite3.DatabaseError) and (
            "unable to open" in str(link) or "not a database" in str(link)
        ):
            return link
    return None


def is_retryable_transaction(exc: BaseException) -> bool:
    """A serialization failure, a deadlock or a locked SQLite file: re-run the transaction."""
    return sqlstate(exc) in SERIALIZATION_SQLSTATES or _sqlite_locked(exc)


def is_missing_table(exc: BaseException) -> bool:
    """A statement named a table that does not exist: the database is not migrated."""
    return sqlstate(exc) == "42P01" or any(
        isinstance(link, sqlite3.OperationalError) and "no such table" in str(link)
        for link in _chain(exc)
    )


def is_data_error(exc: BaseException) -> bool:
    """The database (or the driver, before sending them) refused the values themselves: the
    same statement with other values may well succeed, and the same values never will."""
    from sqlalchemy.exc import DBAPIError, StatementError

    code = sqlstate(exc)
    if code is not None:
        return code.startswith(DATA_SQLSTATE_CLASSES)
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True  # a parameter that could not be converted: nothing reached the database
    return any(isinstance(link, sqlite3.IntegrityError | sqlite3.DataError) for link in _chain(exc))


@contextlib.contextmanager
def refused_rows() -> Iterator[None]:
    """A data error (`is_data_error`) in the block becomes `RowsRejected`, with the database's
    reason: the batch writer then writes the rows one at a time and drops only those refused."""
    try:
        yield
    except Exception as exc:
        if is_data_error(exc):
            raise RowsRejected(_reason(exc, None)) from exc
        raise


def _reason(exc: BaseException, password: str | None) -> str:
    """The innermost error's text, with the password scrubbed in case a driver echoed it."""
    root = list(_chain(exc))[-1]
    text = str(root).strip() or type(root).__name__
    text = f"{type(root).__name__}: {text}"
    return text.replace(password, "***") if password else text


@contextlib.contextmanager
def translate_errors(
    target: str,
    *,
    attempts: int,
    password: str | None = None,
    only: type[Exception] = Exception,
) -> Iterator[None]:
    """Turn connection failures into `BackendUnavailableError` (a pool that stayed
    exhausted for the whole wait: `PoolExhaustedError`), naming ``target``.

    ``target`` is the URL rendered without its password; ``only`` limits which
    errors are looked at (e.g. SQLAlchemy's, around a caller's own code). SQL
    errors (constraint violations, syntax errors, serialization failures)
    propagate unchanged: they are the caller's to handle.
    """
    try:
        yield
    except only as exc:
        if is_pool_timeout(exc):
            raise PoolExhaustedError(
                f"no free database connection for {target}: the pool is exhausted "
                f"({_reason(exc, password)})"
            ) from exc
        unusable = unusable_sqlite_file(exc)
        if unusable is not None:
            raise BackendUnavailableError(
                f"cannot use the SQLite database at {target}: {unusable}"
            ) from exc
        if is_rejected(exc):
            raise BackendUnavailableError(
                f"database at {target} refused the connection: {_reason(exc, password)}"
            ) from exc
        if is_connection_error(exc):
            tried = f" after {attempts} attempts" if attempts > 1 else ""
            raise BackendUnavailableError(
                f"cannot reach the database at {target}{tried}: {_reason(exc, password)}"
            ) from exc
        raise
