"""The dependency audit (devtools/audit.py) against an index of our own on loopback, serving PyPI's JSON records."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.audit import AuditError, audit, canonical, fetch_json, installed
from hub.demo.processes import free_port

ROOT = Path(__file__).resolve().parents[2]

VULNERABILITY = {
    "id": "PYSEC-2099-1",
    "aliases": ["CVE-2099-0001", "GHSA-xxxx-yyyy-zzzz"],
    "fixed_in": ["1.0.1"],
    "summary": "A crafted header  makes the parser\nloop.",
    "withdrawn": None,
}
WITHDRAWN = {"id": "PYSEC-2099-2", "aliases": [], "fixed_in": [], "summary": "not a flaw", "withdrawn": "2099-01-01"}

Answer = tuple[int, Any]
"""An HTTP status and the JSON body (``None``: no body), or a raw ``bytes`` body."""


@contextlib.contextmanager
def index(answer: Callable[[str], Answer]) -> Iterator[tuple[str, list[str]]]:
    """An index on loopback that answers each GET path with ``answer(path)``: (its base URL, the paths asked for)."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            status, body = answer(self.path)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads ``asked``."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def pypi(path: str) -> Answer:
    """A small PyPI: 'clean' and 'old' serve per-release records; 'latest-only' and 'behind' only project records."""
    records: dict[str, Answer] = {
        "/pypi/clean/1.0/json": (200, {"info": {"version": "1.0"}, "vulnerabilities": []}),
        "/pypi/old/1.0/json": (200, {"info": {"version": "1.0"}, "vulnerabilities": [VULNERABILITY, WITHDRAWN]}),
        "/pypi/latest-only/json": (200, {"info": {"version": "2.0.0"}, "vulnerabilities": [VULNERABILITY]}),
        "/pypi/behind/json": (200, {"info": {"version": "3.0"}, "vulnerabilities": []}),
        "/pypi/broken/1.0/json": (200, {"info": {"version": "1.0"}}),
    }
    return records.get(path, (404, {"message": "Not Found"}))


def test_each_release_is_audited_by_its_own_record_or_by_the_latest_or_named_as_not_audited() -> None:
    packages = [("clean", "1.0"), ("old", "1.0"), ("latest-only", "2.0"), ("behind", "1.0"), ("unknown", "1.0")]
    with index(pypi) as (url, asked):
        report = audit(packages, index=url)
    assert report.audited == (("clean", "1.0"), ("old", "1.0"), ("latest-only", "2.0")), "2.0 is the latest, 2.0.0"
    assert [(f.name, f.id) for f in report.findings] == [("old", "PYSEC-2099-1"), ("latest-only", "PYSEC-2099-1")]
    assert report.findings[0].describe() == (
        "old 1.0: PYSEC-2099-1 (CVE-2099-0001, GHSA-xxxx-yyyy-zzzz), fixed in 1.0.1. "
        "A crafted header makes the parser loop."
    )
    assert report.unaudited == (
        ("behind", "1.0", "the index serves no record of 1.0, and its project record covers only the latest, 3.0"),
        ("unknown", "1.0", "not on the index"),
    )
    assert "/pypi/clean/json" not in asked, "a release's own record is enough"


def test_an_index_that_fails_is_an_error_naming_the_address_and_a_passing_failure_is_tried_again() -> None:
    calls: list[str] = []

    def flaky(path: str) -> Answer:
        calls.append(path)
        return (503, None) if len(calls) == 1 else (200, {"vulnerabilities": []})

    with index(flaky) as (url, _):
        assert fetch_json(f"{url}/clean/1.0/json", attempts=2) == {"vulnerabilities": []}
    with index(lambda path: (500, None)) as (url, asked), pytest.raises(AuditError, match=r"/clean/1.0/json: HTTP 500"):
        fetch_json(f"{url}/clean/1.0/json", attempts=2)
    assert len(asked) == 2
    with index(lambda path: (403, None)) as (url, asked), pytest.raises(AuditError, match="HTTP 403"):
        fetch_json(f"{url}/clean/1.0/json")
    assert len(asked) == 1, "a refusal is not tried again"
    with index(lambda path: (200, b"<html>")) as (url, _), pytest.raises(AuditError, match="not JSON"):
        fetch_json(f"{url}/clean/1.0/json")
    with index(lambda path: (200, [1, 2])) as (url, _), pytest.raises(AuditError, match="not a JSON object"):
        fetch_json(f"{url}/clean/1.0/json")
    with index(pypi) as (url, _), pytest.raises(AuditError, match=r"broken/1.0/json: no 'vulnerabilities' list"):
        audit([("broken", "1.0")], index=url)


def test_the_environment_is_listed_by_canonical_name_without_the_project_itself() -> None:
    names = dict(installed())
    assert "anju" not in names and "pytest" in names and canonical("Typing_Extensions") == "typing-extensions"
    assert all(name == canonical(name) for name in names)


def run_cli(url: str, *, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true" if ci else "false"}
    return subprocess.run(
        [sys.executable, "-m", "devtools.audit", "--index", url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_command_fails_on_a_vulnerable_installed_release_and_names_it() -> None:
    def every_release_clean_but_pytest(path: str) -> Answer:
        return (200, {"vulnerabilities": [VULNERABILITY] if path.startswith("/pypi/pytest/") else []})

    with index(every_release_clean_but_pytest) as (url, _):
        found = run_cli(url, ci=True)
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"audit: VULNERABLE pytest {dict(installed())['pytest']}: PYSEC-2099-1" in found.stdout
    assert ", 1 known vulnerabilities, 0 not audited" in found.stdout
    with index(lambda path: (200, {"vulnerabilities": []})) as (url, _):
        clean = run_cli(url, ci=True)
    assert clean.returncode == 0 and ", 0 known vulnerabilities" in clean.stdout, clean.stdout + clean.stderr


def test_an_unreachable_index_fails_under_ci_and_warns_elsewhere() -> None:
    url = f"http://127.0.0.1:{free_port()}/pypi"  # nothing listens there
    under_ci = run_cli(url, ci=True)
    assert under_ci.returncode == 2 and "the index could not be read, so nothing was audited" in under_ci.stdout
    assert f"{url}/" in under_ci.stdout and "Connection refused" in under_ci.stdout
    elsewhere = run_cli(url, ci=False)
    assert elsewhere.returncode == 0 and "skipped, the index could not be read (a failure under CI)" in elsewhere.stdout
