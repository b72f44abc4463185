"""Who is asking: the caller's gateway key, the request's ``user`` field, the client address.

With ``gateway.auth = "keys"`` every ``/v1/*`` and ``/generate`` request needs
``Authorization: Bearer KEY``; the key is checked in memory against the `KeyRing` (no
database round trip), which this part starts and stops. Each rate-limit rule then counts
the caller under the identifier its scope asks for (`Caller.identifier`).

The ``user`` field is the client's to choose, so with keys a ``per_user`` bucket is the
pair ``KEYNAME:USER``: a key holder cannot spread requests over invented users beyond
the key's own. The client address is the scope's, which `revoctl.runtime.client_address`
has already set from a trusted proxy's headers.

A key of a tier (``[tiers.NAME]``) is charged on its tier's rules, budget and parallel cap
and may call only its tier's models; the caller carries the key's record and its tier for
that. A key whose tier this gateway does not configure is refused (403
``tier_not_configured``) rather than served without its limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from revoctl.core.limits._operator import MAX_KEY_LENGTH
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.keys import KeyRing

if TYPE_CHECKING:
    from starlette.requests import Request

    from revoctl.core.gateway.settings import GatewayConfig, TierConfig
    from revoctl.core.keys import KeyRecord, KeyStore
    from revoctl.core.limits import RateLimitScope

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key's name, the request's ``user`` field, the client address;
    with keys, the key's record and its tier (None: the gateway's own rules)."""

    key_name: str | None
    user: str | None
    client_ip: str | None
    record: KeyRecord | None = None
    tier: TierConfig | None = None

    def allows(self, model: str) -> bool:
        """Whether this caller may call ``model`` (its tier's ``models``; no tier: any)."""
        return self.tier is None or self.tier.allows(model)

    def identifier(self, scope: RateLimitScope) -> str | None:
        """The key a rule of ``scope`` counts this caller under (None: the one global key).

        :raises GatewayError: 400 for a ``per_user`` rule when ``KEYNAME:USER`` would be
            longer than a rate-limit key may be.
        """
        name = scope.value
        if name == "per_api_key":
            return self.key_name or ANONYMOUS
        if name == "per_user":
            if self.user and self.key_name:
                return self._key_and_user(self.key_name, self.user)
            return self.user or self.key_name or ANONYMOUS
        if name == "per_ip":
            return self.client_ip or "unknown"
        return None

    @staticmethod
    def _key_and_user(key_name: str, user: str) -> str:
        pair = f"{key_name}:{user}"
        if len(pair) > MAX_KEY_LENGTH:
            room = MAX_KEY_LENGTH - len(key_name) - 1
            raise GatewayError(
                400,
                f"'user' is limited to {room} characters with the key {key_name!r} "
                f"(its per_user bucket is KEYNAME:USER, at most {MAX_KEY_LENGTH})",
                code="user_too_long",
            )
        return pair


class Identity:
    """Authenticates requests by gateway key when the configuration requires one."""

    def __init__(self, config: GatewayConfig, tiers: dict[str, TierConfig]) -> None:
        self.config = config
        self.tiers = tiers
        self.keys: KeyRing | None = None
        """The keys in memory, once started with ``auth = "keys"``."""

    async def start(self, store: KeyStore) -> None:
        """Read the keys from ``store`` (``auth = "keys"``) and keep them fresh."""
        if self.config.auth == "keys":
            self.keys = KeyRing(store, refresh_seconds=self.config.keys_refresh_seconds)
            await self.keys.start()

    async def stop(self) -> None:
        """Stop refreshing the keys."""
        if self.keys is not None:
            await self.keys.stop()

    async def identify(self, request: Request, user: str | None) -> Caller:
        """Who is asking; the key's name goes to the access log.

        :raises GatewayError: 401 when keys are required and the request has no valid one.
        """
        record = None
        if self.keys is not None:
            header = request.headers.get("authorization", "")
            scheme, _, presented = header.partition(" ")
            if scheme.lower() == "bearer" and presented:
                record = await self.keys.find(presented.strip())
            if record is None:
                raise GatewayError(
                    401,
                    "a valid gateway key is required: Authorization: Bearer <key> "
                    "(revoctl keys create NAME)",
                    code="invalid_api_key",
                )
            request.scope["state"]["key_name"] = record.name
        client = request.client.host if request.client else None
        return Caller(
            key_name=record.name if record is not None else None,
            user=user,
            client_ip=client,
            record=record,
            tier=self._tier_of(record),
        )

    def _tier_of(self, record: KeyRecord | None) -> TierConfig | None:
        """``record``'s tier; None for a key of no tier.

        :raises GatewayError: 403 when its tier is not configured on this gateway.
        """
        if record is None or record.tier is None:
            return None
        tier = self.tiers.get(record.tier)
        if tier is None:
            raise GatewayError(
                403,
                f"the key {record.name!r} is of tier {record.tier!r}, which this gateway does "
                "not configure ([tiers.NAME]): it is refused rather than served without its "
                "limits",
                code="tier_not_configured",
            )
        return tier
