"""deploy/compose (issue 8): the compose tool's own check of compose.yaml, then what it cannot see — the hub gets
only real settings and no secret inline, every host path it mounts exists, every service has a healthcheck, the
hub, InfluxDB's first setup and Grafana agree on org, bucket, database and token, and the broker's config files and
the paths they name are where Mosquitto looks. Each check also runs on a broken copy, to show it can fail."""

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from hub.api.app import create_app
from hub.config import ConfigError, load_deployment
from hub.demo.processes import free_port
from hub.provision.broker_dir import BrokerDir
from hub.settings import HubSettings
from tests.conftest import mosquitto_running, require_service

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
SECRETS_DIR = COMPOSE_DIR / "secrets"
RUN_SECRETS = PurePosixPath("/run/secrets")
PUBLIC_PORTS = {("mosquitto", 8883)}
"""Published on every address: the gateways' TLS listener. Everything else is published on loopback or not at all."""
MOSQUITTO_IMAGE_CONFIG = PurePosixPath("/mosquitto/config/mosquitto.conf")
"""Where the eclipse-mosquitto image's default command reads its configuration."""
_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|(^|_)KEY($|_)", re.IGNORECASE)
_RUN_SECRET = re.compile(r"/run/secrets/([A-Za-z0-9_.-]+)")
_PATH_OPTIONS = {"password_file", "acl_file", "cafile", "capath", "certfile", "keyfile", "crlfile", "include_dir"}

Compose = dict[str, Any]


def compose() -> Compose:
    """compose.yaml as written (``$$`` is still the compose escape for a literal ``$``)."""
    data: Compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def compose_tool() -> list[str] | None:
    """The compose CLI that answers here without a daemon: Docker's plugin (v2) or ``docker-compose`` (v1 or v2)."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return None if standalone is None else [standalone]


def run_config_check(tool: list[str], file: Path) -> subprocess.CompletedProcess[str]:
    """``compose -f FILE config -q`` from compose.yaml's folder (its .env and relative paths), bounded in time."""
    return subprocess.run(
        [*tool, "--project-directory", str(COMPOSE_DIR), "-f", str(file), "config", "-q"],
        cwd=COMPOSE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose takes a mapping or a list of ``NAME=value``)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def granted_secrets(service: Mapping[str, Any]) -> set[str]:
    """Names of the compose secrets mounted in the service at /run/secrets/NAME (short or long syntax)."""
    names: set[str] = set()
    for entry in service.get("secrets") or []:
        if isinstance(entry, str):
            names.add(entry)
        else:
            names.add(entry.get("target") or entry["source"])
    return names


def mounts(service: Mapping[str, Any]) -> list[tuple[str, PurePosixPath, bool]]:
    """(source, target, read-only) of each short-syntax volume entry of a service."""
    found = []
    for entry in service.get("volumes") or []:
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        source, target, *mode = entry.split(":")
        found.append((source, PurePosixPath(target), "ro" in (mode[0].split(",") if mode else [])))
    return found


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def bind_sources(service: Mapping[str, Any]) -> dict[PurePosixPath, Path]:
    """Container path -> host path of a service's bind mounts, relative paths resolved from compose.yaml's folder."""
    return {target: (COMPOSE_DIR / source).resolve() for source, target, _ in mounts(service) if is_bind(source)}


def shell_words(value: object) -> str:
    """A healthcheck, entrypoint or command as one string, for searching."""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def secret_references(service: Mapping[str, Any]) -> set[str]:
    """Secrets a service reads by path: from its environment, entrypoint, command and healthcheck."""
    text = " ".join(environment(service).values())
    text += " " + shell_words(service.get("entrypoint")) + " " + shell_words(service.get("command"))
    text += " " + shell_words((service.get("healthcheck") or {}).get("test"))
    return set(_RUN_SECRET.findall(text))


# ---------------------------------------------------------------------------------------------- the compose tool


