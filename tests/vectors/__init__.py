"""Loader of the shared golden vectors (see README.md)."""

import json
from pathlib import Path
from typing import Any

__all__ = ["register_vectors", "senml_vectors"]

_HERE = Path(__file__).parent


def senml_vectors() -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = json.loads((_HERE / "senml.json").read_text("utf-8"))
    return data


def register_vectors() -> dict[str, Any]:
    """``registers.json`` with every ``words`` string ("0001 FFB9 …", hex) turned into a list of 16-bit ints."""
    data: dict[str, Any] = json.loads((_HERE / "registers.json").read_text("utf-8"))
    for vector in (*data["headers"], *data["entries"]):
        text = vector["words"].split()
        if any(len(word) != 4 for word in text):
            raise ValueError(f"register vector {vector['name']!r}: every word is 4 hex digits")
        vector["words"] = [int(word, 16) for word in text]
    return data
