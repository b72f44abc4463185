"""A service of the platform built on ``revoctl.core``: one model call, guarded as the gateway does.

    python examples/app.py [USER] [PROMPT]

It loads the configuration beside it (examples/revoctl.toml: SQLite and the local secret
store in REVOCTL_HOME, so no server) through ``load_services()``, the same resolution as
the CLI, and then, for one request of USER:

1. brings the database schema up to date (what ``revoctl db migrate`` does);
2. reads the provider's API key from the secret store (storing a placeholder on the first
   run; ``revoctl secrets set local-llm-key`` replaces it);
3. charges USER one request on ``api_generation`` and, on ``tokens_per_minute``, the prompt
   plus the most the answer may take, before calling: a denial costs nothing;
4. calls the model through the ``openai_api`` breaker, so ``revoctl breakers trip openai_api``
   stops it in this process as in every gateway worker;
5. refunds the tokens the answer did not use and records the usage in the database.

Exit 0 when the model answered; 1 when a rate limit or the breaker refused, as the CLI does.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from sqlalchemy import func, select

from revoctl.core import CircuitOpenError, load_services
from revoctl.core.db import upgrade
from revoctl.core.db.models import ModelUsage
from revoctl.core.errors import NotFoundError

CONFIG = Path(__file__).with_name("revoctl.toml")
API_KEY_SECRET = "local-llm-key"
MAX_TOKENS = 64


async def call_model(api_key: str, prompt: str, max_tokens: int) -> tuple[str, int]:
    """Stands in for the provider's SDK (which would send ``api_key``): the answer and the
    tokens it took, fewer than ``max_tokens`` as real answers mostly are."""
    await asyncio.sleep(0.01)
    words = prompt.split()[:max_tokens]
    return " ".join(reversed(words)), len(words)


async def serve(user: str, prompt: str) -> int:
    async with load_services(CONFIG) as svc:
        migrated = await upgrade(svc.db)
        print(f"database: schema at {migrated['to']} ({len(migrated['applied'])} applied now)")

        # Taken early: from get() on, this process follows the trips and resets made anywhere
        # on the store; its first read of the store runs in the background during the steps below.
        breaker = svc.breakers.get("openai_api")

        try:
            secret = await svc.secrets.read_secret(API_KEY_SECRET)
        except NotFoundError:
            await svc.secrets.set_secret(API_KEY_SECRET, "placeholder-for-a-local-server")
            secret = await svc.secrets.read_secret(API_KEY_SECRET)
            print(f"secret {API_KEY_SECRET}: none yet, stored a placeholder")
        print(f"secret {API_KEY_SECRET}: version {secret.version} (the value is never printed)")

        request = await svc.limiter.check_rate_limit("api_generation", user)
        if not request.allowed:
            print(f"api_generation: {user} denied, retry after {request.retry_after:.1f}s")
            return 1
        print(f"api_generation: {user} allowed, {request.remaining} of {request.limit} left")

        charge = len(prompt.split()) + MAX_TOKENS  # the most this request can cost
        tokens = await svc.limiter.check_rate_limit("tokens_per_minute", user, charge)
        if not tokens.allowed:
            print(f"tokens_per_minute: {user} denied {charge} tokens")
            return 1

        try:
            answer, used = await breaker.call(call_model, secret.value, prompt, MAX_TOKENS)
        except CircuitOpenError as exc:
            await svc.limiter.refund("tokens_per_minute", user, charge)  # nothing was sent
            print(f"breaker openai_api: {exc.state} ({exc.reason or 'no reason given'})")
            return 1
        print(f"model: {answer!r}")

        refunded = await svc.limiter.refund("tokens_per_minute", user, charge - used)
        left = f", {refunded.remaining} left" if refunded else ""  # None: the store failed
        print(f"tokens_per_minute: charged {charge}, used {used}, refunded {charge - used}{left}")

        async with svc.db.get_async_session() as session:
            session.add(
                ModelUsage(
                    provider="local",
                    model="llama",
                    prompt_tokens=len(prompt.split()),
                    completion_tokens=used,
                    total_tokens=len(prompt.split()) + used,
                    user_id=user,
                )
            )
        async with svc.db.get_async_session() as session:
            calls = await session.scalar(
                select(func.count()).select_from(ModelUsage).where(ModelUsage.user_id == user)
            )
        print(f"usage: {calls} model call(s) recorded for {user}")
        return 0


if __name__ == "__main__":
    user = sys.argv[1] if len(sys.argv) > 1 else "alice"
    prompt = sys.argv[2] if len(sys.argv) > 2 else "what does revoctl guard"
    sys.exit(asyncio.run(serve(user, prompt)))
