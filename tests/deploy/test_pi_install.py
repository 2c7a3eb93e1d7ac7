"""deploy/pi/install.sh for real (issue 8): a clean Debian 12 root made by debootstrap, the installer run in it by
chroot — twice — and with bad input.

The root is ``debootstrap --variant=minbase bookworm`` (no Python, no systemd: the installer must bring them), the
agent a wheel built here from this checkout (``pip wheel --no-deps``), its dependencies from PyPI and the Debian
packages from Debian's mirror, both fetched inside the root. Only /proc is mounted into it (debootstrap makes the
device nodes); it is unmounted at teardown, and a root still holding a mount is never deleted.

Cost, measured on this 2-core machine: debootstrap takes 30-45 s (network and dpkg); the finished root is kept as a
tar under ``run/pi-root/`` and reused for a week (about 3 s to unpack), so later local runs skip it — CI's fresh
clone never has it. The wheel takes about 4 s, the first install (apt-get of Python and systemd, pip) about 16 s,
the second about 1 s. The whole module: 72-75 s cold (as in CI), 25-35 s with the cached root. It needs root,
debootstrap, chroot and shellcheck: a skip on a developer's machine without them, a failure under CI
(``CI=true``; ``scripts/ensure-services`` installs debootstrap and shellcheck).

The machine's own extra CA certificates (``/usr/local/share/ca-certificates``, e.g. a proxy's) are copied into the
root, as a site's trust would be on a Pi; the installer runs with an empty environment, as from a login shell.
"""

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "run" / "pi-root"
CACHE_MAX_AGE_S = 7 * 24 * 3600
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
INSIDE = Path("/tmp/anju")  # where the installer, the unit, the wheel and the config go in the root
INSTALLER = INSIDE / "deploy" / "pi" / "install.sh"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
INSTALL_TIMEOUT_S = 600
WATCHED = ("opt/anju-edge", "etc/anju-edge", "var/lib/anju-edge", "etc/systemd/system", "etc/passwd", "etc/group")
"""What the installer may change in the root: a second run must leave every file in it as it was."""

pytestmark = pytest.mark.timeout(1200)


@dataclass(frozen=True, slots=True)
class Root:
    """A Debian root on disk with /proc mounted; ``wheel`` and ``config`` are paths inside it."""

    path: Path
    wheel: Path
    config: Path

    def install(self, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the installer in the root by chroot (as root, or as ``user``), with an empty environment."""
        userspec = [f"--userspec={user}"] if user else []
        return subprocess.run(
            ["chroot", *userspec, str(self.path), "bash", str(INSTALLER), *args],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["chroot", str(self.path), *argv], env=ENV, capture_output=True, text=True, timeout=60, check=False
        )

    def inside(self, path: Path | str) -> Path:
        return self.path / str(path).lstrip("/")


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    prefix = str(path.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _unmount_all(path: Path) -> None:
    """Unmount everything under ``path``, a few tries each (a process may still hold it), lazily at last."""
    for point in _mounts_under(path):
        for _ in range(10):
            if subprocess.run(["umount", point], capture_output=True, timeout=30, check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30, check=False)
    left = _mounts_under(path)
    assert not left, f"still mounted: {left}"


def _remove_root(path: Path) -> None:
    """Delete a root, never while something is mounted in it (a bind mount would take the host's files with it)."""
    _unmount_all(path)
    shutil.rmtree(path, ignore_errors=True)


def _cached_root_tar() -> Path:
    """The tar of a fresh ``debootstrap --variant=minbase`` root, made when missing or older than a week."""
    tar = CACHE / f"{SUITE}-minbase.tar"
    if tar.exists() and time.time() - tar.stat().st_mtime < CACHE_MAX_AGE_S:
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = CACHE / f"debootstrap-{os.getpid()}"
    _remove_root(staging)
    try:
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, str(staging), MIRROR],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, f"debootstrap failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        partial = tar.with_suffix(f".{os.getpid()}.partial")
        archive = ["tar", "--numeric-owner", "-C", str(staging), "-cf", str(partial), "."]
        subprocess.run(archive, check=True, timeout=300)
        partial.replace(tar)
    finally:
        _remove_root(staging)
    return tar


def _wheel(target: Path, source: Path) -> Path:
    """``pip wheel --no-deps`` of a clean copy of this checkout made at ``source`` (an in-tree build would pick up
    a stale build/), into ``target``."""
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "run", "build", "*.egg-info", "__pycache__", ".*_cache", "node_modules"
        ),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = target.glob("anju-*.whl")
    return wheel


