"""Protocol decode throughput: ``protocol.decode_batch`` against plain ``orjson.loads`` of the same bytes.

The reference is the floor of any JSON decoder in Python: parsing alone, no validation. The ratio says what
the total, validating decoder (ids, units, finite values, times, extension fields) costs on top of it.
Payloads are realistic: 100-reading SenML batches from one gateway with mixed kinds.
"""

import random

import orjson

from bench.common import measure
from protocol import Batch, Reading, decode_batch, encode_batch

__all__ = ["run"]

_KINDS = (
    ("gas-b1-{}", "%LEL", 0.5),
    ("smoke-b1-{}", "dB/m", 0.01),
    ("temp-b1-{}", "Cel", 22.0),
    ("water-b1-{}", "m", 0.0),
)


def _payloads(messages: int, per_message: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    base = 1_764_400_000_000
    payloads = []
    for seq in range(1, messages + 1):
        readings = []
        for i in range(per_message):
            name, unit, level = _KINDS[i % len(_KINDS)]
            value = round(level + rng.random(), 3)
            readings.append(Reading(name.format(i // len(_KINDS)), base + seq * 1000 + i, value, unit))
        payloads.append(encode_batch(Batch("hongxing", "gw-b1", 1, seq, tuple(readings))))
    return payloads


def run() -> dict[str, float]:
    messages, per_message = 2_000, 100
    payloads = _payloads(messages, per_message)
    readings = messages * per_message

    def anju() -> None:
        for payload in payloads:
            decode_batch(payload, community="hongxing", gateway="gw-b1")

    def reference() -> None:
        for payload in payloads:
            orjson.loads(payload)

    ours = measure(anju).rate(readings)
    plain = measure(reference).rate(readings)
    return {"decode_readings_per_s": ours, "orjson_loads_readings_per_s": plain, "ratio": ours / plain}
