"""A runtime process for the fleet tests: calls one breaker in a loop and logs what it sees.

    python -m tests.support.breaker_worker BREAKER LOG MODE STOP

The store and the breaker's settings come from the ``REVOCTL_*`` environment, as for
any runtime process (`load_services`). The protected call reads MODE on every call:
``ok``, ``ok:SECONDS`` (answer after that long) or ``fail``. LOG gets one line per
change, ``<event> <epoch seconds> <detail>``:

* ``ready`` once the control plane has read the store,
* ``allowed`` / ``rejected`` / ``failed`` when the outcome of calls changes,
* ``trial`` for every call the provider receives while this process is half-open,
* ``plane <status>`` when the control plane's status changes,
* ``alive <calls let through>`` every half second.

The loop ends when the file STOP exists.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path


async def main(name: str, log_path: Path, mode_path: Path, stop_path: Path) -> None:
    from revoctl.core import CircuitOpenError, load_services

    log = log_path.open("a", buffering=1)

    def write(event: str, detail: object = "") -> None:
        log.write(f"{event} {time.time():.6f} {detail}\n")

    async with load_services(role="runtime") as svc:
        breaker = svc.breakers.get(name)
        control = svc.breakers.control
        while control.status != "ok":
            await asyncio.sleep(0.01)
        write("ready", os.getpid())
        plane = control.status

        async def provider() -> None:
            mode = mode_path.read_text().strip()
            if breaker.state.name == "half_open":
                write("trial")
            if mode == "fail":
                raise RuntimeError("provider down")
            if mode.startswith("ok:"):
                await asyncio.sleep(float(mode[3:]))

        last, through, next_alive = "", 0, 0.0
        while not stop_path.exists():
            try:
                await breaker.call(provider)
                outcome = "allowed"
                through += 1
            except CircuitOpenError:
                outcome = "rejected"
            except RuntimeError:
                outcome = "failed"
                through += 1
            if outcome != last:
                write(outcome, breaker.state.name)
                last = outcome
            if control.status != plane:
                plane = control.status
                write("plane", plane)
            if time.monotonic() >= next_alive:
                write("alive", through)
                next_alive = time.monotonic() + 0.5
            await asyncio.sleep(0.01)
    log.close()


if __name__ == "__main__":
    breaker_name, log_file, mode_file, stop_file = sys.argv[1:5]
    asyncio.run(main(breaker_name, Path(log_file), Path(mode_file), Path(stop_file)))