def _edge_config() -> str:
    """The demo gateway gw-b1's edge.yaml as ``anju-hub edge-config`` renders it for a Pi."""
    deployment = REPO / "deploy" / "demo" / "deployment.yaml"
    argv = [sys.executable, "-m", "hub", "edge-config", "--config", str(deployment), "--gateway", "gw-b1"]
    result = subprocess.run(
        [*argv, "--outbox", "/var/lib/anju-edge/outbox.sqlite3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Root]:
    found = os.geteuid() == 0 and shutil.which("debootstrap") and shutil.which("chroot")
    require_service("root with debootstrap and chroot", found)
    tar = _cached_root_tar()
    # Not under pytest's temporary directories: their clean-up of old runs must never meet a mounted root.
    path = CACHE / f"root-{os.getpid()}"
    for stale in CACHE.glob("root-*"):  # roots left by runs killed before their teardown (not by one still running)
        if not Path(f"/proc/{stale.name.removeprefix('root-')}").exists():
            _remove_root(stale)
    path.mkdir()
    try:
        # Numeric owners: the root's users are not the host's (a name could map to another uid here).
        subprocess.run(["tar", "--numeric-owner", "-C", str(path), "-xpf", str(tar)], check=True, timeout=300)
        local_cas = path / "usr/local/share/ca-certificates"
        local_cas.mkdir(parents=True, exist_ok=True)
        for certificate in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(certificate, local_cas / certificate.name)
        files = path / str(INSIDE).lstrip("/")
        for part in ("pi/install.sh", "systemd/anju-edge.service"):
            (files / "deploy" / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / "deploy" / part, files / "deploy" / part)
        wheel = _wheel(tmp_path_factory.mktemp("wheel"), files / "source")
        shutil.copy(wheel, files / wheel.name)
        (files / "edge.yaml").write_text(_edge_config(), encoding="utf-8")
        subprocess.run(["mount", "-t", "proc", "proc", str(path / "proc")], check=True, timeout=30)
        yield Root(path, INSIDE / wheel.name, INSIDE / "edge.yaml")
    finally:
        _remove_root(path)


@dataclass(frozen=True, slots=True)
class Installed:
    root: Root
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    before_second: dict[str, tuple[int, ...] | str]
    after_second: dict[str, tuple[int, ...] | str]
    first_s: float
    second_s: float


def snapshot(root: Path) -> dict[str, tuple[int, ...] | str]:
    """Every file and directory the installer may touch: kind, mode, owner, group, mtime and SHA-256 of files."""
    seen: dict[str, tuple[int, ...] | str] = {}
    for top in WATCHED:
        start = root / top
        paths = [start, *start.rglob("*")] if start.is_dir() else [start]
        for path in paths:
            info = path.lstat()
            key = str(path.relative_to(root))
            seen[key] = (info.st_mode, info.st_uid, info.st_gid, info.st_mtime_ns)
            if path.is_file() and not path.is_symlink():
                seen[key + "#sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_symlink():
                seen[key + "#target"] = os.readlink(path)
    return seen


@pytest.fixture(scope="module")
def installed(root: Root) -> Installed:
    args = ("--source", str(root.wheel), "--config", str(root.config))
    started = time.monotonic()
    first = root.install(*args)
    first_s = time.monotonic() - started
    assert first.returncode == 0, f"first run failed:\n{first.stdout}\n{first.stderr}"
    before = snapshot(root.path)
    started = time.monotonic()
    second = root.install(*args)
    second_s = time.monotonic() - started
    logging.getLogger(__name__).info(
        "install.sh in a fresh %s root: first run %.1f s, second %.1f s", SUITE, first_s, second_s
    )
    return Installed(root, first, second, before, snapshot(root.path), first_s, second_s)


def _ids(root: Root, user: str) -> tuple[int, int]:
    fields = root.inside("/etc/passwd").read_text(encoding="utf-8").splitlines()
    entry = next(line.split(":") for line in fields if line.startswith(user + ":"))
    return int(entry[2]), int(entry[3])


def test_the_first_run_installs_user_dirs_venv_unit_and_config(installed: Installed) -> None:
    root, out = installed.root, installed.first.stdout
    assert "changed: Debian packages python3 python3-venv ca-certificates systemd" in out
    assert "systemd is not running here" in out and "starts at the next boot" in out
    passwd = next(line for line in root.inside("/etc/passwd").read_text().splitlines() if line.startswith("anju-edge:"))
    assert passwd.split(":")[5:] == ["/var/lib/anju-edge", "/usr/sbin/nologin"]
    uid, gid = _ids(root, "anju-edge")
    assert uid < 1000, "a system user"
    expected = {
        "/opt/anju-edge": (0o755, 0, 0),
        "/etc/anju-edge": (0o770, 0, gid),
        "/var/lib/anju-edge": (0o750, uid, gid),
        "/etc/anju-edge/edge.yaml": (0o640, 0, gid),
        "/etc/systemd/system/anju-edge.service": (0o644, 0, 0),
    }
    for path, (mode, owner, group) in expected.items():
        info = root.inside(path).stat()
        assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (mode, owner, group), path
    unit = REPO / "deploy" / "systemd" / "anju-edge.service"
    assert root.inside("/etc/systemd/system/anju-edge.service").read_bytes() == unit.read_bytes()
    assert root.inside("/etc/anju-edge/edge.yaml").read_bytes() == root.inside(root.config).read_bytes()
    wanted = root.inside("/etc/systemd/system/multi-user.target.wants/anju-edge.service")
    assert os.readlink(wanted) == "/etc/systemd/system/anju-edge.service", "enabled"


def test_the_venv_runs_the_agent_as_its_user(installed: Installed) -> None:
    check = installed.root.run(
        "setpriv", "--reuid=anju-edge", "--regid=anju-edge", "--init-groups", "--",
        "/opt/anju-edge/venv/bin/anju-edge", "check-config", "/etc/anju-edge/edge.yaml",
    )  # fmt: skip
    assert (check.returncode, check.stdout) == (0, "ok: hongxing/gw-b1, 10 sensors\n"), check.stderr
    python = "/opt/anju-edge/venv/bin/python"
    assert installed.root.run(python, "-c", "import edge.agent, paho.mqtt, pymodbus").returncode == 0
    hub_dependency = installed.root.run(python, "-c", "import fastapi")
    assert hub_dependency.returncode != 0, "only .[edge] is installed on a Pi, not the hub's dependencies"


def test_the_second_run_changes_nothing_and_says_so(installed: Installed) -> None:
    second = installed.second
    assert second.returncode == 0, second.stderr
    assert [line for line in second.stdout.splitlines() if line.startswith("anju-edge install: changed:")] == []
    assert "nothing changed" in second.stdout.splitlines()[-1]
    assert installed.after_second == installed.before_second


def test_the_same_code_from_a_checkout_is_not_installed_again(installed: Installed) -> None:
    root = installed.root
    again = root.install("--source", str(INSIDE / "source"), "--config", str(root.config))
    assert again.returncode == 0, again.stderr
    assert "building a wheel of /tmp/anju/source" in again.stdout
    assert "ok: anju-0.1.0 [edge] already installed" in again.stdout, "the wheel built here has the same files"
    assert "nothing changed" in again.stdout.splitlines()[-1]
    assert snapshot(root.path) == installed.after_second


@pytest.mark.parametrize(
    ("os_release", "message"),
    [
        ('ID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40"\n', "unsupported OS: Fedora Linux 40"),
        ('ID=debian\nVERSION_ID="11"\nPRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\n', "needs Debian 12"),
    ],
)
def test_an_unsupported_os_is_refused(installed: Installed, os_release: str, message: str) -> None:
    root = installed.root
    link = root.inside("/etc/os-release")
    target = os.readlink(link)
    link.unlink()
    try:
        link.write_text(os_release, encoding="utf-8")
        result = root.install("--source", str(root.wheel), "--config", str(root.config))
    finally:
        link.unlink()
        link.symlink_to(target)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert snapshot(root.path) == installed.after_second


def test_bad_input_is_refused_naming_what_is_wrong(installed: Installed) -> None:
    root = installed.root
    missing = root.install("--source", str(root.wheel), "--config", "/tmp/anju/nowhere.yaml")
    assert missing.returncode == 1
    assert "error: --config /tmp/anju/nowhere.yaml: no such file" in missing.stderr

    bad = root.inside(INSIDE / "bad.yaml")
    good = root.inside(root.config).read_text(encoding="utf-8")
    bad.write_text(good + "colour: red\n", encoding="utf-8")
    invalid = root.install("--source", str(root.wheel), "--config", str(INSIDE / "bad.yaml"))
    assert invalid.returncode == 1
    assert "error: invalid config /tmp/anju/bad.yaml, not installed" in invalid.stderr
    line = len(good.splitlines()) + 1
    assert f"/tmp/anju/bad.yaml:{line}: colour = 'red': unknown key" in invalid.stderr, "the file, line and key"

    not_root = root.install("--source", str(root.wheel), "--config", str(root.config), user="nobody:nogroup")
    assert not_root.returncode == 1 and "error: must run as root" in not_root.stderr

    usage = root.install("--sauce", "x")
    assert usage.returncode == 2 and "unknown argument: --sauce" in usage.stderr
    assert snapshot(root.path) == installed.after_second, "a refused run changes nothing"


def test_a_differing_config_is_kept_unless_replace(installed: Installed) -> None:
    root = installed.root
    other = root.inside(INSIDE / "other.yaml")
    other.write_text(root.inside(root.config).read_text() + "health_interval_s: 30\n", encoding="utf-8")
    kept = root.install("--source", str(root.wheel), "--config", str(INSIDE / "other.yaml"))
    assert kept.returncode == 0, kept.stderr
    assert "WARNING: kept /etc/anju-edge/edge.yaml: it differs from /tmp/anju/other.yaml" in kept.stderr
    assert "nothing changed" in kept.stdout
    installed_config = root.inside("/etc/anju-edge/edge.yaml")
    original = installed_config.read_bytes()
    assert original == root.inside(root.config).read_bytes()

    replaced = root.install("--source", str(root.wheel), "--config", str(INSIDE / "other.yaml"), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    (aside,) = installed_config.parent.glob("edge.yaml.replaced-*")
    assert "(the previous one kept as /etc/anju-edge/" + aside.name + ")" in replaced.stdout
    assert (aside.read_bytes(), installed_config.read_bytes()) == (original, other.read_bytes())


def test_a_secret_given_always_replaces_the_installed_one(installed: Installed) -> None:
    """After `anju-hub provision rotate` the new mqtt.secret goes in without --replace (the hub never pushes
    secrets), the old one is not kept beside it, and the installed edge.yaml is left as it is."""
    root = installed.root
    for content in ("first-secret\n", "rotated-secret\n"):
        root.inside(INSIDE / "mqtt.secret").write_text(content, encoding="utf-8")
        result = root.install("--source", str(root.wheel), "--secret", str(INSIDE / "mqtt.secret"))
        assert result.returncode == 0, result.stderr
        assert "WARNING" not in result.stderr
        installed_secret = root.inside("/etc/anju-edge/mqtt.secret")
        assert installed_secret.read_text(encoding="utf-8") == content
        assert installed_secret.stat().st_mode & 0o777 == 0o640
    assert "replaced by /tmp/anju/mqtt.secret (a secret given is always installed)" in result.stdout
    assert not list(installed_secret.parent.glob("mqtt.secret.replaced-*"))


def test_the_installer_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    require_service("shellcheck", shellcheck)
    assert shellcheck is not None
    installer = REPO / "deploy" / "pi" / "install.sh"
    result = subprocess.run([shellcheck, str(installer)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout
