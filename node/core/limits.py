"""Protocol limits. Every limit is configurable; the defaults are the safe ones the spec names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Size, count and time bounds applied when decoding and validating events."""

    max_event_bytes: int = 64 * 1024
    max_controllers: int = 16
    # Operator sets (docs/protocol.md 5.7): at most this many operators, and a maxKeys of at most this.
    max_operators: int = 16
    max_operator_keys: int = 1024
    max_keys_per_event: int = 64
    max_keys_per_subject: int = 1024
    max_purposes: int = 16
    max_key_id_chars: int = 64
    max_purpose_chars: int = 32
    max_metadata_bytes: int = 4096
    max_reason_bytes: int = 1024
    max_public_key_bytes: int = 33
    # Admission rule only (not part of log validity): reject events stamped this far in the future.
    max_clock_skew_s: int = 300
    # Nesting of arrays and objects in any JSON text the node parses (events, messages, frames,
    # bundles, ballots, request bodies). keyreg's own formats nest at most 8 deep; the bound is
    # checked before parsing (codec.check_json_depth), so the parser never recurses deeper than it.
    max_json_depth: int = 64
    # Node capacity, not a validity rule: subjects this node holds at most (each costs ~7 KB of
    # memory and ~5 KB of disk); a new subject past it is refused with the code "capacity"
    # (docs/adr/0027-subject-admission.md). Size it to the network, with room to grow.
    max_subjects: int = 1_000_000


DEFAULT_LIMITS = Limits()
