"""One address per community wherever it runs: an nginx configuration rendered from the shard map.

A community's hub listens only while it holds the community's lease (hub/lease.py); its standbys keep the same port
closed. So a proxy that lists every worker of a community — the owner first, the standbys as ``backup`` — reaches
whichever runs it now: a refused connection costs a retry on the next server at once, and the server that refused
is skipped for ``FAIL_TIMEOUT_S``. Phones and dashboards keep one address, ``https://{community}.{domain}/``, through
a takeover. Each community is its own ``server_name``, so the pages and the API keep their absolute paths.

The hubs take the client's address from ``X-Forwarded-For`` only from addresses in uvicorn's
``FORWARDED_ALLOW_IPS`` (127.0.0.1 by default): where the proxy runs on another machine, set that variable on the
workers to the proxy's address, or every login attempt counts against the proxy's address.
"""

from __future__ import annotations

from hub.shards import ShardMap

__all__ = ["FAIL_TIMEOUT_S", "nginx_config"]

FAIL_TIMEOUT_S = 5
"""Seconds nginx skips a server that refused (a standby, or a dead worker) before it tries it again."""
CONNECT_TIMEOUT_S = 2
"""A worker whose machine is gone does not refuse, it does not answer: give up on it after this long (nginx's own
timeout; the tests, on loopback, only see refusals)."""
STREAM_TIMEOUT_S = 3600
"""The live stream (``/api/v1/stream``, Server-Sent Events) is one long response."""


def nginx_config(shards: ShardMap, *, domain: str, listen: str = "80", max_body_bytes: int = 1024 * 1024) -> str:
    """The ``http``-context configuration (``/etc/nginx/conf.d/anju.conf``) for every community of ``shards``: an
    upstream of its workers' hubs in rank order and a server ``{community}.{domain}`` on ``listen``; other names
    get 404. TLS is left to the site (add ``ssl`` to ``listen`` with its certificate)."""
    out = [
        "# Rendered by `anju-hub shards proxy` from the shard map: one name per community, every worker of it listed",
        "# (the first runs it; the others, as backup, take it over). Render it again when the shard map changes.",
    ]
    for community, shard in shards.communities.items():
        upstream = f"anju_{community.replace('-', '_')}"
        out += ["", f"upstream {upstream} {{"]
        for rank, worker in enumerate(shard.workers):
            host = shards.hosts.get(worker, "127.0.0.1")
            backup = " backup" if rank > 0 else ""
            out.append(f"    server {host}:{shard.http_port} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s{backup};")
        out += [
            "    keepalive 16;",
            "}",
            "",
            "server {",
            f"    listen {listen};",
            f"    server_name {community}.{domain};",
            f"    client_max_body_size {max_body_bytes};",
            "    location / {",
            f"        proxy_pass http://{upstream};",
            "        proxy_http_version 1.1;",
            '        proxy_set_header Connection "";',
            "        proxy_set_header Host $host;",
            "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "        proxy_set_header X-Forwarded-Proto $scheme;",
            "        proxy_next_upstream error timeout;",
            f"        proxy_connect_timeout {CONNECT_TIMEOUT_S}s;",
            "        proxy_buffering off;",
            f"        proxy_read_timeout {STREAM_TIMEOUT_S}s;",
            "    }",
            "}",
        ]
    out += [
        "",
        "server {",
        f"    listen {listen} default_server;",
        "    server_name _;",
        "    return 404;",
        "}",
        "",
    ]
    return "\n".join(out)
