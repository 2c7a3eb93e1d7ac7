"""Loader of the shared golden vectors (see README.md)."""

import json
from pathlib import Path
from typing import Any

__all__ = ["senml_vectors"]


def senml_vectors() -> dict[str, list[dict[str, Any]]]:
    data: dict[str, list[dict[str, Any]]] = json.loads((Path(__file__).parent / "senml.json").read_text("utf-8"))
    return data
