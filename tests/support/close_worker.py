"""A library user's process for the close tests: ``async with load_services()``, calls
through one breaker, then leaves the block, timed.

    python -m tests.support.close_worker CALLS [--after-outage]

The store comes from the ``REVOCTL_*`` environment, as for any process that uses
`load_services`. The process makes CALLS calls through ``openai_api`` (a provider that
answers at once) and leaves the block right after them. With ``--after-outage`` it
prints ``called`` instead and waits for a line on stdin (the test stops the store, then
writes it), then until the breakers' control plane has found the store unreachable, and
only then leaves. It prints ``leaving`` as it leaves the block, and once out one JSON
line, ``{"calls", "plane", "close_seconds"}``: the plane's status when it left, and how
long leaving took.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

UNREACHABLE_WAIT = 30.0
"""How long ``--after-outage`` waits for the control plane to see the outage."""


async def main(calls: int, after_outage: bool) -> None:
    from revoctl.core import load_services

    async def provider() -> str:
        return "ok"

    async with load_services() as svc:
        breaker = svc.breakers.get("openai_api")
        for _ in range(calls):
            await breaker.call(provider)
        control = svc.breakers.control
        if after_outage:
            print("called", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            deadline = time.monotonic() + UNREACHABLE_WAIT
            while control.status != "unreachable" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        plane = control.status
        print("leaving", flush=True)
        started = time.perf_counter()
    close_seconds = time.perf_counter() - started
    print(json.dumps({"calls": calls, "plane": plane, "close_seconds": close_seconds}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), "--after-outage" in sys.argv[2:]))
