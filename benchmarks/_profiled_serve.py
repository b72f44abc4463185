"""For `gateway_bench.py --profile`: the gateway as ``revoctl serve`` runs it (one worker,
uvicorn, the app from ``create_app()`` on ``REVOCTL_CONFIG``), under cProfile from
SIGUSR1 on (so start-up and warm-up stay out of it); the statistics are written to
``--stats`` when the server stops (SIGTERM or SIGINT).

    python benchmarks/_profiled_serve.py --port P --stats FILE
"""

from __future__ import annotations

import argparse
import cProfile
import signal

import uvicorn

from revoctl.config import load_config
from revoctl.runtime.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats", required=True)
    args = parser.parse_args()
    loaded = load_config()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(loaded),
            host="127.0.0.1",
            port=args.port,
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=loaded.settings.gateway.request_drain_seconds(),
            server_header=False,
        )
    )
    # uvicorn raises the signal it caught again once it has stopped, under the handlers it
    # found: these let the process live on to write its statistics.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    profile = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
    try:
        server.run()
    finally:
        profile.disable()
        profile.dump_stats(args.stats)


if __name__ == "__main__":
    main()
