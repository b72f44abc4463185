"""``revoctl serve``: run the LLM gateway on the same configuration as every other command."""

from __future__ import annotations

from typing import Annotated

import typer

from revoctl.cli._app import AppState
from revoctl.cli._fast import log_level_for
from revoctl.core.errors import UsageError

app = typer.Typer(add_completion=False)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Run the LLM gateway: /v1/chat/completions, /v1/models, /generate, /health, /metrics.

    Examples:
      $ revoctl serve --port 8000 --workers 4
      $ revoctl --profile prod serve --host 0.0.0.0
    """
    state = AppState.of(ctx)
    settings = state.settings  # invalid configuration fails here, before any worker starts
    try:
        from revoctl.runtime import server
    except ImportError as exc:  # starlette or uvicorn missing
        raise UsageError(
            f"the gateway needs the runtime extra ({exc.name} is missing): "
            "pip install 'revoctl[runtime]'"
        ) from None
    if settings.gateway.auth == "none" and not server.is_loopback(host):
        state.console.warn(
            f"gateway.auth is 'none' and the gateway listens on {host}: anyone who can reach "
            'it can spend your provider keys; use auth = "keys" beyond loopback'
        )
    # -v / -vv reach the workers as the setting they override, laid over the others.
    level = log_level_for(state.verbose)
    overrides = {**state.overrides, **({"logging.level": level} if level else {})}
    environment = server.worker_environment(state.config_file, state.profile, overrides)
    listening = server.listening_socket(host, port)  # a bad address: one error, nothing said before
    state.console.info(f"revoctl gateway on http://{host}:{port} ({workers} worker(s))")
    server.run(
        host=host,
        port=port,
        workers=workers,
        environment=environment,
        gateway=settings.gateway,
        log_level=level or settings.logging.level,
        listening=listening,
    )
