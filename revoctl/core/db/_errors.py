"""Which database errors are transient, which are the rows' own fault, and how they become
revoctl errors.

One translation (`translate_errors`) for both ways to the database: the raw drivers of
the probes (asyncpg, sqlite3) and SQLAlchemy, which wraps the same driver errors. Each
test below walks the chain of wrapped errors, so a raw error and its wrapping read the
same, and nothing here imports SQLAlchemy for an error it has not raised.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator

from revoctl.core._batch import RowsRejected
from revoctl.core.errors import (
    BackendUnavailableError,
    PoolExhaustedError,
    RevoctlError,
    UsageError,
    first_line,
)

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


def _sqlalchemy_error(name: str) -> type[BaseException] | None:
    """SQLAlchemy's error class ``name``, if SQLAlchemy is loaded: an error it has not
    raised cannot be one of its own, so a probe never imports it to ask."""
    module = sys.modules.get("sqlalchemy.exc")
    found = getattr(module, name, None)
    return found if isinstance(found, type) else None


def is_pool_timeout(exc: BaseException) -> bool:
    """The pool had no free connection within ``pool_timeout``."""
    pool_timeout = _sqlalchemy_error("TimeoutError")
    return pool_timeout is not None and isinstance(exc, pool_timeout)


def is_transient_connect(exc: BaseException) -> bool:
    """A connection could not be made for a reason that may pass (refused, reset, the
    server starting or full, a locked SQLite file): judged on the driver's own errors."""
    code = sqlstate(exc)
    if code is not None:
        return code.startswith("08") or code in TRANSIENT_CONNECT_SQLSTATES
    # EOFError: asyncpg's IncompleteReadError, a connection closed mid-handshake.
    return _sqlite_locked(exc) or any(isinstance(link, OSError | EOFError) for link in _chain(exc))


def is_connection_error(exc: BaseException) -> bool:
    """The connection could not be made or was lost: safe to retry acquiring one.

    A pool timeout is not one of these: the caller has already waited ``pool_timeout``.
    """
    if is_pool_timeout(exc):
        return False
    if getattr(exc, "connection_invalidated", False):  # SQLAlchemy's DBAPIError
        return True
    return is_transient_connect(exc)


def is_rejected(exc: BaseException) -> bool:
    """The server answered and refused (bad credentials, an unknown database): retrying
    will not help."""
    code = sqlstate(exc)
    return code is not None and code.startswith(REJECTED_SQLSTATE_CLASSES)


UNUSABLE_SQLITE = ("unable to open", "not a database", "disk i/o error", "readonly database")
"""What SQLite says of a file it cannot use (lower case): retrying will not help."""


def unusable_sqlite_file(exc: BaseException) -> sqlite3.DatabaseError | None:
    """The SQLite file cannot be opened, written or read as a database."""
    for link in _chain(exc):
        if isinstance(link, sqlite3.DatabaseError) and any(
            words in str(link).lower() for words in UNUSABLE_SQLITE
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


_MISSING_TABLE = re.compile(r'relation "([^"]+)" does not exist|no such table: (\S+)')


def missing_table(exc: BaseException) -> str | None:
    """The table a statement found missing (`is_missing_table`), as the driver named it."""
    found = _MISSING_TABLE.search(" ".join(str(link) for link in _chain(exc)))
    return next((name for name in found.groups() if name), None) if found else None


def not_migrated(table: str | None) -> UsageError:
    """The error for a missing ``table`` (None: unnamed): the database is not migrated."""
    missing = f"the {table} table is missing" if table else "a table is missing"
    return UsageError(f"{missing}: the database is not migrated (run 'revoctl db migrate')")


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
    """The innermost error's first line, with the password scrubbed in case a driver
    echoed it."""
    root = list(_chain(exc))[-1]
    text = f"{type(root).__name__}: {first_line(root)}"
    return text.replace(password, "***") if password else text


def translated(
    exc: BaseException, target: str, *, attempts: int, password: str | None = None
) -> RevoctlError | None:
    """``exc`` as revoctl's error, naming ``target`` (the URL without its password), or
    None when it is the caller's to handle: a SQL error (a constraint, the syntax, a
    serialization failure) or a missing table (the caller says "not migrated").

    A pool that stayed exhausted for the whole wait is `PoolExhaustedError`; an unusable
    SQLite file, a refused login or an unreachable server `BackendUnavailableError`.
    """
    if is_missing_table(exc):
        return None
    if is_pool_timeout(exc):
        return PoolExhaustedError(
            f"no free database connection for {target}: the pool is exhausted "
            f"({_reason(exc, password)})"
        )
    unusable = unusable_sqlite_file(exc)
    if unusable is not None:
        return BackendUnavailableError(f"cannot use the SQLite database at {target}: {unusable}")
    if is_rejected(exc):
        return BackendUnavailableError(
            f"the database at {target} refused the connection: {_reason(exc, password)}"
        )
    if is_connection_error(exc):
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        return BackendUnavailableError(
            f"cannot reach the database at {target}{tried}: {_reason(exc, password)}"
        )
    return None


@contextlib.contextmanager
def translate_errors(
    target: str,
    *,
    attempts: int | Callable[[], int],
    password: str | None = None,
    only: type[Exception] = Exception,
) -> Iterator[None]:
    """Raise the block's errors as `translated` words them, ``from`` the driver's error;
    the caller's own errors propagate unchanged.

    ``attempts`` is how many connections were tried (or a function that tells, read
    when the error is raised); ``only`` limits which errors are looked at (e.g.
    SQLAlchemy's, around a caller's own code).
    """
    try:
        yield
    except only as exc:
        tried = attempts() if callable(attempts) else attempts
        error = translated(exc, target, attempts=tried, password=password)
        if error is None:
            raise
        raise error from exc
