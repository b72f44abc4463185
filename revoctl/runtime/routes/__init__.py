"""The gateway's HTTP routes: one module per concern, each a thin layer over `Gateway`."""

from __future__ import annotations
