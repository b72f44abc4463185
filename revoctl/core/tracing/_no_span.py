"""The span while tracing is off, shared by `revoctl.core.tracing` and its SDK half."""

from __future__ import annotations

from typing import Any


class _NoSpan:
    """The span while tracing is off: a context manager that does nothing, shared by all."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def is_recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: Any) -> None:
        return None


NO_SPAN = _NoSpan()
"""The one do-nothing span every hook returns while tracing is off (or a trace is unsampled)."""
