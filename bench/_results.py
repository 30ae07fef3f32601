"""How a bench run records itself: machine context added to its figures, saved under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def speed_probe_ms(loops: int = 1_000_000) -> float:
    """Milliseconds one core takes for a fixed pure-Python loop (best of 3), taken when a run ends.

    The development VM's per-core speed moves by up to ~40% over minutes (host contention: the
    same gossip run measured 181 and 273 us of CPU per event an hour apart). Figures from
    different runs compare only alongside this probe; a larger value is a slower machine.
    """
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        x = 0
        for i in range(loops):
            x += i * i
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 1)


def finish(name: str, figures: dict[str, Any], save: bool) -> str:
    """The figures with how the run was made, as the JSON line to print last; written to
    bench/results/<name>.json when ``save``."""
    out = {
        "bench": name,
        **figures,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
        "speed_probe_ms": speed_probe_ms(),
        "machine": platform.machine(),
        "timestamp": int(time.time()),
    }
    if save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    return json.dumps(out)
