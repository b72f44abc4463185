"""What every settings model shares: unknown keys are errors, values are frozen.

Each service declares its own settings beside its code (``core/<service>/settings.py``)
on this base; `revoctl.config` only composes them and layers the sources.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One table of the configuration: a typo is an error, a loaded value never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
