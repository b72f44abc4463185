"""The OpenTelemetry SDK behind `revoctl.core.tracing`, imported only once tracing is on.

One ``TracerProvider`` of this process's own (the global one is left to the application
around revoctl): ``ParentBased(TraceIdRatioBased(sample_ratio))``, so a request that
arrives with a sampled ``traceparent`` is kept whatever the ratio, and spans go out in
batches through OTLP over HTTP (protobuf) from a background thread; what is left is sent
at exit. A test hands in an exporter of its own, which is then called at each span's end.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from revoctl import __version__
from revoctl.core.tracing._no_span import NO_SPAN
from revoctl.core.tracing.settings import TracingConfig

_PROPAGATOR = TraceContextTextMapPropagator()
_KINDS = {
    "internal": trace.SpanKind.INTERNAL,
    "server": trace.SpanKind.SERVER,
    "client": trace.SpanKind.CLIENT,
}


class Tracing:
    """A tracer provider built from ``[tracing]``, and the calls `revoctl.core.tracing`
    makes on it."""

    def __init__(
        self,
        config: TracingConfig,
        exporter: SpanExporter | None = None,
        export_seconds: float | None = None,
    ) -> None:
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create(
                {SERVICE_NAME: config.service_name, "service.version": __version__}
            ),
        )
        if exporter is None:
            otlp = _otlp_exporter(config, export_seconds)
            self.provider.add_span_processor(BatchSpanProcessor(otlp))
        else:
            self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("revoctl", __version__)

    def start(
        self,
        name: str,
        attributes: Mapping[str, Any],
        kind: str = "internal",
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The context manager that makes ``name`` the current span while it is open; a
        server span's parent is the ``traceparent`` in ``headers``, when they carry one.

        Inside a trace not sampled, a child would be a span that records nothing: the
        shared no-op stands in for it (what a ``traceparent`` then carries is the unsampled
        parent's, which says the same), so ``sample_ratio < 1`` saves most of the cost.
        """
        if headers is None:
            current = trace.get_current_span()
            if not current.is_recording() and current.get_span_context().is_valid:
                return NO_SPAN
        return _Current(
            self.tracer.start_as_current_span(
                name,
                context=None if headers is None else _PROPAGATOR.extract(headers),
                kind=_KINDS[kind],
                attributes={k: v for k, v in attributes.items() if v is not None},
                record_exception=False,
                set_status_on_exception=False,
            )
        )

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """The current span's ``traceparent`` into ``headers`` (nothing when none is)."""
        _PROPAGATOR.inject(headers)

    def shutdown(self, timeout_seconds: float) -> None:
        """Export what is buffered, within ``timeout_seconds``, and stop."""
        self.provider.force_flush(int(timeout_seconds * 1000))
        self.provider.shutdown()


class _Current:
    """The span current while the block runs; an exception that leaves the block marks it
    failed with the exception's type only: its message (a driver's, with the statement's
    parameters; an upstream's) is never exported, nor its traceback."""

    __slots__ = ("_opened", "_span")

    def __init__(self, opened: Any) -> None:
        self._opened = opened

    def __enter__(self) -> Any:
        self._span = self._opened.__enter__()
        return self._span

    def __exit__(self, kind: type[BaseException] | None, exc: object, tb: object) -> Any:
        if kind is not None and self._span.is_recording():
            self._span.set_attribute("error.type", kind.__qualname__)
            self._span.set_status(Status(StatusCode.ERROR))
        return self._opened.__exit__(kind, exc, tb)


def _otlp_exporter(config: TracingConfig, export_seconds: float | None) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=config.endpoint or None, timeout=export_seconds)
