"""The admin API's guard and bodies: who may call ``/admin/*``, and what they may send.

``[gateway] admin_key`` turns the admin API on; it may be a ``${secret:NAME}`` reference,
read through the secret manager (whose cache keeps it cheap) on each admin request, so a
rotated admin secret takes effect without a restart. With no admin key every ``/admin``
route answers 404, as a path that does not exist; a missing or wrong ``Authorization:
Bearer <admin_key>`` is 401. The key is compared in constant time and registered with the
log redaction; what the logs and the audit name is its fingerprint (the first 12 hex
digits of its SHA-256), ``admin:<fingerprint>`` being the actor of every admin change.

The routes (`revoctl.runtime.routes.admin`) make the same core calls as the CLI: gateway
keys through ``svc.accounts``, breakers through ``svc.breakers``. Core's refusals become
the gateway's JSON errors here (`core_errors`): bad input 400, unknown name 404, a back
end away 503.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from revoctl.core.errors import BackendUnavailableError, NotFoundError, RevoctlError, UsageError
from revoctl.core.keys import MAX_EXPIRES_IN, MAX_OVERLAP, NAME_PATTERN
from revoctl.core.redaction import register_secret
from revoctl.core.references import resolve_text
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.schemas import _whole_float

if TYPE_CHECKING:
    from starlette.requests import Request

    from revoctl.runtime.gateway import Gateway

logger = logging.getLogger("revoctl.admin")

FINGERPRINT_HEX = 12
MAX_REASON = 500
"""As ``breakers trip --reason`` takes (`CircuitBreakerManager.trip`)."""
MAX_TRIP_SECONDS = 30 * 86400


class _Body(BaseModel):
    """Strict (``"5"`` is not a number, ``true`` not an amount) and closed: a misspelt field
    is refused rather than ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)


class KeyCreate(_Body):
    """``POST /admin/keys``: as ``revoctl keys create NAME [--tier T] [--expires-in S]``."""

    name: str = Field(pattern=NAME_PATTERN.pattern, description="Who holds the key")
    tier: str | None = Field(None, description="A configured [tiers.NAME]; null: no tier")
    expires_in: (
        Annotated[int, Field(ge=1, le=MAX_EXPIRES_IN), BeforeValidator(_whole_float)] | None
    ) = Field(None, description="Seconds until the key expires")


class KeyRotate(_Body):
    """``POST /admin/keys/{name}/rotate``: as ``revoctl keys rotate NAME [--overlap S]``."""

    overlap: float = Field(
        0, ge=0, le=MAX_OVERLAP, description="Seconds the replaced key keeps working"
    )


class BreakerTrip(_Body):
    """``POST /admin/breakers/{name}/trip``: as ``revoctl breakers trip NAME``."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    reason: str | None = Field(None, max_length=MAX_REASON, description="Shown by status")
    for_seconds: float | None = Field(
        None, alias="for", gt=0, le=MAX_TRIP_SECONDS, description="Reset by itself after this"
    )


def fingerprint(admin_key: str) -> str:
    """What logs and audits name the admin key by: the first hex digits of its SHA-256."""
    return hashlib.sha256(admin_key.encode()).hexdigest()[:FINGERPRINT_HEX]


async def admin_actor(gateway: Gateway, request: Request) -> str:
    """``admin:<fingerprint>`` for a request with the admin key; it goes to the access log.

    :raises GatewayError: 404 when the admin API is off, 401 without the admin key, 503
        when the admin key's secret cannot be read.
    """
    request.state.caller = None  # never a gateway key's caller: a refusal asks no one
    template = gateway.config.admin_key
    if not template:
        raise GatewayError(404, f"{request.method} {request.url.path}: Not Found", code="not_found")
    with core_errors():
        admin_key = await resolve_text(template, gateway.services.read_secret)
    register_secret(admin_key)
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    valid = scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), admin_key.encode()
    )
    if not valid or not admin_key:
        raise GatewayError(
            401,
            "the admin key is required: Authorization: Bearer <admin_key>",
            code="invalid_admin_key",
        )
    actor = f"admin:{fingerprint(admin_key)}"
    request.scope["state"]["key_name"] = actor
    logger.info("%s: %s %s", actor, request.method, request.url.path)
    return actor


@contextlib.contextmanager
def core_errors() -> Iterator[None]:
    """Core's refusals as the gateway's errors: 400 bad input, 404 unknown, 503 unavailable.

    :raises GatewayError: for every `RevoctlError` raised inside.
    """
    try:
        yield
    except UsageError as exc:
        raise GatewayError(400, str(exc), code="invalid_value") from None
    except NotFoundError as exc:
        raise GatewayError(404, str(exc), code="not_found") from None
    except BackendUnavailableError as exc:
        raise GatewayError(503, str(exc), kind="server_error", code="unavailable") from None
    except RevoctlError as exc:
        raise GatewayError(500, str(exc), kind="server_error", code="internal_error") from None
