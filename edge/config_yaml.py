"""Reading the gateway's YAML config: one document, typed access by key, and errors that name file:line.

``edge.config`` says what the keys mean; this module says how YAML is read so that a field installer's mistake
is named instead of guessed at. The file is read with ruamel.yaml (the hub's YAML library too) in round-trip
mode, which builds only plain data (never arbitrary objects) and keeps each key's line. YAML's traps are refused
by name: duplicate keys, a top level that is not a mapping, numbers written with a leading zero (``unit_id: 010``
is 8 to a YAML 1.1 tool and 10 to YAML 1.2), unquoted ids that YAML reads as numbers (``gateway: 1``), and
``on``/``yes`` where true or false is meant (text to YAML 1.2, so a type error).
"""

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarint import ScalarInt

from protocol.ids import is_valid_id

__all__ = ["ConfigError", "Section", "line_of", "optional_path", "read_yaml", "required_path", "type_reason"]

_T = TypeVar("_T")


class ConfigError(Exception):
    """A configuration value was refused: ``key`` is its dotted path, ``value`` what was found, ``reason`` why;
    ``source`` the file (or the push) and ``line`` its 1-based line there, when known."""

    def __init__(self, *, key: str, value: object, reason: str, source: str = "", line: int | None = None) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        self.source = source
        self.line = line
        where = f"{source}:{line}: " if source and line is not None else f"{source}: " if source else ""
        super().__init__(f"{where}{key} = {value!r}: {reason}")


_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a mapping (indented key: value lines)",
    list: "a list (indented - items)",
}
_YAML11_BOOLEANS = frozenset({"y", "n", "yes", "no", "on", "off"})
"""Booleans to YAML 1.1 (and to many people), plain text to YAML 1.2, which ruamel reads."""


def line_of(node: object, key: str | int | None = None) -> int | None:
    """1-based line of ``key`` (a mapping key or a list index) in a ruamel node, or of the node itself; None for
    data without line information (a dict built in code)."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return int(lc.line) + 1
        position = lc.item(key) if isinstance(key, int) else lc.key(key)
        return int(position[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def _leading_zero(value: object) -> str | None:
    """The integer as written when it has a leading zero (``010``, ``-05``), else None.

    ruamel (YAML 1.2) reads ``010`` as 10, a YAML 1.1 tool as octal 8: an installer who meant either cannot tell
    which one the gateway took, so the value is refused. ruamel keeps the written width of such integers.
    """
    width = getattr(value, "_width", None)
    if type(value) is not ScalarInt or not isinstance(width, int):
        return None
    digits = str(abs(int(value)))
    return ("-" if value < 0 else "") + digits.zfill(width) if width > len(digits) else None


def _plain(value: object) -> object:
    """ruamel's scalar subclasses (``ScalarFloat``, ``ScalarInt`` …) as built-in values, so the config holds those."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def type_reason(kind: type, value: object) -> str:
    reason = f"must be {_TYPE_NAMES.get(kind, kind.__name__)}"
    if value is None:
        return f"{reason}, and the value is empty (null in YAML)"
    if kind is str and isinstance(value, int | float):
        written = ("true" if value else "false") if isinstance(value, bool) else str(value)
        what = "true/false" if isinstance(value, bool) else "a number"
        return f'{reason}: YAML reads {written} unquoted as {what}, quote it ("{written}")'
    if kind is not str and isinstance(value, str) and value.lower() in _YAML11_BOOLEANS:
        advice = ", write true or false" if kind is bool else ", not as a boolean"
        return f"{reason}: YAML 1.2 reads {value} as text{advice}"
    return reason


