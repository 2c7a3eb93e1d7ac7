"""Readings as InfluxDB line protocol: one ``reading`` point per row, written with ``precision=ms``.

A line is ``reading,community=C,gateway=G,sensor=S value=V,flags=Fi T``:
- tags ``community``, ``gateway``, ``sensor`` (in this order, which is InfluxDB's sorted order, so the server
  need not sort them), escaped as the line protocol asks for tag values: ``,`` ``=`` and space get a backslash;
- field ``value`` a float in the unit of the sensor's kind, written as its shortest round-trip text (Ryu, via
  orjson; ``1e+20`` style exponents, which InfluxDB reads) so the server stores exactly the double it was given;
- field ``flags`` an integer (``i`` suffix, ``ReadingFlag`` bits);
- the timestamp in Unix milliseconds (the device time).

This is on the ingest path at 100k+ readings/s, so it works on columns: the tag part of a line is built once per
(sensor, gateway) pair and kept, and the lines are put together by list slicing and one join per request body,
never one object per point. NaN and inf
have no line-protocol form (the server answers 400 "invalid number" for the whole request); the hub rejects them
at decode, and this writer refuses them too (``ValueError`` naming the sensor) rather than send a bad line.
"""

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import orjson

from hub.store.base import ReadingColumns

__all__ = ["MEASUREMENT", "LineEncoder", "encode", "escape_tag", "require_finite"]

MEASUREMENT = "reading"

_TAG_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})


def escape_tag(text: str) -> str:
    """``text`` as a line-protocol tag key or value: ``,`` ``=`` and space escaped with a backslash.

    Refused (``ValueError``): empty text (InfluxDB drops a tag without a value), a line break (ends the line; it
    has no escape in tags) and a trailing backslash (it would escape the delimiter after it). Backslashes
    elsewhere are kept as they are: InfluxDB 1.x does not unescape ``\\\\`` in tags, so escaping them would
    change the stored name.
    """
    if not text:
        raise ValueError("an empty tag value cannot be written in line protocol")
    if "\n" in text or "\r" in text:
        raise ValueError(f"tag value {text!r} contains a line break")
    if text.endswith("\\"):
        raise ValueError(f"tag value {text!r} ends with a backslash")
    return text.translate(_TAG_ESCAPES)


def require_finite(readings: ReadingColumns) -> None:
    """Raise ``ValueError`` naming the first sensor whose value is NaN or infinite (line protocol has neither)."""
    _require_finite(readings.sensor, readings.time_ms, readings.value)


