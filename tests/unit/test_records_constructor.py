"""records.constructor builds the same instances as calling the class, for every record it serves."""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import fields
from typing import Any

import pytest

from node.core import log, records
from node.core.records import constructor

RECORDS = [
    records.Domain,
    records.PublishedKey,
    records.KeyRetirement,
    records.Inception,
    records.Update,
    records.Rotation,
    records.Revocation,
    records.SignedEvent,
    records.GovernanceRevocation,
    log.KeyRecord,
    log.SubjectState,
    log.Accepted,
]


def _values(cls: type[Any]) -> list[Any]:
    return [(i, f.name.encode()) for i, f in enumerate(fields(cls))]


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_constructor_equals_the_class_call(cls: type[Any]) -> None:
    make = constructor(cls)
    values = _values(cls)
    got, want = make(*values), cls(*values)
    assert type(got) is cls
    assert got == want
    assert hash(got) == hash(want)
    assert repr(got) == repr(want)
    assert [getattr(got, f.name) for f in fields(cls)] == values
    assert copy.deepcopy(got) == want
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.__setattr__(fields(cls)[0].name, 1)
    assert not hasattr(got, "__dict__")
    assert sys.getsizeof(got) == sys.getsizeof(want)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_constructor_keeps_defaults(cls: type[Any]) -> None:
    required = [f for f in fields(cls) if f.default is dataclasses.MISSING]
    values = [f.name for f in required]
    assert constructor(cls)(*values) == cls(*values)
