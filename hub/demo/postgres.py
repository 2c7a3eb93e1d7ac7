"""A real PostgreSQL server (Debian's ``postgresql`` package) for a test or a benchmark, on a free loopback port.

``initdb`` makes a cluster in a fresh folder (trust authentication for the one superuser ``anju``, C locale, UTF-8);
``postgres`` serves it on 127.0.0.1 only, its socket in the same folder. PostgreSQL refuses to run as root, so as
root the folder is given to the ``postgres`` user the package creates and both programs run as that user (setpriv,
which executes them in place, so a signal reaches the server itself). The folder is removed after.
"""

import contextlib
import os
import pwd
import queue
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hub.demo.processes import Child, Line, free_port

__all__ = ["Postgres", "PostgresStartError", "find_postgres", "running_postgres"]

START_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Postgres:
    """A running server: a URL of its ``postgres`` database, and the process id (benchmarks read its CPU time)."""

    url: str
    pid: int

    def database_url(self, name: str) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{name}"


class PostgresStartError(RuntimeError):
    """initdb failed or the server did not accept a connection in time; the message ends with its last lines."""


def find_postgres() -> Path | None:
    """The folder with ``initdb`` and ``postgres`` of the newest PostgreSQL installed from Debian's packages."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


@contextlib.contextmanager
def running_postgres(bin_dir: Path, *, durable: bool = False) -> Iterator[Postgres]:
    """Start a new cluster, yield it once ``SELECT 1`` answers, stop it (fast shutdown) and remove it after.

    ``durable=False`` (tests) turns fsync off: a test's data need not survive a power cut. Benchmarks pass True so
    their figures include the flushes a production server makes."""
    import psycopg

    folder = Path(tempfile.mkdtemp(prefix="anju-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    data = folder / "data"
    try:
        initdb = subprocess.run(
            _as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "anju", "--auth=trust", "--no-locale",
                             "-E", "UTF8", "--no-sync"]),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise PostgresStartError(f"initdb failed ({initdb.returncode}):\n{initdb.stderr[-2000:]}")
        port = free_port()
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={folder}", "-c",
                    "max_connections=100", "-c", "shared_buffers=64MB"]  # fmt: skip
        if not durable:
            settings += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        lines: queue.Queue[Line] = queue.Queue()
        argv = _as_server_user([str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), *settings])
        child = Child("postgres", argv, lines).start()
        url = f"postgresql://anju@127.0.0.1:{port}/postgres"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    with psycopg.connect(url, connect_timeout=2) as connection:
                        connection.execute("SELECT 1")
                    break
                except psycopg.OperationalError:
                    if not child.alive or time.monotonic() > deadline:
                        output = "\n".join(lines.get_nowait().text for _ in range(lines.qsize()))
                        raise PostgresStartError(f"postgres did not accept {url} in time:\n{output[-2000:]}") from None
                    time.sleep(0.1)
            assert child.process is not None
            yield Postgres(url, child.process.pid)
        finally:
            child.stop(grace_s=20)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
