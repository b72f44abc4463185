"""Nested tables as dotted keys, the way configuration keys and table rows name them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": {}}`` -> ``{"a.b": 1, "c": {}}``: empty tables stay leaves."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def indexed_rows(key: str, value: Any) -> list[tuple[str, Any]]:
    """One setting as table rows: a list of tables is one row per field, named like
    ``limits.rules[0].name``; any other value is one row, as it is."""
    if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        return [
            (f"{key}[{index}].{field}", field_value)
            for index, item in enumerate(value)
            for field, field_value in flatten(item).items()
        ]
    return [(key, value)]
