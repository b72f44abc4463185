"""``[tracing]``: whether spans are made, where they go, under which service, how many."""

from __future__ import annotations

from pydantic import Field, field_validator

from revoctl.core._settings import Section


class TracingConfig(Section):
    """``[tracing]`` (extra ``revoctl[tracing]``): OpenTelemetry spans, off by default.

    ``endpoint`` is the OTLP/HTTP traces URL (``http://collector:4318/v1/traces``); empty,
    the SDK's own ``OTEL_EXPORTER_OTLP_*`` environment variables decide. ``sample_ratio``
    is the share of new traces kept; a request that arrives with a ``traceparent`` follows
    its caller's decision.
    """

    enabled: bool = False
    endpoint: str = ""
    service_name: str = Field("revoctl", min_length=1)
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(
                "an OTLP/HTTP URL (http:// or https://, e.g. http://collector:4318/v1/traces), "
                'or "" for the SDK\'s OTEL_EXPORTER_OTLP_* variables'
            )
        return value
