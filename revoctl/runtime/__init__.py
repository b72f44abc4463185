"""The runtime: an LLM gateway built on the core services, as the platform would use them.

It imports `revoctl.core` and never the CLI; `revoctl serve` runs it under uvicorn.
"""

from __future__ import annotations
