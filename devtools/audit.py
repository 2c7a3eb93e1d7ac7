"""Dependency audit: every distribution installed in this environment, checked against PyPI's vulnerability records.

PyPI publishes, with each release's JSON, the known vulnerabilities that affect that release (its ``vulnerabilities``
field, from the OSV database). pip-audit's PyPI service reads ``/pypi/{name}/{version}/json``. This audit reads the
same record. When the index does not serve it, the audit falls back to the project's ``/pypi/{name}/json``. That record
carries the vulnerabilities of the latest release only, so it audits an installed release exactly when the release is
the latest one. Any other release is reported as not audited, by name, with the reason.

``python -m devtools.audit`` (``make audit``, part of ``make test``) exits 0 when no installed release has a known
vulnerability, 1 when one has (each is named, with its identifiers and the releases that fix it), and 2 when the index
could not be read. Off CI (``CI`` not ``true``), an unreachable index is a warning and exit 0, so ``make test`` still
runs on a machine without the internet. Withdrawn advisories are not counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from packaging.version import InvalidVersion, Version

__all__ = ["AuditError", "Finding", "Report", "audit", "installed", "main"]

INDEX = "https://pypi.org/pypi"
TIMEOUT_S = 20.0
ATTEMPTS = 3
"""Tries of one request; a timeout or an answer of 5xx is tried again after 1 s, then 2 s."""
THREADS = 8
PROJECT = "anju"
"""This project's own distribution, installed editable: not a dependency."""


class AuditError(Exception):
    """The index could not be read: not reachable, or an answer that is not a release record. The message names the
    address and what went wrong."""


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """A known vulnerability of an installed release."""

    name: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]
    summary: str

    def describe(self) -> str:
        also = f" ({', '.join(self.aliases)})" if self.aliases else ""
        fix = f"fixed in {', '.join(self.fixed_in)}" if self.fixed_in else "no fixed release"
        return f"{self.name} {self.version}: {self.id}{also}, {fix}. {self.summary}".rstrip(". ") + "."


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """What the audit found: the releases audited, their vulnerabilities, and the releases it could not audit (name,
    version, why)."""

    audited: tuple[tuple[str, str], ...]
    findings: tuple[Finding, ...]
    unaudited: tuple[tuple[str, str, str], ...]


def canonical(name: str) -> str:
    """A distribution's name as the index spells it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(*, exclude: Iterable[str] = (PROJECT,)) -> list[tuple[str, str]]:
    """(name, version) of every distribution installed in this environment, by name, except ``exclude``."""
    skip = {canonical(name) for name in exclude}
    found = {canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions() if d.metadata["Name"]}
    return sorted((name, version) for name, version in found.items() if name not in skip)


Fetch = Callable[[str], dict[str, Any] | None]
"""Reads a JSON record at an address: the record, or None when the index has none there (404)."""


class _Passing(AuditError):
    """A failure that may pass: a timeout, a refused connection, a 5xx."""


def fetch_json(url: str, *, timeout_s: float = TIMEOUT_S, attempts: int = ATTEMPTS) -> dict[str, Any] | None:
    """The JSON object at ``url``; None for a 404. A timeout, a refused connection or a 5xx is tried again up to
    ``attempts`` times in all, then raises :class:`AuditError`."""
    for attempt in range(attempts - 1):
        try:
            return _fetch_once(url, timeout_s)
        except _Passing:
            time.sleep(2**attempt)
    return _fetch_once(url, timeout_s)


def _fetch_once(url: str, timeout_s: float) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            record = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        failure = _Passing if exc.code >= 500 else AuditError
        raise failure(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise _Passing(f"{url}: {exc.reason if isinstance(exc, urllib.error.URLError) else exc}") from exc
    except json.JSONDecodeError as exc:
        raise AuditError(f"{url}: the answer is not JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise AuditError(f"{url}: the answer is not a JSON object")
    return record


def _same_release(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _findings(name: str, version: str, record: dict[str, Any], url: str) -> list[Finding]:
    entries = record.get("vulnerabilities")
    if not isinstance(entries, list):
        raise AuditError(f"{url}: no 'vulnerabilities' list in the record")
    return [
        Finding(
            name=name,
            version=version,
            id=str(entry.get("id", "?")),
            aliases=tuple(str(a) for a in entry.get("aliases") or ()),
            fixed_in=tuple(str(v) for v in entry.get("fixed_in") or ()),
            summary=" ".join(str(entry.get("summary") or entry.get("details") or "").split())[:200],
        )
        for entry in entries
        if isinstance(entry, dict) and not entry.get("withdrawn")
    ]


def audit_one(index: str, name: str, version: str, fetch: Fetch = fetch_json) -> list[Finding] | str:
    """The known vulnerabilities of ``name`` ``version``, or why it could not be audited."""
    url = f"{index}/{name}/{version}/json"
    record = fetch(url)
    if record is not None:
        return _findings(name, version, record, url)
    url = f"{index}/{name}/json"
    project = fetch(url)
    if project is None:
        return "not on the index"
    latest = str((project.get("info") or {}).get("version", ""))
    if not _same_release(latest, version):
        return f"the index serves no record of {version}, and its project record covers only the latest, {latest}"
    return _findings(name, version, project, url)


def audit(packages: Sequence[tuple[str, str]], *, index: str = INDEX, fetch: Fetch = fetch_json) -> Report:
    """Audit ``packages`` (name, version) against ``index``, several at a time. Raises :class:`AuditError` when the
    index could not be read for one of them."""
    pool = ThreadPoolExecutor(THREADS)
    try:
        futures = [pool.submit(audit_one, index.rstrip("/"), name, version, fetch) for name, version in packages]
        results = [future.result() for future in futures]
    finally:
        pool.shutdown(cancel_futures=True)  # an unreadable index: the first error ends the audit, not every retry
    audited, findings, unaudited = [], [], []
    for (name, version), result in zip(packages, results, strict=True):
        if isinstance(result, str):
            unaudited.append((name, version, result))
        else:
            audited.append((name, version))
            findings.extend(result)
    return Report(tuple(audited), tuple(findings), tuple(unaudited))


def main(argv: Sequence[str] | None = None, *, say: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=INDEX, help=f"the index's JSON API (default {INDEX})")
    args = parser.parse_args(argv)
    packages = installed()
    try:
        report = audit(packages, index=args.index)
    except AuditError as exc:
        if os.environ.get("CI") == "true":
            say(f"audit: the index could not be read, so nothing was audited: {exc}")
            return 2
        say(f"audit: skipped, the index could not be read (a failure under CI): {exc}")
        return 0
    for name, version, why in report.unaudited:
        say(f"audit: not audited: {name} {version}: {why}")
    for finding in report.findings:
        say(f"audit: VULNERABLE {finding.describe()}")
    say(
        f"audit: {len(report.audited)} of {len(packages)} installed distributions audited against {args.index}, "
        f"{len(report.findings)} known vulnerabilities, {len(report.unaudited)} not audited"
    )
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
