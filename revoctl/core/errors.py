"""The errors revoctl raises, one tree for the library and the CLI.

::

    RevoctlError
    ├── UsageError                 bad input: an invalid name, value or flag       (exit 2)
    │   └── ConfigError            an invalid configuration file, key or value     (exit 2)
    ├── NotFoundError              a secret, version, rule, breaker or revision    (exit 3)
    ├── BackendUnavailableError    Key Vault, Redis or the database unreachable    (exit 4)
    │   └── PoolExhaustedError     no pooled connection came free within the wait:
    │                              back-pressure from this process, not an outage
    └── CheckFailedError           unhealthy, denied, breaker not closed           (exit 1)
        └── CircuitOpenError       a breaker refused a call: open, forced open, or
                                   half-open with its trial calls taken

Each class carries its CLI exit code, so the CLI maps errors to exit codes in one
place. Messages never hold secret values: adapters build them from names, never
from the payloads they carry.
"""

from __future__ import annotations


class RevoctlError(Exception):
    """Root of every error revoctl raises on purpose."""

    exit_code = 1


class UsageError(RevoctlError):
    """The caller gave an invalid name, value or combination of options."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration is invalid: the message names the source, key and problem."""


class NotFoundError(RevoctlError):
    """The named secret, version, rule, breaker or revision does not exist."""

    exit_code = 3


class BackendUnavailableError(RevoctlError):
    """A back end (Key Vault, Redis, the database) could not be reached, after retries."""

    exit_code = 4


class PoolExhaustedError(BackendUnavailableError):
    """Every connection of a pool stayed busy for the whole wait allowed: the back end may
    be fine, this process is asking more of it at once than its pool holds.

    A caller with a fallback answers that one call with it; it is no reason to treat the
    back end as down.
    """


class CheckFailedError(RevoctlError):
    """A check ran and failed: unhealthy, denied by a limit, breaker not closed."""

    exit_code = 1


class CircuitOpenError(CheckFailedError):
    """A circuit breaker refused the call; nothing was sent.

    ``state`` is the breaker's state (``open``, ``half_open`` or ``forced_open``),
    ``retry_after`` the seconds until it may let a trial call through (None while
    forced open without an expiry), ``reason`` why it opened.
    """

    def __init__(
        self,
        breaker: str,
        state: str,
        *,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> None:
        self.breaker = breaker
        self.state = state
        self.retry_after = retry_after
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"circuit breaker {breaker!r} is {state}{detail}")


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none: what a
    one-line log entry or health report says of a failure."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
