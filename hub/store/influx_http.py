"""HTTP to InfluxDB: line-protocol writes and InfluxQL queries, for 1.x and 2.x/3.x alike.

The two API versions differ only in what ``InfluxTarget`` holds — the write path, its parameters and the auth
header — so the code that the tests run against a real InfluxDB 1.x server is the code that writes to 2.x:

- write: 1.x ``POST /write?db=D&rp=RP&precision=ms``; 2.x ``POST /api/v2/write?org=O&bucket=B&precision=ms``.
- auth: 1.x none, or ``Authorization: Basic`` with user:password (every 1.x has it; the ``Token user:password``
  form arrived only in 1.8, and Debian ships 1.6); 2.x ``Authorization: Token T``.
- query: ``POST /query`` with InfluxQL — native in 1.x; in 2.x/3.x through the v1 compatibility API, which needs a
  DBRP mapping of D/RP to the bucket (``influx v1 dbrp create``).

Errors are never swallowed: an HTTP 4xx/5xx, an ``error`` inside a query result, a result the server truncated
(``max-row-limit``) or no answer at all raise ``InfluxError`` with the status and InfluxDB's own message. The
one exception is a write that InfluxDB took except for points older than its retention ("partial write: points
beyond retention policy dropped=N"): those points are gone by the server's own rule, so ``write`` reports how
many and the caller decides (a replay of month-old readings must not block a gateway forever).
"""

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import httpx
import orjson

__all__ = ["InfluxError", "InfluxHttp", "InfluxTarget", "Series", "quote_ident", "quote_string"]

_BEYOND_RETENTION = re.compile(r"(?:.*: )?partial write: points beyond retention policy dropped=(\d+)")


class InfluxError(Exception):
    """InfluxDB refused a request (``status`` is the HTTP status) or did not answer (``status`` None)."""

    def __init__(self, *, path: str, status: int | None, message: str) -> None:
        self.path = path
        self.status = status
        self.message = message
        answer = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"InfluxDB {path}: {answer}: {message}")


@dataclass(frozen=True, slots=True, kw_only=True)
class InfluxTarget:
    """One InfluxDB and the names readings go to; build it with ``v1`` or ``v2``.

    ``database``/``retention_policy`` name the raw series in InfluxQL (1.x natively, 2.x through its DBRP
    mapping). ``rollup_retention_policy`` is None where the hub does not manage rollups (2.x).
    """

    url: str
    api_version: Literal[1, 2]
    database: str
    retention_policy: str
    rollup_retention_policy: str | None
    write_path: str
    write_params: Mapping[str, str]
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Auth headers: kept out of repr so a logged target never shows a secret."""

    @classmethod
    def v1(
        cls,
        *,
        url: str,
        database: str,
        retention_policy: str = "anju_raw",
        rollup_retention_policy: str | None = "anju_rollup_1m",
        username: str | None = None,
        password: str | None = None,
    ) -> Self:
        """InfluxDB 1.x; ``username`` and ``password`` together when the server has auth enabled."""
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        headers = {}
        if username is not None and password is not None:
            basic = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {basic}"
        return cls(
            url=url.rstrip("/"),
            api_version=1,
            database=database,
            retention_policy=retention_policy,
            rollup_retention_policy=rollup_retention_policy,
            write_path="/write",
            write_params={"db": database, "rp": retention_policy, "precision": "ms"},
            headers=headers,
        )

    @classmethod
    def v2(cls, *, url: str, org: str, bucket: str, token: str, database: str, retention_policy: str) -> Self:
        """InfluxDB 2.x/3.x: writes to ``org``/``bucket``; ``database``/``retention_policy`` is its DBRP mapping."""
        if not token:
            raise ValueError("InfluxDB 2.x needs a token")
        return cls(
            url=url.rstrip("/"),
            api_version=2,
            database=database,
            retention_policy=retention_policy,
            rollup_retention_policy=None,
            write_path="/api/v2/write",
            write_params={"org": org, "bucket": bucket, "precision": "ms"},
            headers={"Authorization": f"Token {token}"},
        )


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a query result: rows of ``columns`` (time first, Unix ms), grouped by ``tags``."""

    name: str
    tags: Mapping[str, str]
    columns: Sequence[str]
    values: Sequence[Sequence[Any]]


def quote_ident(name: str) -> str:
    """An InfluxQL identifier (database, retention policy, measurement) in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    """An InfluxQL string literal (a tag value in WHERE) in single quotes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _error_text(response: httpx.Response) -> str:
    """InfluxDB's own message: ``error`` (1.x) or ``message`` (2.x) of a JSON body, else the body's start."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return response.text[:500].strip() or response.reason_phrase


class InfluxHttp:
    """A pooled, thread-safe HTTP client for one ``InfluxTarget`` (the store calls it from worker threads)."""

    def __init__(self, *, target: InfluxTarget, timeout_s: float = 10.0, max_connections: int = 4) -> None:
        """``timeout_s``: seconds for connecting, sending or reading one request. Environment proxies are ignored
        (``trust_env=False``): the URL in the deployment file is where the data goes."""
        self.target = target
        self._client = httpx.Client(
            base_url=target.url,
            headers=dict(target.headers),
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,
        )

    def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.post(path, **kwargs)
        except httpx.HTTPError as exc:
            raise InfluxError(path=path, status=None, message=f"{type(exc).__name__}: {exc}") from exc

    def write(self, body: bytes) -> int:
        """Write one line-protocol body; returns how many points InfluxDB dropped as older than its retention."""
        path = self.target.write_path
        response = self._post(path, params=dict(self.target.write_params), content=body)
        if response.is_success:
            return 0
        message = _error_text(response)
        beyond = _BEYOND_RETENTION.fullmatch(message)
        if beyond is not None and response.status_code in (400, 422):
            return int(beyond.group(1))
        raise InfluxError(path=path, status=response.status_code, message=message)

    def query(self, statements: Sequence[str]) -> list[list[Series]]:
        """Run InfluxQL ``statements`` in one request; for each, in order, the series it returned."""
        if not statements:
            return []
        params = {"db": self.target.database, "epoch": "ms"}
        response = self._post("/query", params=params, data={"q": ";\n".join(statements)})
        if not response.is_success:
            raise InfluxError(path="/query", status=response.status_code, message=_error_text(response))
        results = orjson.loads(response.content).get("results") or []
        out: list[list[Series]] = [[] for _ in statements]
        for result in results:
            index = int(result.get("statement_id", 0))
            if not 0 <= index < len(statements):
                raise InfluxError(path="/query", status=response.status_code, message=f"no statement {index}")
            statement = statements[index]
            if "error" in result:
                raise InfluxError(
                    path="/query", status=response.status_code, message=f"{result['error']} in {statement}"
                )
            series = result.get("series") or []
            if result.get("partial") or any(s.get("partial") for s in series):
                raise InfluxError(
                    path="/query",
                    status=response.status_code,
                    message=f"result truncated by the server (max-row-limit) in {statement}",
                )
            out[index] = [
                Series(s.get("name", ""), s.get("tags") or {}, s.get("columns") or [], s.get("values") or [])
                for s in series
            ]
        return out

    def close(self) -> None:
        self._client.close()
