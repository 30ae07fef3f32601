"""tests/ceremony reuses the API tests' helpers (tests/api/api_support.py: a registry, a clock, a subject)."""

from __future__ import annotations

import sys
from pathlib import Path

_API = str(Path(__file__).resolve().parents[1] / "api")
if _API not in sys.path:
    sys.path.append(_API)
