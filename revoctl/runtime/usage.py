"""Request and model-usage rows (``request_logs``, ``model_usage``), written off the response path.

`UsageLog.record` turns each request the gateway answered into one `RequestRecord` (with
its model call's tokens and cost, priced from the model's configuration) and counts it in
the metrics; `UsageLog.record_request` writes the row of a request that had no exchange
(refused before one existed, or ``GET /v1/models``) from what is known of it. The records
go to a `BatchWriter`, and a batch is one transaction.
While the database is away the rows wait in the bounded buffer (``gateway.usage_buffer``);
what overflows is counted (``revoctl_usage_rows_dropped_total``) and logged, and no
response ever waits for the database. Shutdown flushes what is left.

A record the database refuses (a value too long for its column) is logged with its
request id and dropped alone; the others are written. Writing a batch again (after a
COMMIT whose answer was lost) adds nothing: each record carries an id of its own
(``record_id``, unique), and the insert skips the records already there, with their
usage rows.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from revoctl.core._batch import BatchWriter
from revoctl.core.health import worst

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from starlette.requests import Request

    from revoctl.core.db import DatabaseManager
    from revoctl.core.gateway.settings import ModelConfig
    from revoctl.runtime.exchange import Exchange
    from revoctl.runtime.identity import Caller
    from revoctl.runtime.metrics import GatewayMetrics
    from revoctl.runtime.providers import Usage


STALE_BUFFER_SECONDS = 10.0
"""When the oldest row still to be written has waited longer than this, the runtime's
``/health`` reports its database ``degraded`` (rows are not reaching it)."""

MAX_USER_LENGTH = 255
"""The longest ``user`` a request may name: what ``request_logs.user_id`` holds (a longer
one is refused at the edge, before anything is charged or called)."""


@dataclass(frozen=True, slots=True)
class ModelCall:
    """Tokens a provider reported for one answer, and what they cost."""

    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the gateway answered, and the model call behind it, if any."""

    ts: datetime
    method: str
    path: str
    status_code: int
    duration_ms: float
    user_id: str | None
    key_name: str | None
    client_ip: str | None
    request_id: str
    call: ModelCall | None
    model: str | None = None
    """The model the request named, if it named one."""
    error_code: str | None = None
    """A refusal's ``code``."""
    record_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """This record's own id: what makes writing it twice harmless."""

    def describe(self) -> str:
        """How the log names the record: its request id, never its data."""
        return f"the row of request {self.request_id}"


def cost_of(
    prompt_tokens: int, completion_tokens: int, per_1k_in: float, per_1k_out: float
) -> Decimal:
    """The price of one answer from the configured per-1k-token prices, to the micro-dollar."""
    cost = Decimal(str(per_1k_in)) * prompt_tokens + Decimal(str(per_1k_out)) * completion_tokens
    return (cost / 1000).quantize(Decimal("0.000001"))


