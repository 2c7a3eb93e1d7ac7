"""Truth file: what really happened in a simulated run, as JSON lines, for scoring the rest of Anju.

Line types::

    {"type":"run","community":c,"seed":n,"start_ms":t,"sample_interval_s":x,"speed":y}        (first line)
    {"type":"reading","gateway":g,"sensor":s,"time_ms":t,"value":v,"unit":u}                   (every sample)
    {"type":"incident","name":n,"sensors":[...],"start_ms":t0,"end_ms":t1,"grade":2}          (at its start)

``value`` is exactly ``from_raw(raw, exponent)``, the value a gateway decodes from the registers. Each tick's
lines are written and flushed together, so a killed simulator leaves a file whose every line is whole.
An incident line is written when the incident starts, with its planned window.
"""

import json
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = ["TruthWriter", "fault_record", "incident_record", "read_truth", "reading_record"]


def reading_record(*, gateway: str, sensor: str, time_ms: int, value: float, unit: str) -> dict[str, Any]:
    return {"type": "reading", "gateway": gateway, "sensor": sensor, "time_ms": time_ms, "value": value, "unit": unit}


def fault_record(*, name: str, sensor: str, fault: str, start_ms: int, end_ms: int | None) -> dict[str, Any]:
    """A fault window (``end_ms`` None: lasts to the end of the run); health detection is scored on these."""
    return {"type": "fault", "name": name, "sensor": sensor, "fault": fault, "start_ms": start_ms, "end_ms": end_ms}


def incident_record(*, name: str, sensors: Iterable[str], start_ms: int, end_ms: int, grade: int) -> dict[str, Any]:
    return {
        "type": "incident",
        "name": name,
        "sensors": list(sensors),
        "start_ms": start_ms,
        "end_ms": end_ms,
        "grade": grade,
    }


class TruthWriter:
    """Appends records to a JSON-lines file; ``write`` flushes (and fsyncs nothing: a crash of the simulator
    process, not of the machine, is what it guards against)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Write whole lines for ``records`` and flush them in one go."""
        if self._file is None:
            raise RuntimeError("TruthWriter used outside its with-block")
        text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
        if text:
            self._file.write(text)
            self._file.flush()


def read_truth(path: str | Path) -> list[dict[str, Any]]:
    """All records of a truth file, in order (a torn last line, if any, is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
