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


def _by_descriptors(cls: type[Any], values: list[Any]) -> Any:
    """An instance built the way the generated __init__ does, slot by slot."""
    obj = object.__new__(cls)
    for f, v in zip(fields(cls), values, strict=True):
        object.__setattr__(obj, f.name, v)
    return obj


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_fast_init_equals_setting_each_slot(cls: type[Any]) -> None:
    values = _values(cls)
    got, want = cls(*values), _by_descriptors(cls, values)
    assert type(got) is cls
    assert got == want
    assert [getattr(got, f.name) for f in fields(cls)] == values
    assert cls(**{f.name: v for f, v in zip(fields(cls), values, strict=True)}) == want
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(got, fields(cls)[0].name, 1)
    assert dataclasses.replace(got) == want


@pytest.mark.parametrize("cls", [c for c in RECORDS if len(fields(c)) >= 5], ids=lambda c: c.__name__)
def test_fast_init_of_a_subclass_keeps_the_subclass(cls: type[Any]) -> None:
    sub = type(f"Sub{cls.__name__}", (cls,), {"__slots__": ("extra",)})
    values = _values(cls)
    got = sub(*values)
    assert type(got) is sub
    assert [getattr(got, f.name) for f in fields(cls)] == values
    assert cls.__init__.__globals__.get("_builder") is not None  # the builder path, not for sub
