"""The public surface of `revoctl.core`: every name the CONTRACT gives resolves, lazily."""

from __future__ import annotations

import subprocess
import sys

import revoctl.core


def test_all_is_sorted_and_matches_the_lazy_table() -> None:
    assert revoctl.core.__all__ == sorted(revoctl.core.__all__)
    assert set(revoctl.core.__all__) == set(revoctl.core._EXPORTS)


def test_every_exported_name_resolves() -> None:
    for name in revoctl.core.__all__:
        assert getattr(revoctl.core, name) is not None, name


def test_importing_core_imports_no_backend() -> None:
    code = (
        "import sys, revoctl.core\n"
        "print(sorted(m for m in ('sqlalchemy', 'redis', 'azure') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_contract_rate_limit_names_resolve_from_core_and_limits() -> None:
    import revoctl.core.limits

    for name in ("RateLimiter", "RateLimitRule", "RateLimitAlgorithm", "RateLimitScope"):
        assert name in revoctl.core.__all__, name
        assert getattr(revoctl.core, name) is getattr(revoctl.core.limits, name)
    limits_all = revoctl.core.limits.__all__
    assert limits_all == sorted(limits_all)
    assert set(revoctl.core.limits._EXPORTS) <= set(limits_all)
    for name in limits_all:
        assert getattr(revoctl.core.limits, name) is not None, name
