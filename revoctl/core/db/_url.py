"""Database URLs read once, without SQLAlchemy: the parts, the TLS settings, the driver's options.

The engine (SQLAlchemy) and the raw probe (asyncpg or sqlite3) both start from a
`DatabaseUrl`, so they connect to the same place the same way. libpq's TLS
parameters, which people paste from other tools (``?sslmode=require``), become the
``ssl`` argument asyncpg takes. Errors name the setting and the problem, never the
URL's text: it may hold a password.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from revoctl.core.errors import ConfigError
from revoctl.core.redaction import register_secret
from revoctl.core.references import SecretReader, resolve_url

if TYPE_CHECKING:
    from sqlalchemy import URL

ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
"""Scheme -> the async driver revoctl uses for it."""

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TLS_KEYS = frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey", "ssl"})
_CONNECTION_KEYS = frozenset({"user", "password", "host", "port", "dbname"})
_POSTGRES_OPTIONS = frozenset(
    {
        # passed to asyncpg.connect as they are
        "target_session_attrs",
        "command_timeout",
        "statement_cache_size",
        # SQLAlchemy's asyncpg dialect reads these itself
        "prepared_statement_cache_size",
        "prepared_statement_name_func",
    }
)
_IGNORED = frozenset({"application_name", "connect_timeout"})
"""revoctl sets both itself: the name starts with ``revoctl`` (the CONTRACT), the timeout
is ``database.connect_timeout``."""


def backend_of(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"``, from the URL's scheme alone (no secret needed)."""
    return url.partition(":")[0].partition("+")[0]


def normalise_scheme(url: str, *, setting: str = "database.url") -> str:
    """``url`` with the async driver for its scheme: a bare ``postgresql://`` gets ``+asyncpg``.

    :raises ConfigError: the scheme is not one revoctl drives.
    """
    scheme, sep, rest = url.partition("://")
    driver = ASYNC_DRIVERS.get(scheme.lower())
    if not sep or driver is None:
        shown = f", not {scheme}://" if sep and scheme.isascii() and len(scheme) < 40 else ""
        raise ConfigError(
            f"{setting}: must be a postgresql+asyncpg:// or sqlite+aiosqlite:// URL{shown}"
        )
    return f"{driver}://{rest}"


@dataclass(frozen=True)
class DatabaseUrl:
    """One database URL in parts; ``password`` stays out of ``repr``."""

    driver: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    ssl_mode: str | None = None
    ssl_root_cert: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    """Driver options from the query string, checked against what the driver takes."""

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.driver.partition("+")[0]

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file, or None for an in-memory database."""
        if self.backend != "sqlite" or self.database in (None, "", ":memory:"):
            return None
        return Path(self.database)

    def ssl_argument(self) -> ssl.SSLContext | str | bool | None:
        """What asyncpg's ``ssl`` argument should be for the libpq-style TLS settings.

        :raises ConfigError: a certificate or key file cannot be read.
        """
        mode = self.ssl_mode
        if mode is None and self.ssl_root_cert:
            mode = "verify-full"
        if mode is None:
            return None
        if mode == "disable":
            return False
        if mode in ("allow", "prefer") or (mode == "require" and not self.ssl_cert):
            return mode
        try:
            context = ssl.create_default_context(cafile=self.ssl_root_cert or None)
            if mode != "verify-full":
                context.check_hostname = False
            if mode == "require":
                context.verify_mode = ssl.CERT_NONE
            if self.ssl_cert:
                context.load_cert_chain(self.ssl_cert, self.ssl_key or None)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConfigError(
                f"database.url: cannot load the TLS files named by sslrootcert/sslcert/sslkey "
                f"({reason})"
            ) from None
        return context

    def asyncpg_options(self) -> dict[str, Any]:
        """The query string's driver options, typed as asyncpg takes them."""
        options: dict[str, Any] = {}
        for key, value in self.options:
            if key in ("command_timeout",):
                options[key] = float(value)
            elif key == "statement_cache_size":
                options[key] = int(value)
            elif key == "target_session_attrs":
                options[key] = value
        return options

    def sqlalchemy_url(self) -> URL:
        """The same URL for SQLAlchemy, TLS settings left out (they go in ``connect_args``)."""
        from sqlalchemy import URL

        query = {k: v for k, v in self.options if k.startswith("prepared_statement")}
        return URL.create(
            self.driver,
            username=self.username,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=query,
        )


