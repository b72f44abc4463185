"""A process that starts while an operator's trip stands honours it from its first call: its
breakers look at the fleet's state before letting anything through."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_revoctl

FIRST_CALL = textwrap.dedent(
    """
    import asyncio
    from revoctl.core import CircuitOpenError, load_services

    async def main() -> None:
        called = []
        async with load_services() as svc:
            breaker = svc.breakers.get("openai_api")  # no initialize(): the library's way
            try:
                await breaker.call(lambda: called.append(1))
            except CircuitOpenError:
                print("refused", called)
            else:
                print("called", called)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("store", ["sql"])
def test_a_new_process_honours_a_standing_trip_on_its_first_call(
    revoctl_home: Path, store: str
) -> None:
    env = {"REVOCTL_BREAKERS__STORE": store}
    assert run_revoctl(["db", "migrate"], env=env).returncode == 0
    tripped = run_revoctl(["breakers", "trip", "openai_api", "--reason", "drill"], env=env)
    assert tripped.returncode == 0, tripped.stderr
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-c", FIRST_CALL],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )
        assert done.stdout.strip() == "refused []", done.stderr
