"""``anju-hub score``: the live anomaly detector replayed over one series from a CSV file, streaming.

Input: a header row ``timestamp,value`` (other columns after them are ignored), then one reading per row with an
ISO 8601 timestamp (``2026-11-29T08:00:00``, ``…Z``, ``…+08:00``, a space instead of ``T``) and a number.
Output: ``timestamp,value,anomaly_score`` per input row, in input order, the timestamp and value as they were
written; with ``explain`` a fourth column says why (Chinese / English).

Times: a timestamp without an offset is wall-clock time, and the detector's hour-of-day and day-of-week terms use
it as it is (as if it were UTC); one with an offset is converted to UTC and the terms use the first row's offset.
Either every timestamp of a file has an offset or none has: a file mixing them is an error naming the first line
that differs, because the two kinds are on different clocks (read as UTC, ``08:00`` and ``08:00+08:00`` are eight
hours apart). Rows are scored by
``AnomalyDetector.score`` in chunks, exactly as the hub scores a sensor's readings: a row not later than the one
before it is out of order (score 0, not learnt); an empty or non-numeric value other than ``nan``/``inf`` is an
error naming the line, as is a bad timestamp; ``nan`` scores 0 and is not learnt. An output that cannot be written
is an ``OSError`` naming the output path as given (not the ``.partial`` file it is written through).
"""

import csv
import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

import numpy as np

from hub.detection.anomaly import AnomalyConfig, AnomalyDetector, explain
from hub.files import replacing

__all__ = ["ScoreInputError", "score_csv"]

CHUNK = 4096
"""Rows scored per call: bounded memory whatever the file's length."""


class ScoreInputError(ValueError):
    """The input file is not a ``timestamp,value`` CSV; the message names the line and what is wrong."""


def _rows(source: IO[str], name: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None:
        raise ScoreInputError(f"{name}: empty file, expected a header row 'timestamp,value'")
    if [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
        raise ScoreInputError(f"{name}:1: header {','.join(header)!r}, expected 'timestamp,value'")
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < 2:
            raise ScoreInputError(f"{name}:{line}: {len(row)} column(s), expected timestamp,value")
        yield line, row


def _parse_time(text: str, name: str, line: int) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScoreInputError(f"{name}:{line}: timestamp {text!r} is not ISO 8601") from None


def _parse_value(text: str, name: str, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ScoreInputError(f"{name}:{line}: value {text!r} is not a number") from None


def score_csv(
    source: IO[str],
    sink: IO[str],
    *,
    config: AnomalyConfig | None = None,
    explain_column: bool = False,
    name: str = "input",
) -> int:
    """Score every row of ``source`` into ``sink``; returns the number of rows. Raises ``ScoreInputError``."""
    base = config or AnomalyConfig()
    detector: AnomalyDetector | None = None
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(["timestamp", "value", "anomaly_score", *(["explanation"] if explain_column else [])])
    first: tuple[int, str, bool] | None = None
    """The first row's line, timestamp and whether it has an offset: every row must be like it in that."""
    pending: list[tuple[str, str, int, float]] = []
    total = 0

    def flush() -> None:
        assert detector is not None
        times = np.array([p[2] for p in pending], np.int64)
        values = np.array([p[3] for p in pending], np.float64)
        scores = detector.score(np.zeros(len(pending), np.intp), times, values)
        for i, (stamp, raw, _, _) in enumerate(pending):
            row = [stamp, raw, f"{float(scores.score[i]):.6f}"]
            if explain_column:
                row.append(explain(scores, i))
            writer.writerow(row)
        pending.clear()

    for line, row in _rows(source, name):
        stamp, raw = row[0], row[1]
        moment = _parse_time(stamp, name, line)
        value = _parse_value(raw, name, line)
        offset = moment.utcoffset()
        if first is None:
            first = (line, stamp, offset is not None)
            utc_offset_ms = 0 if offset is None else int(offset.total_seconds() * 1000)
            detector = AnomalyDetector(replace(base, utc_offset_ms=utc_offset_ms))
        elif (offset is not None) != first[2]:
            raise ScoreInputError(
                f"{name}:{line}: timestamp {stamp!r} {'has a' if offset is not None else 'has no'} UTC offset, but "
                f"line {first[0]}'s ({first[1]!r}) {'has one' if first[2] else 'has none'}: give every "
                "timestamp an offset, or none (a time without one is read as UTC)"
            )
        if offset is None:
            moment = moment.replace(tzinfo=dt.UTC)  # wall-clock time: the offset terms are 0
        time_ms = int(moment.timestamp() * 1000)
        pending.append((stamp, raw, time_ms, value if math.isfinite(value) else math.nan))
        total += 1
        if len(pending) >= CHUNK:
            flush()
    if pending:
        flush()
    return total


def score_file(input_path: Path, output_path: Path, *, explain_column: bool = False) -> int:
    """``score_csv`` from one file into another (the output is written next to it and renamed when complete).

    An output that cannot be created (its directory missing, not writable) is an ``OSError`` naming ``output_path``:
    the ``.partial`` file it is written through is a detail the user never named."""
    partial = output_path.with_name(output_path.name + ".partial")
    try:
        with (
            input_path.open(encoding="utf-8-sig", newline="") as source,
            replacing(output_path, durable=False) as sink,
        ):
            rows = score_csv(source, sink, explain_column=explain_column, name=str(input_path))
    except OSError as exc:
        if exc.filename is None or Path(exc.filename) != partial:
            raise
        raise OSError(exc.errno, f"cannot write the output: {exc.strerror}", str(output_path)) from exc
    return rows
