"""How a bench run records itself: machine context added to its figures, saved under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def finish(name: str, figures: dict[str, Any], save: bool) -> str:
    """The figures with how the run was made, as the JSON line to print last; written to
    bench/results/<name>.json when ``save``."""
    out = {
        "bench": name,
        **figures,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
        "machine": platform.machine(),
        "timestamp": int(time.time()),
    }
    if save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    return json.dumps(out)
