from __future__ import annotations

from revoctl.cli import main

main()
