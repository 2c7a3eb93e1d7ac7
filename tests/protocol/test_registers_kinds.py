from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.kinds import KINDS
from protocol.registers import (
    HEADER_COUNT,
    KIND_CODES,
    KIND_EXPONENTS,
    RING_ADDRESS,
    RING_CAPACITY,
    RING_COUNT,
    Header,
    Sample,
    decode_header,
    decode_ring,
    encode_header,
    encode_sample,
    from_raw,
    ring_slot,
    to_raw,
)
from tests.vectors import register_vectors

VECTORS = register_vectors()


@given(
    counter=st.integers(1, 2**32 - 1 - RING_CAPACITY * 3),
    produced=st.integers(1, RING_CAPACITY * 3),
    raws=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=RING_CAPACITY * 3, max_size=RING_CAPACITY * 3),
)
def test_ring_keeps_the_newest_samples_in_order(counter: int, produced: int, raws: list[int]) -> None:
    words = [0] * RING_COUNT
    for offset in range(produced):
        seq = counter + offset
        start = ring_slot(seq) - RING_ADDRESS
        words[start : start + 8] = encode_sample(Sample(seq, 1_764_400_000_000 + seq, raws[offset]))
    samples = decode_ring(words)
    newest = counter + produced - 1
    expected = list(range(max(counter, newest - RING_CAPACITY + 1), newest + 1))
    assert [s.seq for s in samples] == expected
    assert all(s.raw == raws[s.seq - counter] and s.time_ms == 1_764_400_000_000 + s.seq for s in samples)


def test_header_round_trip_with_signed_fields() -> None:
    header = Header(kind_code=1, status=2, battery_pct=87, signal_dbm=-71, exponent=-3, capacity=15, counter=70_000)
    assert decode_header(encode_header(header)) == header


def test_quantisation_is_exact_for_register_values() -> None:
    assert from_raw(253, -1) == 25.3
    assert from_raw(to_raw(0.153, -3), -3) == 0.153
    assert from_raw(-400, -1) == -40.0


def test_every_kind_has_ordered_grades_and_a_local_alarm_with_a_source() -> None:
    for kind in KINDS.values():
        if any(point.grade <= 3 for point in kind.set_points):
            assert kind.local_alarm is not None, kind.name
        for point in kind.set_points:
            assert point.source and 1 <= point.grade <= 4
            assert point.clear < point.value if point.above else point.clear > point.value
            assert kind.minimum <= point.value <= kind.maximum


def test_kind_table_is_the_golden_one() -> None:
    kinds = VECTORS["kinds"]
    assert {name: kind["code"] for name, kind in kinds.items()} == KIND_CODES
    assert {name: kind["exponent"] for name, kind in kinds.items()} == KIND_EXPONENTS
    assert {name: KINDS[name].unit for name in kinds} == {name: kind["unit"] for name, kind in kinds.items()}


@pytest.mark.parametrize("vector", VECTORS["headers"], ids=lambda v: v["name"])
def test_golden_header_decodes_and_encodes_exactly(vector: dict[str, Any]) -> None:
    header = Header(**vector["fields"])
    assert len(vector["words"]) == HEADER_COUNT
    assert decode_header(vector["words"]) == header
    assert encode_header(header) == vector["words"]
    assert (KIND_CODES[vector["kind"]], KIND_EXPONENTS[vector["kind"]]) == (header.kind_code, header.exponent)


@pytest.mark.parametrize("vector", VECTORS["entries"], ids=lambda v: v["name"])
def test_golden_ring_entry_decodes_and_encodes_exactly(vector: dict[str, Any]) -> None:
    sample = Sample(**vector["fields"])
    _, time_ms, value, unit = vector["reading"]
    exponent = KIND_EXPONENTS[vector["kind"]]
    assert len(vector["words"]) == 8
    assert decode_ring(vector["words"]) == [sample]
    assert encode_sample(sample) == vector["words"]
    assert ring_slot(sample.seq) == vector["address"]
    ring = [0] * RING_COUNT  # the entry alone in an otherwise empty ring, at its documented address
    start = vector["address"] - RING_ADDRESS
    ring[start : start + 8] = vector["words"]
    assert decode_ring(ring) == [sample]
    assert from_raw(sample.raw, exponent) == value  # exactly: 25.3 is 253 / 10, not 253 * 0.1
    assert to_raw(value, exponent) == sample.raw
    assert (time_ms, unit) == (sample.time_ms, KINDS[vector["kind"]].unit)