@pytest.fixture(scope="module")
def tool() -> list[str]:
    found = compose_tool()
    require_service("docker compose or docker-compose", found)
    assert found is not None
    return found


def test_the_compose_tool_accepts_the_file(tool: list[str]) -> None:
    checked = run_config_check(tool, COMPOSE_FILE)
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_the_compose_tool_refuses_a_broken_copy(tool: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    broken.write_text(
        text.replace("    restart: unless-stopped\n", "    restart: unless-stopped\n    restrat: no\n", 1)
    )
    checked = run_config_check(tool, broken)
    assert checked.returncode != 0 and "restrat" in checked.stderr + checked.stdout


# ---------------------------------------------------------------------------------------- the hub's settings


def hub_settings_problems(data: Compose, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Why the hub's environment is not valid HubSettings (empty: it is), read from the process environment as
    ``anju-hub serve`` reads it, with /run/secrets/* in ``secrets_dir``: the settings read the ``*_FILE`` secrets."""
    env = environment(data["services"]["hub"])
    problems = [f"{name} is not a hub setting" for name in env if not _is_setting(name)]
    if problems:
        return problems
    with monkeypatch.context() as scope:
        for name in os.environ:
            if name.startswith("ANJU_"):
                scope.delenv(name)
        broker_auth = str(secrets_dir.parent / "broker-auth")  # the volume, as `provision init` fills it
        for name, value in env.items():
            value = value.replace("/etc/mosquitto/anju", broker_auth)
            scope.setenv(name, _RUN_SECRET.sub(lambda m: str(secrets_dir / m[1]), value))
        try:
            HubSettings()  # type: ignore[call-arg]  # deployment: from ANJU_DEPLOYMENT
        except ValueError as exc:
            return [str(exc)]
    return []


def _is_setting(name: str) -> bool:
    prefix = HubSettings.model_config.get("env_prefix", "")
    return name.startswith(prefix) and name.removeprefix(prefix).lower() in HubSettings.model_fields


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    """Random secrets under every name compose.yaml declares, as README.md says to make them."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name in compose()["secrets"]:
        (folder / name).write_text(os.urandom(24).hex() + "\n", encoding="utf-8")
    BrokerDir(tmp_path / "broker-auth").init(["broker.example.org", "mosquitto"])
    return folder


def test_the_hub_gets_only_real_settings(secrets_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert HubSettings.model_config.get("env_prefix") == "ANJU_"
    assert hub_settings_problems(compose(), secrets_dir, monkeypatch) == []
    broken = compose()
    broken["services"]["hub"]["environment"]["ANJU_MQTT_PASWORD_FILE"] = "/run/secrets/hub_mqtt_password"
    assert hub_settings_problems(broken, secrets_dir, monkeypatch) == ["ANJU_MQTT_PASWORD_FILE is not a hub setting"]
    broken = compose()
    broken["services"]["hub"]["environment"]["ANJU_HTTP_PORT"] = "eighty"
    assert hub_settings_problems(broken, secrets_dir, monkeypatch) != []


def test_the_deployment_file_passes_the_full_check(secrets_dir: Path, tmp_path: Path) -> None:
    """As ``anju-hub check-config`` in the container would: secrets read, from this test's files for /run/secrets."""
    text = deployment_file(compose()).read_text(encoding="utf-8")
    assert "/run/secrets/" in text
    copied = tmp_path / "deployment.yaml"
    copied.write_text(_RUN_SECRET.sub(lambda m: str(secrets_dir / m[1]), text), encoding="utf-8")
    load_deployment(copied)
    (secrets_dir / "influxdb_token").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="influxdb_token is empty"):
        load_deployment(copied)


def inline_secrets(data: Compose) -> list[str]:
    """Environment entries of any service that carry a secret's value instead of a /run/secrets file."""
    found = []
    for name, service in data["services"].items():
        for key, value in environment(service).items():
            if not _SECRET_NAME.search(key):
                continue
            if not key.endswith("_FILE") or PurePosixPath(value).parent != RUN_SECRETS:
                found.append(f"{name}: {key}")
    return found


def test_no_secret_is_inline() -> None:
    assert inline_secrets(compose()) == []
    broken = compose()
    broken["services"]["grafana"]["environment"]["ANJU_INFLUXDB_PASSWORD"] = "hunter2hunter2"
    assert inline_secrets(broken) == ["grafana: ANJU_INFLUXDB_PASSWORD"]
    broken = compose()
    broken["services"]["hub"]["environment"]["ANJU_API_TOKEN_FILE"] = "/etc/anju-hub/api.token"
    assert inline_secrets(broken) == ["hub: ANJU_API_TOKEN_FILE"]


def ungranted_secrets(data: Compose) -> list[str]:
    """Secrets a service reads (/run/secrets/NAME) without being granted them; secrets the file does not declare."""
    declared = set(data.get("secrets") or {})
    problems = []
    for name, service in data["services"].items():
        reads = secret_references(service)
        if name == "hub":
            reads |= _deployment_secret_reads(data)
        if name == "influxdb":
            for script in sorted((COMPOSE_DIR / "influxdb-init").glob("*.sh")):
                reads |= set(_RUN_SECRET.findall(script.read_text(encoding="utf-8")))
        granted = granted_secrets(service)
        problems += [f"{name} reads {secret} but is not granted it" for secret in sorted(reads - granted)]
        problems += [f"{name} is granted {secret}, which is not declared" for secret in sorted(granted - declared)]
    return problems


def _deployment_secret_reads(data: Compose) -> set[str]:
    deployment = load_deployment(deployment_file(data), check_secrets=False)
    influx = deployment.storage.influxdb
    files = [influx.token_file, influx.password_file] if influx is not None else []
    return {PurePosixPath(f).name for f in files if f is not None and PurePosixPath(f).parent == RUN_SECRETS}


def test_every_secret_read_is_granted_and_kept_out_of_git() -> None:
    data = compose()
    assert ungranted_secrets(data) == []
    broken = compose()
    broken["services"]["grafana"]["secrets"].remove("grafana_influxdb_password")
    assert ungranted_secrets(broken) == ["grafana reads grafana_influxdb_password but is not granted it"]
    for name, secret in data["secrets"].items():
        path = (COMPOSE_DIR / secret["file"]).resolve()
        assert path.parent == SECRETS_DIR, f"secret {name} is made in deploy/compose/secrets/"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO, timeout=30)
        assert ignored.returncode == 0, f"{path} would be committed: deploy/compose/secrets/.gitignore"


# ------------------------------------------------------------------------------------ mounts, health, ports


def mount_problems(data: Compose) -> list[str]:
    """Bind mounts whose host path is missing or outside the repository or not read-only; undeclared volumes."""
    problems = []
    declared = set(data.get("volumes") or {})
    for name, service in data["services"].items():
        for source, target, read_only in mounts(service):
            if not is_bind(source):
                if source not in declared:
                    problems.append(f"{name}: volume {source} is not declared")
                continue
            host = (COMPOSE_DIR / source).resolve()
            if not host.is_relative_to(REPO) or not host.exists():
                problems.append(f"{name}: {source} does not exist in the repository")
            elif not read_only:
                problems.append(f"{name}: {source} is mounted writable at {target}")
        build = service.get("build")
        if build is not None:
            context = (COMPOSE_DIR / build["context"]).resolve()
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: no Dockerfile at {build.get('dockerfile')} in {context}")
    return problems


def test_every_mounted_host_path_exists() -> None:
    assert mount_problems(compose()) == []
    broken = compose()
    broken["services"]["grafana"]["volumes"].append("../grafana/dashbaords:/var/lib/grafana/more:ro")
    broken["services"]["mosquitto"]["volumes"][0] = "./mosquitto.conf:/mosquitto/config/mosquitto.conf"
    assert mount_problems(broken) == [
        "mosquitto: ./mosquitto.conf is mounted writable at /mosquitto/config/mosquitto.conf",
        "grafana: ../grafana/dashbaords does not exist in the repository",
    ]


def health_problems(data: Compose) -> list[str]:
    """Services without a healthcheck or a restart policy, and dependencies that do not wait for health."""
    problems = []
    for name, service in data["services"].items():
        check = service.get("healthcheck") or {}
        if check.get("disable") or not check.get("test") or check["test"] in (["NONE"], "NONE"):
            problems.append(f"{name}: no healthcheck")
        if service.get("restart") not in ("always", "unless-stopped"):
            problems.append(f"{name}: restart policy {service.get('restart')!r}")
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems += [f"{name}: depends on {d} without waiting for its health" for d in depends]
        else:
            for other, condition in depends.items():
                if condition.get("condition") != "service_healthy":
                    problems.append(f"{name}: depends on {other} without waiting for its health")
    return problems


def test_every_service_has_a_healthcheck_and_restarts() -> None:
    assert health_problems(compose()) == []
    broken = compose()
    del broken["services"]["influxdb"]["healthcheck"]
    broken["services"]["hub"]["depends_on"]["mosquitto"]["condition"] = "service_started"
    assert health_problems(broken) == [
        "hub: depends on mosquitto without waiting for its health",
        "influxdb: no healthcheck",
    ]


def published(data: Compose) -> list[tuple[str, str, int, int]]:
    """(service, host address, host port, container port) of every published port; short syntax only."""
    found = []
    for name, service in data["services"].items():
        for entry in service.get("ports") or []:
            assert isinstance(entry, str), f"{name}: use the short port syntax: {entry!r}"
            parts = entry.split("/")[0].split(":")
            assert len(parts) in (2, 3), f"{name}: give the host port (and address): {entry!r}"
            address = parts[0] if len(parts) == 3 else "0.0.0.0"
            found.append((name, address, int(parts[-2]), int(parts[-1])))
    return found


def port_problems(data: Compose) -> list[str]:
    """Ports published beyond the host's loopback that are not the gateways' TLS listener."""
    return [
        f"{name} publishes {port} on {address}"
        for name, address, _, port in published(data)
        if address != "127.0.0.1" and (name, port) not in PUBLIC_PORTS
    ]


def test_only_the_gateways_listener_is_published_beyond_loopback() -> None:
    data = compose()
    assert port_problems(data) == []
    assert {name for name, *_ in published(data)} == {"hub", "mosquitto", "grafana"}, "InfluxDB stays inside"
    [(_, _, _, hub_port)] = [p for p in published(data) if p[0] == "hub"]
    assert str(hub_port) == environment(data["services"]["hub"])["ANJU_HTTP_PORT"]
    broken = compose()
    broken["services"]["influxdb"]["ports"] = ["8086:8086"]
    broken["services"]["mosquitto"]["ports"].append("1883:1883")
    assert port_problems(broken) == ["mosquitto publishes 1883 on 0.0.0.0", "influxdb publishes 8086 on 0.0.0.0"]


# ------------------------------------------------------------------------------ hub, InfluxDB and Grafana agree


def deployment_file(data: Compose) -> Path:
    """The host file mounted where the hub's ANJU_DEPLOYMENT points."""
    hub = data["services"]["hub"]
    target = PurePosixPath(environment(hub)["ANJU_DEPLOYMENT"])
    sources = bind_sources(hub)
    assert target in sources, f"ANJU_DEPLOYMENT {target} is not mounted in the hub"
    return sources[target]


def influx_disagreements(data: Compose) -> list[str]:
    """Where the deployment file's storage.influxdb, InfluxDB's first setup and Grafana's data source differ."""
    influx = load_deployment(deployment_file(data), check_secrets=False).storage
    config = influx.influxdb
    assert influx.backend == "influxdb" and config is not None and config.api_version == 2
    server = environment(data["services"]["influxdb"])
    grafana = environment(data["services"]["grafana"])
    pairs = {
        "org": (config.org, server.get("DOCKER_INFLUXDB_INIT_ORG")),
        "bucket": (config.bucket, server.get("DOCKER_INFLUXDB_INIT_BUCKET")),
        "token": (config.token_file, server.get("DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE")),
        "retention": (f"{influx.raw_retention_days}d", server.get("DOCKER_INFLUXDB_INIT_RETENTION")),
        "DBRP database": (config.database, server.get("ANJU_INFLUXDB_DATABASE")),
        "DBRP retention policy": (config.retention_policy, server.get("ANJU_INFLUXDB_RETENTION_POLICY")),
        "Grafana's database": (config.database, grafana.get("ANJU_INFLUXDB_DATABASE")),
        "Grafana's URL": (config.url.rstrip("/"), grafana.get("ANJU_INFLUXDB_URL", "").rstrip("/")),
        "Grafana's read user": (server.get("ANJU_INFLUXDB_READ_USER"), grafana.get("ANJU_INFLUXDB_USER")),
    }
    problems = [f"{what}: hub {ours!r}, other {theirs!r}" for what, (ours, theirs) in pairs.items() if ours != theirs]
    host = re.match(r"https?://([^:/]+)", config.url)
    if host is None or host[1] not in data["services"]:
        problems.append(f"the hub's InfluxDB URL {config.url} is not a service of the stack")
    return problems


def test_hub_influxdb_and_grafana_agree() -> None:
    assert influx_disagreements(compose()) == []
    broken = compose()
    broken["services"]["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_BUCKET"] = "readings"
    broken["services"]["grafana"]["environment"]["ANJU_INFLUXDB_DATABASE"] = "anju2"
    assert influx_disagreements(broken) == [
        "bucket: hub 'anju', other 'readings'",
        "Grafana's database: hub 'anju', other 'anju2'",
    ]


def _variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)", text))


def _yaml_variables(node: object) -> set[str]:
    """``${NAME}`` in the values of a YAML document (not its comments: Grafana expands values only)."""
    if isinstance(node, dict):
        return set().union(*(_yaml_variables(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_yaml_variables(v) for v in node))
    return _variables(node) if isinstance(node, str) else set()


def test_every_variable_the_mounted_files_use_is_set() -> None:
    """Grafana's provisioning (mounted from deploy/grafana) and InfluxDB's init script expand variables: each is
    set by the service (Grafana's password by its entrypoint, from the secret; the bucket id by the influxdb image)."""
    data = compose()
    grafana = data["services"]["grafana"]
    exported = set(re.findall(r"export (\w+)", shell_words(grafana.get("entrypoint"))))
    used: set[str] = set()
    for target, host in bind_sources(grafana).items():
        if str(target).startswith("/etc/grafana/provisioning"):
            for file in sorted(host.rglob("*.yaml")):
                used |= _yaml_variables(yaml.safe_load(file.read_text(encoding="utf-8")))
    assert used, "the provisioning files are mounted"
    assert used - set(environment(grafana)) - exported == set()
    dashboards = [t for t in bind_sources(grafana) if str(t).startswith("/var/lib/grafana/dashboards/")]
    providers = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/anju.yaml").read_text())["providers"]
    assert [PurePosixPath(p["options"]["path"]) for p in providers] == dashboards
    influxdb = data["services"]["influxdb"]
    scripts = bind_sources(influxdb)[PurePosixPath("/docker-entrypoint-initdb.d")]
    image_sets = {"DOCKER_INFLUXDB_INIT_BUCKET_ID", "DOCKER_INFLUXDB_INIT_ORG_ID", "DOCKER_INFLUXDB_INIT_USER_ID"}
    for script in sorted(scripts.glob("*.sh")):
        assert os.access(script, os.X_OK), f"{script} must be executable: the image runs only executable scripts"
        assert _variables(script.read_text(encoding="utf-8")) - set(environment(influxdb)) - image_sets == set()


def test_the_dashboards_retention_policy_is_the_hubs() -> None:
    config = load_deployment(deployment_file(compose()), check_secrets=False).storage.influxdb
    assert config is not None
    board = yaml.safe_load((REPO / "deploy/grafana/dashboards/anju-community.json").read_text(encoding="utf-8"))
    constants = {v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "constant"}
    assert constants["raw_rp"] == config.retention_policy


# --------------------------------------------------------------------------------------------- the broker


def broker_config_files(data: Compose) -> tuple[Path, list[Path]]:
    """The broker's main config (host file mounted where the image reads it) and the files it includes."""
    mosquitto = data["services"]["mosquitto"]
    command = shell_words(mosquitto.get("command"))
    config_path = PurePosixPath(command.split("-c", 1)[1].split()[0]) if " -c " in f" {command} " else None
    sources = bind_sources(mosquitto)
    main = sources[config_path or MOSQUITTO_IMAGE_CONFIG]
    included: list[Path] = []
    for option, value in _options(main):
        if option == "include_dir":
            folder = PurePosixPath(value)
            if folder in sources:  # the directory mounted as a whole
                included += sorted(sources[folder].glob("*.conf"))
            else:  # files mounted one by one into it
                files = [source for target, source in sources.items() if target.parent == folder]
                assert files, f"include_dir {value}: nothing is mounted there"
                included += sorted(f for f in files if f.suffix == ".conf")
    return main, included


def _options(file: Path) -> Iterator[tuple[str, str]]:
    for line in file.read_text(encoding="utf-8").splitlines():
        words = line.split(None, 1)
        if words and not words[0].startswith("#"):
            yield words[0], words[1].strip() if len(words) > 1 else ""


def unmounted_broker_paths(data: Compose) -> list[str]:
    """Paths the broker's config files name (auth files, certificates, persistence) that no mount of the
    mosquitto service provides, so Mosquitto would not find them in its container."""
    main, included = broker_config_files(data)
    targets = [target for _, target, _ in mounts(data["services"]["mosquitto"])]
    problems = []
    for file in [main, *included]:
        for option, value in _options(file):
            if option in _PATH_OPTIONS | {"persistence_location"}:
                path = PurePosixPath(value)
                inside = any(path == t or path.is_relative_to(t) for t in targets)
                if not inside and not (option == "include_dir" and any(t.parent == path for t in targets)):
                    problems.append(f"{file.name}: {option} {value} is not mounted")
    return problems


def test_the_broker_reads_the_projects_config() -> None:
    data = compose()
    main, included = broker_config_files(data)
    assert main == COMPOSE_DIR / "mosquitto.conf"
    assert REPO / "deploy/mosquitto/anju.conf" in included
    assert unmounted_broker_paths(data) == []
    broken = compose()
    broken["services"]["mosquitto"]["volumes"] = [
        v for v in broken["services"]["mosquitto"]["volumes"] if not v.startswith("mosquitto-data:")
    ]
    assert unmounted_broker_paths(broken) == ["mosquitto.conf: persistence_location /mosquitto/data/ is not mounted"]
    for file in [main, *included]:
        if "/etc/mosquitto/anju" in file.read_text(encoding="utf-8"):
            assert PurePosixPath("/etc/mosquitto/anju") in {t for _, t, _ in mounts(data["services"]["mosquitto"])}


def test_the_published_broker_ports_have_listeners() -> None:
    data = compose()
    main, included = broker_config_files(data)
    ports = [int(value.split()[0]) for file in [main, *included] for o, value in _options(file) if o == "listener"]
    assert len(ports) == len(set(ports)), f"a port with two listeners (the broker would not start): {sorted(ports)}"
    listeners = set(ports)
    hub = environment(data["services"]["hub"])
    assert int(hub["ANJU_MQTT_PORT"]) in listeners, "the hub dials a port the broker listens on"
    assert hub["ANJU_MQTT_TLS"] == "true" and hub["ANJU_MQTT_PORT"] == "8883", "the hub crosses the network over TLS"
    missing = {port for name, _, _, port in published(data) if name == "mosquitto"} - listeners
    assert missing == set()


@pytest.fixture
def broker_with_auth(tmp_path: Path) -> Iterator[int]:
    """A real Mosquitto on 127.0.0.1 that refuses anonymous clients, as the stack's does; yields its port."""
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n", encoding="utf-8")
    with mosquitto_running(config, port):
        yield port


def run_healthcheck(test: list[str], *, port: int) -> int:
    """Exit status of a CMD-SHELL healthcheck run here as the container would, aimed at ``port``."""
    assert test[0] == "CMD-SHELL"
    command = test[1].replace("$$", "$").replace("-p 1883", f"-p {port}")
    assert f"-p {port}" in command
    return subprocess.run(["sh", "-c", command], timeout=30).returncode


def test_the_brokers_healthcheck_tells_up_from_down(broker_with_auth: int) -> None:
    require_service("mosquitto_sub (mosquitto-clients)", shutil.which("mosquitto_sub"))
    test = compose()["services"]["mosquitto"]["healthcheck"]["test"]
    assert run_healthcheck(test, port=broker_with_auth) == 0
    assert run_healthcheck(test, port=free_port()) != 0, "nothing listens there"


# ------------------------------------------------------------------------------------------------- the hub


def test_the_hub_healthcheck_asks_the_health_route(tmp_path: Path) -> None:
    data = compose()
    test = data["services"]["hub"]["healthcheck"]["test"]
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    [image_check] = re.findall(r"^HEALTHCHECK .*?CMD (\[[^\n]*\])$", dockerfile, flags=re.MULTILINE | re.DOTALL)
    assert yaml.safe_load(image_check) == test[1:], "compose repeats the image's healthcheck"
    [url] = re.findall(r"http://[^']+", shell_words(test))
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/.*)", url)
    assert match is not None
    assert match[1] == environment(data["services"]["hub"])["ANJU_HTTP_PORT"]
    app = create_app(HubSettings(deployment=tmp_path / "deployment.yaml", data_dir=tmp_path))
    paths = set(app.openapi()["paths"])
    assert match[2] in paths


def test_the_image_installs_the_hub_as_an_unprivileged_user() -> None:
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text(encoding="utf-8")
    [base] = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    assert base.startswith("python:3.11-slim")
    assert re.search(r'pip install "\.\[hub\]"', dockerfile)
    [user] = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert user not in ("root", "0")
    [cmd] = re.findall(r"^CMD (\[.*\])$", dockerfile, flags=re.MULTILINE)
    assert shlex.join(yaml.safe_load(cmd)) == "anju-hub serve"
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, flags=re.MULTILINE))
    packages = _packages()
    assert packages <= copied, f"the image copies every package pyproject.toml installs: {packages - copied}"


def _packages() -> set[str]:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    [include] = re.findall(r"^include = \[(.*)\]$", text, flags=re.MULTILINE)
    return {name.strip().strip('"').rstrip("*") for name in include.split(",")}


def test_the_secrets_folder_exists_for_the_tool() -> None:
    """compose.yaml's secret files live in deploy/compose/secrets/, which git keeps (its .gitignore) but empty."""
    assert (SECRETS_DIR / ".gitignore").is_file()
    tracked = subprocess.run(
        ["git", "ls-files", str(SECRETS_DIR)], cwd=REPO, capture_output=True, text=True, timeout=30
    ).stdout.split()
    assert [Path(t).name for t in tracked] in ([], [".gitignore"])
