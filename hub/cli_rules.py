"""``anju-hub rules test``: replay one detection rule over recorded data and show what it would have done.

Operators tune a rule on their own history before they deploy it: ``--input`` is a CSV with the header
``timestamp,value`` (ISO 8601 timestamps; without an offset they are the rule set's local time, Asia/Shanghai by
default) and values in the kind's unit. The rows go through ``RuleEngine.observe_columns`` in rounds, exactly
the live hub's code path, so what this prints is what the hub would have fired and cleared. Rows that cannot be
read are skipped and counted with their line numbers; a row older than one before it is not judged (as live:
the hub judges a sensor's readings only forward in time).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import sys
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_rules_command"]

ROUND = 1024
"""Rows handed to the engine at a time (a live ingest round is of the same order)."""


def add_rules_command(commands: Any) -> None:
    """Register ``rules test`` on ``anju-hub``'s subcommands (``commands`` is argparse's subparsers action)."""
    rules = commands.add_parser("rules", help="detection rules: replay a rule over recorded data (rules test)")
    actions = rules.add_subparsers(dest="rules_command", required=True)
    test = actions.add_parser(
        "test",
        help="show what one rule would have fired and cleared on a CSV of timestamp,value",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("--rule", required=True, help="rule id, e.g. gas-level-1")
    test.add_argument("--rules", help="rules YAML file (default: the shipped default rules)")
    test.add_argument("--kind", required=True, help="sensor kind of the recorded data, e.g. gas")
    test.add_argument("--input", required=True, help="CSV with header timestamp,value")
    test.add_argument("--output", help="also write the events as CSV here")
    test.set_defaults(handler=_rules_test)


def _timestamp_ms(text: str, zone: tzinfo) -> int:
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return round(moment.timestamp() * 1000)


def _read_rows(stream: TextIO, zone: tzinfo) -> tuple[list[int], list[float], list[str]]:
    reader = csv.reader(stream)
    header = [cell.strip().lower() for cell in next(reader, [])]
    if header[:2] != ["timestamp", "value"]:
        raise ValueError(f"the first line must be the header timestamp,value (got {','.join(header)!r})")
    times: list[int] = []
    values: list[float] = []
    bad: list[str] = []
    for line, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            times.append(_timestamp_ms(row[0], zone))
            values.append(float(row[1]))
        except (ValueError, IndexError, OverflowError) as exc:
            if len(times) > len(values):
                times.pop()
            bad.append(f"line {line}: {exc}")
    return times, values, bad


def _rules_test(args: argparse.Namespace) -> int:
    import numpy as np

    from alerts.model import RiskEvent
    from hub.detection.rules import RuleEngine, RuleError, default_rules, load_rules
    from hub.ingest.registry import SensorInfo
    from protocol.kinds import KINDS

    def fail(message: str) -> int:
        sys.stderr.write(f"anju-hub rules test: {message}\n")
        return 2

    try:
        ruleset = load_rules(args.rules) if args.rules else default_rules()
    except RuleError as exc:
        return fail(str(exc))
    kind = KINDS.get(args.kind)
    if kind is None:
        return fail(f"unknown kind {args.kind!r}; known: {', '.join(sorted(KINDS))}")
    rule = ruleset.rule(args.rule)
    if rule is None:
        known = ", ".join(r.id for r in ruleset.rules if r.kind == kind.name) or "none"
        return fail(f"no rule {args.rule!r} in the rule set; rules for {kind.name}: {known}")
    if rule.kind != kind.name:
        return fail(f"rule {rule.id!r} is for kind {rule.kind!r}, not {kind.name!r}")
    engine = RuleEngine(
        community="recorded",
        ruleset=ruleset,
        sensors=[SensorInfo("recorded", "csv", kind, "", "csv", None, 0)],
        rules={"recorded": (rule,)},
    )
    try:
        with open(args.input, encoding="utf-8", newline="") as stream:
            times, values, bad = _read_rows(stream, engine.clock.zone)
    except OSError as exc:
        return fail(f"{args.input}: {exc.strerror}")
    except (ValueError, csv.Error) as exc:
        return fail(f"{args.input}: {exc}")
    events: list[RiskEvent] = []
    all_times = np.asarray(times, np.int64)
    all_values = np.asarray(values, np.float64)
    # a round ends where time goes back, so a row older than the newest one before it is not judged (it would be
    # sorted into its round otherwise), and after ROUND rows
    backwards = (np.flatnonzero(np.diff(all_times) < 0) + 1).tolist()
    bounds = sorted({0, len(times), *backwards, *range(0, len(times), ROUND)})
    for start, end in itertools.pairwise(bounds):
        events.extend(
            engine.observe_columns(np.zeros(end - start, np.intp), all_times[start:end], all_values[start:end])
        )
    out = sys.stdout
    for event in events:
        out.write(_line(event, engine.clock.zone) + "\n")
    fired = sum(1 for event in events if event.status == "firing")
    cleared = len(events) - fired
    out.write(
        f"规则 {rule.id}（{rule.name_zh}）：{len(times)} 条读数，触发 {fired} 次，恢复 {cleared} 次；"
        f"未判断：乱序 {engine.skipped_late}，无效值 {engine.skipped_invalid}，无法解析 {len(bad)}\n"
        f"rule {rule.id} ({rule.name}): {len(times)} readings, fired {fired}, cleared {cleared}; not judged: "
        f"out of order {engine.skipped_late}, invalid {engine.skipped_invalid}, unreadable {len(bad)}\n"
    )
    for problem in bad[:10]:
        sys.stderr.write(f"anju-hub rules test: {args.input} {problem}\n")
    if args.output:
        _write_csv(Path(args.output), events, engine.clock.zone)
    return 0


def _iso(time_ms: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=zone).isoformat(timespec="milliseconds")


def _line(event: Any, zone: tzinfo) -> str:
    status = "触发 firing " if event.status == "firing" else "恢复 cleared"
    limit = "" if event.threshold is None else f" (limit {event.threshold:g})"
    value = f"{event.value:.4g}" if math.isfinite(event.value) else str(event.value)
    return f"{_iso(event.time_ms, zone)}  {status}  {event.grade.name:>3}  {event.rule}: {value} {event.unit}{limit}"


def _write_csv(path: Path, events: list[Any], zone: tzinfo) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["timestamp", "status", "rule", "grade", "value", "unit", "threshold"])
        for event in events:
            writer.writerow(
                [
                    _iso(event.time_ms, zone),
                    event.status,
                    event.rule,
                    event.grade.name,
                    repr(event.value),
                    event.unit,
                    "" if event.threshold is None else repr(event.threshold),
                ]
            )