def parse_database_url(text: str, *, setting: str = "database.url") -> DatabaseUrl:
    """``text`` (references resolved, or stood in for) as a `DatabaseUrl`.

    :raises ConfigError: it is not a URL revoctl can connect with; the message names
        the part at fault, never the text.
    """
    driver, _, rest = normalise_scheme(text, setting=setting).partition("://")
    rest, _, _fragment = rest.partition("#")
    rest, _, query_text = rest.partition("?")
    authority, slash, path = rest.partition("/")
    userinfo, _, hostport = authority.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, port = _host_and_port(hostport, setting)
    try:
        query = parse_qsl(query_text, keep_blank_values=True, strict_parsing=bool(query_text))
    except ValueError:
        raise ConfigError(f"{setting}: the query string is not key=value pairs") from None
    parts: dict[str, Any] = {
        "driver": driver,
        "host": unquote(host) or None,
        "port": port,
        "username": unquote(user) or None,
        "password": unquote(password) if password or userinfo.endswith(":") else None,
        "database": unquote(path) if slash else None,
    }
    if driver.startswith("sqlite"):
        if parts["host"] or parts["username"] or port is not None:
            raise ConfigError(
                f"{setting}: a SQLite URL names a file, not a server: "
                "sqlite+aiosqlite:///relative.db or sqlite+aiosqlite:////absolute/path.db"
            )
        return DatabaseUrl(**parts)
    return _with_postgres_query(parts, query, setting)


def _host_and_port(hostport: str, setting: str) -> tuple[str, int | None]:
    head, colon, tail = hostport.rpartition(":")
    if not colon or "]" in tail:
        return hostport, None
    if not tail:
        return head, None
    if not tail.isdigit() or not 0 < int(tail) < 65536:
        raise ConfigError(f"{setting}: the port must be a number from 1 to 65535")
    return head, int(tail)


def _with_postgres_query(
    parts: dict[str, Any], query: list[tuple[str, str]], setting: str
) -> DatabaseUrl:
    tls: dict[str, str] = {}
    options: list[tuple[str, str]] = []
    for key, value in query:
        if key in _TLS_KEYS:
            tls["sslmode" if key == "ssl" else key] = value
        elif key in _CONNECTION_KEYS:
            target = {"user": "username", "dbname": "database"}.get(key, key)
            if key == "port":
                parts["port"] = _host_and_port(f"x:{value}", setting)[1]
            else:
                parts[target] = value
        elif key in _POSTGRES_OPTIONS:
            _check_option(key, value, setting)
            options.append((key, value))
        elif key not in _IGNORED:
            known = ", ".join(sorted(_TLS_KEYS | _CONNECTION_KEYS | _POSTGRES_OPTIONS))
            shown = key if key.isidentifier() and len(key) < 40 else "..."
            raise ConfigError(f"{setting}: unknown query parameter {shown!r} (known: {known})")
    mode = tls.get("sslmode")
    if mode is not None:
        mode = {"true": "require", "false": "disable"}.get(mode.lower(), mode.lower())
        if mode not in SSL_MODES:
            raise ConfigError(f"{setting}: sslmode must be one of {', '.join(SSL_MODES)}")
    return DatabaseUrl(
        **parts,
        ssl_mode=mode,
        ssl_root_cert=tls.get("sslrootcert"),
        ssl_cert=tls.get("sslcert"),
        ssl_key=tls.get("sslkey"),
        options=tuple(options),
    )


def _check_option(key: str, value: str, setting: str) -> None:
    numeric = {"command_timeout": float, "statement_cache_size": int}
    if key in numeric:
        try:
            numeric[key](value)
        except ValueError:
            raise ConfigError(f"{setting}: {key} must be a number") from None


async def resolve_database_url(template: str, read_secret: SecretReader | None) -> DatabaseUrl:
    """``template`` (``database.url``) with its ``${secret:NAME}`` references read through
    ``read_secret``, parsed; its password is registered for redaction.

    :raises ConfigError: the URL holds a reference and there is no ``read_secret``.
    :raises RevoctlError: a referenced secret cannot be read.
    """

    async def no_reader(name: str) -> str:
        raise ConfigError(
            "database.url: holds a ${secret:...} reference but no secret resolver is set"
        )

    text = await resolve_url(template, read_secret or no_reader, setting="database.url")
    url = parse_database_url(text)
    if url.password:
        register_secret(url.password)
    return url