def _require_finite(sensors: Sequence[str], times: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise ValueError(
            f"reading of sensor {sensors[bad]!r} at {int(times[bad])} ms is {float(values[bad])}: "
            "line protocol has no NaN or infinity"
        )


def _texts(column: npt.NDArray[np.generic], dtype: type[np.generic]) -> list[str]:
    """Each number's shortest text that reads back to the same value (orjson's Ryu / integer formatting in C:
    about 4x faster than ``repr`` per float, which would otherwise be most of the encoding time)."""
    text: bytes = orjson.dumps(np.ascontiguousarray(column, dtype), option=orjson.OPT_SERIALIZE_NUMPY)
    return text[1:-1].decode("ascii").split(",")


class LineEncoder:
    """Line protocol for one community's readings, keeping the tag part of each (sensor, gateway) pair it met.

    A line is assembled from four texts (tags, value, flags, time) put in place by list slice assignment and
    joined once per request body: no Python-level work per line; ``bodies`` hands the bodies out one at a time.
    Each tag part starts with the newline that ends the line before it; a body drops its first character and ends
    with a newline. With it, ``InfluxStore.commit`` costs 0.94 µs of client CPU a reading, 1.19 before
    (``bench hub_influx``, BENCHMARKS.md). ``max_heads`` bounds the kept tag parts (a district has a few hundred
    thousand sensors); past it they are forgotten and rebuilt as met.
    """

    def __init__(self, community: str, *, max_heads: int = 500_000) -> None:
        self._prefix = f"\n{MEASUREMENT},community={escape_tag(community)},gateway="
        self._heads: dict[tuple[str, str], str] = {}
        self._max_heads = max_heads

    def encode(
        self,
        readings: ReadingColumns,
        *,
        rows: npt.NDArray[np.intp] | Sequence[int] | None = None,
        chunk_lines: int = 5_000,
    ) -> list[bytes]:
        """Request bodies of at most ``chunk_lines`` lines each (newline-terminated UTF-8) for ``rows`` of
        ``readings``. ``rows`` selects and orders the rows to write (all of them when None); none gives no bodies.
        """
        return list(self.bodies(readings, rows=rows, chunk_lines=chunk_lines))

    def bodies(
        self,
        readings: ReadingColumns,
        *,
        rows: npt.NDArray[np.intp] | Sequence[int] | None = None,
        chunk_lines: int = 5_000,
    ) -> Iterator[bytes]:
        """``encode``'s bodies one at a time, each assembled when asked for, so that the first can be on its way
        to the server while the next is put together. Bad input raises before the first body."""
        if chunk_lines < 1:
            raise ValueError("chunk_lines must be at least 1")
        if rows is None:
            sensors: Sequence[str] = readings.sensor
            gateways: Sequence[str] = readings.gateway
            times = readings.time_ms
            values = readings.value
            flags = readings.flags
        else:
            index = np.asarray(rows, dtype=np.intp)
            sensors = list(map(readings.sensor.__getitem__, index.tolist()))
            gateways = list(map(readings.gateway.__getitem__, index.tolist()))
            times, values, flags = readings.time_ms[index], readings.value[index], readings.flags[index]
        n = len(sensors)
        _require_finite(sensors, times, values)
        pairs = list(zip(sensors, gateways, strict=True))
        heads = self._heads_of(pairs)
        middles = {flag: f",flags={flag}i " for flag in np.unique(flags).tolist()}
        value_texts, flag_list, time_texts = _texts(values, np.float64), flags.tolist(), _texts(times, np.int64)
        return self._assemble(n, chunk_lines, pairs, heads, value_texts, middles, flag_list, time_texts)

    @staticmethod
    def _assemble(
        n: int,
        chunk_lines: int,
        pairs: list[tuple[str, str]],
        heads: dict[tuple[str, str], str],
        value_texts: list[str],
        middles: dict[int, str],
        flag_list: list[int],
        time_texts: list[str],
    ) -> Iterator[bytes]:
        parts = [""] * (4 * min(n, chunk_lines))
        for start in range(0, n, chunk_lines):
            end = min(n, start + chunk_lines)
            if end - start < chunk_lines:
                parts = parts[: 4 * (end - start)]
            parts[0::4] = map(heads.__getitem__, pairs[start:end])
            parts[1::4] = value_texts[start:end]
            parts[2::4] = map(middles.__getitem__, flag_list[start:end])
            parts[3::4] = time_texts[start:end]
            yield ("".join(parts) + "\n")[1:].encode()

    def _heads_of(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The kept tag parts, with those of ``pairs`` added (all kept ones forgotten first when over the bound)."""
        heads = self._heads
        new = set(pairs).difference(heads)
        if new:
            if len(heads) + len(new) > self._max_heads:
                heads.clear()
                new = set(pairs)
            prefix = self._prefix
            for sensor, gateway in new:
                heads[sensor, gateway] = f"{prefix}{escape_tag(gateway)},sensor={escape_tag(sensor)} value="
        return heads


def encode(
    readings: ReadingColumns,
    *,
    community: str,
    rows: npt.NDArray[np.intp] | Sequence[int] | None = None,
    chunk_lines: int = 5_000,
) -> list[bytes]:
    """``LineEncoder(community).encode(…)``: one call's bodies, nothing kept (tests, one-off writes)."""
    return LineEncoder(community).encode(readings, rows=rows, chunk_lines=chunk_lines)