def with_usage_buffer(report: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """The health document with the usage writer's buffer (`BatchWriter.stats`) under the
    database's entry (``usage_buffer``: rows waiting, the oldest one's age, rows dropped);
    the database is ``degraded`` at least while the oldest row has waited more than
    `STALE_BUFFER_SECONDS`, and the overall status follows."""
    database = report["services"]["database"]
    buffered, oldest = stats["buffered"], stats["oldest_seconds"]
    database["usage_buffer"] = {
        "buffered": buffered,
        "oldest_seconds": oldest,
        "dropped": stats["dropped"],
    }
    if oldest is not None and oldest > STALE_BUFFER_SECONDS:
        reason = f"{buffered} usage rows not written, the oldest for {oldest:.0f}s"
        database["reason"] = "; ".join(filter(None, (database.get("reason"), reason)))
        database["status"] = worst([database["status"], "degraded"])
        report["status"] = worst([s["status"] for s in report["services"].values()])
    return report


class UsageLog:
    """Each answered request's row, its model call's usage and cost, and its metrics."""

    def __init__(
        self,
        db: Callable[[], DatabaseManager],
        models: dict[str, ModelConfig],
        metrics: GatewayMetrics,
        *,
        capacity: int,
    ) -> None:
        self.models = models
        self.metrics = metrics
        self.writer = BatchWriter(
            UsageSink(db), what="usage rows", describe=RequestRecord.describe, capacity=capacity
        )

    def record(
        self,
        exchange: Exchange,
        status: int,
        usage: Usage | None,
        code: str | None = None,
        *,
        cached: bool = False,
    ) -> None:
        """The request's row (written in the background) and its metrics, now; ``code`` is a
        refusal's; ``cached``: answered from the response cache (a call of provider
        ``exchange.provider``, 0 tokens, cost 0)."""
        elapsed = time.perf_counter() - exchange.started
        call = None
        model = exchange.served_by or exchange.model
        if cached:
            call = ModelCall(str(exchange.provider), model, 0, 0, Decimal(0))
        elif usage is not None and exchange.served_by is not None:
            config = self.models[exchange.served_by]
            provider = exchange.provider or config.providers()[0]
            prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
            call = ModelCall(
                provider=provider,
                model=exchange.served_by,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost=cost_of(
                    prompt, completion, config.input_cost_per_1k, config.output_cost_per_1k
                ),
            )
            self.metrics.tokens.labels(provider, model, "prompt").inc(prompt)
            self.metrics.tokens.labels(provider, model, "completion").inc(completion)
            self.metrics.cost.labels(provider, model).inc(float(call.cost))
        self.metrics.requests.labels(exchange.route, model, str(status)).inc()
        self.metrics.latency.labels(exchange.route, model).observe(elapsed)
        self.metrics.overhead.observe(max(0.0, elapsed - exchange.provider_seconds))
        self.writer.add(
            RequestRecord(
                ts=datetime.now(UTC),
                method="POST",
                path=exchange.route,
                status_code=status,
                duration_ms=round(elapsed * 1000, 3),
                user_id=exchange.caller.user or exchange.caller.key_name,
                key_name=exchange.caller.key_name,
                client_ip=exchange.caller.client_ip,
                request_id=exchange.request_id,
                call=call,
                model=exchange.model,
                error_code=code,
            )
        )

    def record_request(
        self, request: Request, caller: Caller | None, status: int, code: str | None = None
    ) -> None:
        """The row of a request with no exchange, from what is known of it: the caller (None:
        not identified), the model and ``user`` its body named and when it began
        (``request.state``: `Gateway.identify`, the access log's middleware)."""
        state = request.state
        started = getattr(state, "started", None)
        elapsed = 0.0 if started is None else time.perf_counter() - started
        if caller is not None:
            key_name, client = caller.key_name, caller.client_ip
        else:  # a key refused for its tier was identified: its name is known
            key_name = getattr(state, "key_name", None)
            client = request.client.host if request.client else None
        self.writer.add(
            RequestRecord(
                ts=datetime.now(UTC),
                method=request.method,
                path=request.url.path,
                status_code=status,
                duration_ms=round(elapsed * 1000, 3),
                user_id=getattr(state, "user", None) or key_name,
                key_name=key_name,
                client_ip=client,
                request_id=state.request_id,
                call=None,
                model=getattr(state, "model", None),
                error_code=code,
            )
        )

    def stats(self) -> dict[str, Any]:
        """The writer's buffer: rows waiting, the oldest one's age, rows dropped."""
        return self.writer.stats()


class UsageSink:
    """Writes a batch of records: request rows and usage rows, in one transaction; records
    already written (by an attempt whose answer was lost) are skipped, usage rows included."""

    def __init__(self, db: Callable[[], DatabaseManager]) -> None:
        self._db = db

    async def __call__(self, records: Sequence[RequestRecord]) -> None:
        from revoctl.core.db._errors import refused_rows

        db = self._db()
        with refused_rows():
            await db.transaction(lambda session: _insert(session, db.backend, records))


async def _insert(session: AsyncSession, backend: str, records: Sequence[RequestRecord]) -> None:
    """``INSERT ... ON CONFLICT (record_id) DO NOTHING RETURNING record_id``, then the usage
    rows of the records it returned."""
    from sqlalchemy.dialects import postgresql, sqlite

    from revoctl.core.db.models import ModelUsage, RequestLog

    insert = postgresql.insert if backend == "postgresql" else sqlite.insert
    requests = [
        {
            "ts": r.ts,
            "method": r.method,
            "path": r.path[:2048],
            "status_code": r.status_code,
            "duration_ms": r.duration_ms,
            "user_id": r.user_id,
            "api_key_id": r.key_name,
            "client_ip": r.client_ip,
            "request_id": r.request_id,
            "record_id": r.record_id,
            "model": r.model,
            "error_code": r.error_code,
        }
        for r in records
    ]
    statement = (
        insert(RequestLog)
        .on_conflict_do_nothing(index_elements=[RequestLog.record_id])
        .returning(RequestLog.record_id)
    )
    written = set((await session.execute(statement, requests)).scalars())
    usage = [
        {
            "ts": r.ts,
            "provider": r.call.provider,
            "model": r.call.model,
            "prompt_tokens": r.call.prompt_tokens,
            "completion_tokens": r.call.completion_tokens,
            "total_tokens": r.call.prompt_tokens + r.call.completion_tokens,
            "estimated_cost": r.call.cost,
            "request_id": r.request_id,
            "user_id": r.user_id,
        }
        for r in records
        if r.call is not None and r.record_id in written
    ]
    if usage:
        await session.execute(insert(ModelUsage), usage)