class Section:
    """Typed access to one YAML mapping that remembers which keys were read, to refuse the others.

    ``data`` is a ruamel ``CommentedMap`` when it was read from a file (errors then carry the key's line) or any
    other mapping (a dict built in code; errors without a line).
    """

    def __init__(self, data: Mapping[str, object], prefix: str, source: str) -> None:
        self._data = data
        self._prefix = prefix
        self._source = source
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    def error(self, name: str, value: object, reason: str) -> ConfigError:
        line = line_of(self._data, name) if name in self._data else line_of(self._data)
        return ConfigError(key=self.key(name), value=value, reason=reason, source=self._source, line=line)

    def get(self, name: str, kind: type[_T], default: _T | None = None) -> _T:
        self._seen.add(name)
        if name not in self._data:
            if default is None:
                raise self.error(name, None, "is required")
            return default
        written = _leading_zero(self._data[name])
        if written is not None:
            reason = "a leading zero is ambiguous (YAML 1.1 reads 010 as octal 8, YAML 1.2 as 10): write it without"
            raise self.error(name, written, reason)
        value = _plain(self._data[name])
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise self.error(name, value, type_reason(kind, value))
        return value

    def positive(self, name: str, kind: type[int] | type[float], default: float | None) -> float:
        value = self.get(name, kind, default)
        if not math.isfinite(value) or value <= 0:
            raise self.error(name, value, "must be a finite number > 0")
        return value

    def identifier(self, name: str) -> str:
        value = self.get(name, str)
        if not is_valid_id(value):
            raise self.error(name, value, "must match [a-z0-9-]{1,64}")
        return value

    def port(self, name: str, default: int) -> int:
        value = self.get(name, int, default)
        if not 1 <= value <= 65535:
            raise self.error(name, value, "must be a TCP port 1-65535")
        return value

    def table(self, name: str) -> Mapping[str, object]:
        value = self.get(name, dict, {})
        return value

    def check_unknown(self) -> None:
        for name in self._data:
            if name not in self._seen:
                raise self.error(name, self._data[name], "unknown key")


def optional_path(section: Section, name: str, base: Path) -> Path | None:
    value = section.get(name, str, "")
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else base / path


def required_path(section: Section, name: str, base: Path) -> Path:
    value = section.get(name, str)
    if not value:
        raise section.error(name, value, "must not be empty")
    path = Path(value)
    return path if path.is_absolute() else base / path


_DUPLICATE_KEY = re.compile(r'found duplicate key "(.*?)" with value "(.*?)"')


def read_yaml(text: str, source: str) -> Mapping[str, object]:
    """One YAML document whose top level is a mapping; every failure a ``ConfigError`` with the line."""
    try:
        # Round trip, not "safe": it keeps each key's line for the errors, and like "safe" it builds only plain
        # data (mappings, lists, scalars; unknown tags stay inert values that fail the type checks).
        document = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:  # duplicate keys (an error by default in ruamel), syntax, several documents
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else int(mark.line) + 1
        duplicate = _DUPLICATE_KEY.search(str(exc.problem))
        if duplicate is not None:
            reason = "duplicate key: YAML would keep only one of the two values, remove the other"
            key, value = duplicate.groups()
            raise ConfigError(key=key, value=value, reason=reason, source=source, line=line) from None
        reason = f"is not valid YAML: {exc.problem or exc.context}"
        raise ConfigError(key="<file>", value=source, reason=reason, source=source, line=line) from None
    except YAMLError as exc:
        raise ConfigError(key="<file>", value=source, reason=f"is not valid YAML: {exc}", source=source) from None
    except Exception as exc:  # the file (or a push) is input: a crash here would be a crash on input
        # ruamel raises more than YAMLError: ValueError for "!!float abc" or "!!timestamp 2020-13-45",
        # RecursionError for lists nested thousands deep.
        reason = f"is not valid YAML: {type(exc).__name__}: {exc}"
        raise ConfigError(key="<file>", value=source, reason=reason, source=source) from None
    if not isinstance(document, Mapping):
        found = "nothing (an empty file)" if document is None else "a list" if isinstance(document, list) else "text"
        reason = f"must be a mapping of keys (community: …, gateway: …), found {found}"
        raise ConfigError(key="<top level>", value=None, reason=reason, source=source, line=line_of(document))
    return document
