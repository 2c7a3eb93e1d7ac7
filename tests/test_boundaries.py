"""Import boundaries of DESIGN.md "Packages", enforced on the source (every import statement, at any depth).

``edge`` runs alone on a Raspberry Pi with ``pip install .[edge]``; ``alerts`` takes risk events from other
systems and so must not depend on the hub. A test catches the day someone adds a convenient import.
"""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)
ALLOWED: dict[str, set[str]] = {
    "protocol": {"protocol", "orjson"},
    # paho: issue 4's load generator (`anju-sim load`, imported in firmware_sim/load.py only) publishes as gateways
    "firmware_sim": {"firmware_sim", "protocol", "pymodbus", "numpy", "ruamel", "paho"},
    # gpiozero: only with alarm_gpio_pin; ruamel: issue 3 asks for the gateway config as one YAML file (the hub's
    # YAML library, for line numbers in errors)
    # systemd_notify: sd_notify for both edge and hub (the edge may not import the hub), standard library only
    "systemd_notify": {"systemd_notify"},
    "edge": {"edge", "protocol", "paho", "pymodbus", "orjson", "gpiozero", "ruamel", "systemd_notify"},
    # aiohttp instead of DESIGN.md's httpx: 14x the notification POSTs a second from one event loop (bench http_clients)
    # psycopg: the alert database on PostgreSQL when hubs share it (issue 8, alerts/sqldb.py)
    "alerts": {"alerts", "protocol", "aiohttp", "pydantic", "psycopg"},
    # paho: the client aiomqtt wraps; hub/ingest/intake.py sets its manual PUBACKs (issue 4 back-pressure);
    # argon2: issue 7 asks for a modern password hash (hub/identity/passwords.py, argon2id);
    # cryptography: issue 8 asks for a CA made by our tooling (hub/provision/pki.py: the broker's certificates, CRL)
    # setproctitle: a worker's hubs are forked from its zygote (hub/zygote.py); each names its community in `ps`
    "hub": {
        "hub", "protocol", "alerts", "numpy", "fastapi", "starlette", "uvicorn", "aiomqtt", "httpx", "pydantic",
        "pydantic_settings", "ruamel", "orjson", "amqtt", "paho", "argon2", "systemd_notify", "cryptography", "psycopg",
        "setproctitle",
    },
}  # fmt: skip


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots - STDLIB


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_design_allows(package: str) -> None:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no sources found for {package}"
    offences = {
        f"{path.relative_to(REPO)}: {name}"
        for path in files
        for name in imported_roots(path)
        if name not in ALLOWED[package]
    }
    assert not offences, f"{package} imports what DESIGN.md does not allow: {sorted(offences)}"


def test_the_checker_sees_nested_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from hub.config import x\n    import fastapi.routing\n", encoding="utf-8")
    assert imported_roots(source) == {"hub", "fastapi"}
