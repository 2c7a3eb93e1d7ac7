"""Whole-file replacement: the old version or the new one, never a torn or leftover file."""

import logging
from pathlib import Path

import pytest

from hub.files import replacing, set_aside


def test_a_finished_block_replaces_the_file_and_a_failed_one_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), replacing(path) as f:
        f.write("half of the new")
        raise RuntimeError("the writer failed")
    assert path.read_text(encoding="utf-8") == "old" and not (tmp_path / "state.json.partial").exists()
    with replacing(path, "wb") as f:
        f.write("新".encode())
    assert path.read_text(encoding="utf-8") == "新" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_an_unusable_file_is_kept_beside_under_bad(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_text("garbage", encoding="utf-8")
    aside = set_aside(path, ValueError("not JSON"), "rule state", logging.getLogger("test"))
    assert aside.read_text(encoding="utf-8") == "garbage" and not path.exists()
    assert "rule state" in caplog.text and "not JSON" in caplog.text
