"""The key each rule scope counts a caller under (`Caller.identifier`); ``per_user`` with a
gateway key is the pair ``KEYNAME:USER``."""

from __future__ import annotations

import pytest

from revoctl.core.limits import RateLimitScope
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.identity import Caller

SCOPES = (
    RateLimitScope.PER_USER,
    RateLimitScope.PER_API_KEY,
    RateLimitScope.PER_IP,
    RateLimitScope.GLOBAL,
)


@pytest.mark.parametrize(
    ("caller", "identifiers"),
    [
        (Caller("team-a", "alice", "192.0.2.1"), ("team-a:alice", "team-a", "192.0.2.1", None)),
        (Caller("team-a", None, "192.0.2.1"), ("team-a", "team-a", "192.0.2.1", None)),
        (Caller(None, "alice", None), ("alice", "anonymous", "unknown", None)),
        (Caller(None, None, None), ("anonymous", "anonymous", "unknown", None)),
        (Caller("team-a", "", None), ("team-a", "team-a", "unknown", None)),
    ],
)
def test_each_scope_counts_the_caller_under_its_own_key(
    caller: Caller, identifiers: tuple[str | None, ...]
) -> None:
    assert tuple(caller.identifier(scope) for scope in SCOPES) == identifiers


def test_a_key_and_user_pair_longer_than_a_rate_limit_key_is_a_400() -> None:
    assert Caller("k", "u" * 253, None).identifier(RateLimitScope.PER_USER) == "k:" + "u" * 253
    with pytest.raises(GatewayError) as refused:
        Caller("k", "u" * 254, None).identifier(RateLimitScope.PER_USER)
    assert refused.value.status == 400
    assert "'user' is limited to 253 characters with the key 'k'" in str(refused.value.body())
    # other scopes do not read the user
    assert Caller("k", "u" * 254, None).identifier(RateLimitScope.PER_API_KEY) == "k"
