import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import MAX_PAYLOAD_BYTES, Batch, Reading, Rejection, RejectReason, decode_batch, encode_batch, senml
from protocol.units import UNITS
from tests.vectors import senml_vectors

VECTORS = senml_vectors()


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors_decode_to_the_expected_readings(vector: dict) -> None:
    batch = decode_batch(vector["payload"].encode(), community=vector["community"], gateway=vector["gateway"])
    assert isinstance(batch, Batch), batch
    expect = vector["expect"]
    assert (batch.session, batch.seq) == (expect["session"], expect["seq"])
    assert [[r.sensor, r.time_ms, r.value, r.unit] for r in batch.readings] == expect["readings"]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors_are_rejected_with_their_reason(vector: dict) -> None:
    result = decode_batch(vector["payload"].encode(), community=vector["community"], gateway=vector["gateway"])
    assert isinstance(result, Rejection), result
    assert result.reason.value == vector["reason"]
    assert result.detail


def test_oversized_payload_is_refused_before_parsing() -> None:
    payload = b"[" + b" " * MAX_PAYLOAD_BYTES + b"]"
    result = decode_batch(payload, community="c", gateway="g")
    assert isinstance(result, Rejection) and result.reason is RejectReason.OVERSIZED


def test_encode_refuses_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="at least one reading"):
        encode_batch(Batch("c", "g", 1, 1, ()))


ids = st.from_regex(r"[a-z0-9-]{1,64}", fullmatch=True)
readings = st.builds(
    Reading,
    sensor=ids,
    time_ms=st.integers(min_value=946_684_800_000 + 86_400_000, max_value=4_102_444_800_000 - 86_400_000),
    value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
    unit=st.sampled_from(sorted(UNITS)),
)


@settings(max_examples=300, deadline=None)
@given(
    community=ids,
    gateway=ids,
    session=st.integers(0, 2**63 - 1),
    seq=st.integers(0, 2**63 - 1),
    first=readings,
    rest=st.lists(st.tuples(readings, st.integers(-86_000_000, 86_000_000)), max_size=20),
)
def test_encode_then_decode_round_trips(
    community: str, gateway: str, session: int, seq: int, first: Reading, rest: list[tuple[Reading, int]]
) -> None:
    others = tuple(Reading(r.sensor, first.time_ms + offset, r.value, r.unit) for r, offset in rest)
    batch = Batch(community, gateway, session, seq, (first, *others))
    decoded = decode_batch(encode_batch(batch), community=community, gateway=gateway)
    assert isinstance(decoded, Batch), decoded
    assert decoded.session == session and decoded.seq == seq
    assert [(r.sensor, r.time_ms, r.unit) for r in decoded.readings] == [
        (r.sensor, r.time_ms, r.unit) for r in batch.readings
    ]
    for got, sent in zip(decoded.readings, batch.readings, strict=True):
        assert math.isclose(got.value, sent.value, rel_tol=0, abs_tol=0) or got.value == sent.value


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    assert isinstance(decode_batch(payload, community="c", gateway="g"), Batch | Rejection)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["bn", "bt", "anju_ses", "anju_seq", "n", "u", "v", "vb", "t", "x"]), json_values
        ),
        max_size=4,
    )
)
def test_arbitrary_json_packs_never_raise(pack: list[dict[str, object]]) -> None:
    payload = json.dumps(pack).encode()  # stdlib: big integers are valid JSON too
    assert isinstance(decode_batch(payload, community="c", gateway="g"), Batch | Rejection)


_BASE = {"bn": "urn:anju:c:g:", "bt": 1_790_000_000.25, "anju_ses": 1, "anju_seq": 2}
near_valid = {
    "n": st.sampled_from(["gas-1", "smoke-2", "Bad Id", ""]) | st.none() | st.integers(0, 3) | st.just(["gas-1"]),
    "u": st.sampled_from(["%LEL", "dB/m", "furlong"]) | st.none() | st.just(["%LEL"]),
    "v": st.floats() | st.integers(-5, 5) | st.booleans() | st.none() | st.just("1.0"),
    "vb": st.booleans() | st.none(),
    "t": st.floats(-1e6, 1e6)
    | st.sampled_from([math.nan, math.inf, 86_400.0, -86_400.0])
    | st.integers(-100, 100)
    | st.none(),
    "x": st.just(1),
    "bn": st.just("urn:anju:c:g:"),
}


def _record(draw: st.DrawFn, *, good: bool) -> dict[str, object]:
    if good:
        record: dict[str, object] = {
            "n": draw(st.sampled_from(["gas-1", "smoke-2"])),
            "u": draw(st.sampled_from(["%LEL", "dB/m"])),
            "v": draw(st.floats(-1e9, 1e9)),
        }
        if draw(st.booleans()):
            record["t"] = draw(st.floats(-86_400.0, 86_400.0))
        return record
    keys = draw(st.lists(st.sampled_from(sorted(near_valid)), unique=True, max_size=5))
    return {key: draw(near_valid[key]) for key in keys}


@st.composite
def packs(draw: st.DrawFn) -> list[dict[str, object]]:
    """Packs of mostly well-formed records with now and then one that breaks a rule (or two)."""
    records = [_record(draw, good=draw(st.integers(0, 9)) > 0) for _ in range(draw(st.integers(1, 12)))]
    return [{**_BASE, **records[0]}, *records[1:]]


def test_a_well_formed_pack_takes_the_column_path() -> None:
    pack = [{**_BASE, "n": "gas-1", "u": "%LEL", "v": 1.5}, {"n": "gas-1", "u": "%LEL", "v": 2.5, "t": 1.0}]
    senml._record_columns(pack, 1_790_000_000.25, 1_790_000_000_250)  # the ids are seen once
    assert senml._fast_columns(pack, 1_790_000_000.25, 1_790_000_000_250) == (
        ["gas-1", "gas-1"],
        [1_790_000_000_250, 1_790_000_001_250],
        [1.5, 2.5],
        ["%LEL", "%LEL"],
    )


@settings(max_examples=1_000, deadline=None)
@given(packs())
def test_the_column_path_accepts_only_what_the_record_loop_accepts_and_gives_the_same(
    pack: list[dict[str, object]],
) -> None:
    bt = 1_790_000_000.25
    checked = senml._record_columns(pack, bt, round(bt * 1000.0))
    fast = senml._fast_columns(pack, bt, round(bt * 1000.0))
    if fast is not None:
        assert not isinstance(checked, Rejection), (pack, checked)
        assert fast == checked
        assert [type(v) for v in fast[2]] == [float] * len(pack) and [type(t) for t in fast[1]] == [int] * len(pack)
