"""Valid event objects from the test vectors, and paths into JSON objects for mutating them.

Shared by the tests of the decoder (test_decoder): each mutates a valid event at every path.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
LOGS = json.loads((VECTORS / "valid_logs.json").read_text())["logs"]
WIRE: list[dict[str, Any]] = [e for log in LOGS for e in log["events"]]
# One event of each shape: inception, update (publish / retire / metadata), rotation, revocation.
SHAPES = list({(e["kind"], bool(e.get("publish")), bool(e.get("retire"))): e for e in WIRE}.values())


def json_paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON object (dict keys and list indexes)."""
    out: list[tuple[Any, ...]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out.extend(json_paths(v, (*prefix, k)))
    return out


def with_value(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``obj`` with ``value`` at ``path`` (``...`` deletes the entry there)."""
    obj = copy.deepcopy(obj)
    target = obj
    for k in path[:-1]:
        target = target[k]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj
