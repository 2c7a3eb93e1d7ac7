#!/usr/bin/env bash
# Install or upgrade the Anju edge agent (anju-edge) on Raspberry Pi OS or Debian 12+, as root. Idempotent: a
# second run with the same arguments changes nothing and says so.
#
#   sudo deploy/pi/install.sh --config edge.yaml [--secret mqtt.secret --secret ca.crt ...] [--source PATH] [--pi]
#       [--replace]
#
# What it does, each step only when needed (the layout of deploy/systemd/anju-edge.service):
#   - the Debian packages python3, python3-venv, ca-certificates, systemd (apt-get, only those missing);
#   - the system user and group anju-edge; /opt/anju-edge (root, 0755), /etc/anju-edge (root:anju-edge, 0770: the
#     agent writes pushed configs there) and /var/lib/anju-edge (anju-edge, 0750: the outbox);
#   - the venv /opt/anju-edge/venv with the agent from --source (a checkout, a wheel or an sdist; default: the
#     checkout this script sits in) and the .[edge] extra (.[edge,pi] with --pi, for the GPIO relay), its
#     dependencies from PyPI; a source whose files are those already installed is not installed again;
#   - the unit /etc/systemd/system/anju-edge.service, from deploy/systemd/ beside this script;
#   - /etc/anju-edge/edge.yaml from --config (`anju-hub provision gateway` makes one, with the files it names: the
#     MQTT password file mqtt.secret and the CA ca.crt) and those files from --secret, mode 0640 root:anju-edge.
#     An installed edge.yaml that differs is kept, with a warning (the hub may have pushed a newer one), unless
#     --replace, which keeps the old one as NAME.replaced-TIMESTAMP; a --secret always replaces the installed one
#     (after `anju-hub provision rotate`; the hub never pushes secrets). Without --config the installed edge.yaml
#     is kept; there must be one;
#   - `anju-edge check-config` on the config, as the anju-edge user; its outbox must be under /var/lib/anju-edge
#     (the only state directory the unit can write);
#   - enables the unit; starts (or restarts, after a change) it only when systemd runs: not in a chroot or an
#     image being built, where it starts at the next boot.
# Exit status: 0 done (or nothing to do), 1 something is wrong (the message names it), 2 bad usage.
set -euo pipefail

readonly PREFIX=/opt/anju-edge
readonly VENV=$PREFIX/venv
readonly STAMP=$PREFIX/installed
readonly ETC=/etc/anju-edge
readonly STATE=/var/lib/anju-edge
readonly ACCOUNT=anju-edge
readonly UNIT=anju-edge.service
readonly UNIT_PATH=/etc/systemd/system/$UNIT
readonly PACKAGES=(python3 python3-venv ca-certificates systemd)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly UNIT_SOURCE=$here/../systemd/$UNIT

say() { printf 'anju-edge install: %s\n' "$*"; }
warnings=0
warn() {
    warnings=$((warnings + 1))
    printf 'anju-edge install: WARNING: %s\n' "$*" >&2
}
die() {
    printf 'anju-edge install: error: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

usage_error() {
    printf 'anju-edge install: error: %s (see %s --help)\n' "$*" "$0" >&2
    exit 2
}

changes=()
changed() {
    changes+=("$1")
    say "changed: $1"
}

arguments="$*"
source_path="" config="" pi=0 replace=0
secrets=()
while [ "$#" -gt 0 ]; do
    case "$1" in
    --source | --config | --secret)
        [ "$#" -ge 2 ] || usage_error "$1 needs a value"
        case "$1" in
        --source) source_path="$2" ;;
        --config) config="$2" ;;
        --secret) secrets+=("$2") ;;
        esac
        shift 2
        ;;
    --pi) pi=1; shift ;;
    --replace) replace=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
    esac
done

# -- what is wrong before anything changes: who, where, and the files given -----------------------------------

if [ "$(id -u)" -ne 0 ]; then
    die "must run as root (it installs packages, a user and a systemd unit): sudo $0 $arguments"
fi

if [ ! -r /etc/os-release ]; then
    die "unsupported OS: no /etc/os-release; needs Raspberry Pi OS or Debian 12 (bookworm) or later"
fi
# os_field NAME: the value of NAME in /etc/os-release (read in a subshell: its variables stay there).
os_field() {
    # shellcheck source=/dev/null
    (. /etc/os-release && printf '%s' "${!1:-}")
}
os_id="$(os_field ID)"
os_like="$(os_field ID_LIKE)"
os_version="$(os_field VERSION_ID)"
os_name="$(os_field PRETTY_NAME)"
os_name="${os_name:-${os_id:-unknown}}"
case " $os_id $os_like " in
*" debian "* | *" raspbian "*) ;;
*) die "unsupported OS: $os_name; needs Raspberry Pi OS or Debian 12 (bookworm) or later (apt, systemd)" ;;
esac
if { [ "$os_id" = debian ] || [ "$os_id" = raspbian ]; } && [ -n "$os_version" ] && [ "${os_version%%.*}" -lt 12 ]; then
    die "unsupported OS: $os_name; needs Debian 12 (bookworm) or later (Python >= 3.11)"
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    die "unsupported OS: $os_name has no apt-get/dpkg-query"
fi

if [ -z "$source_path" ]; then
    source_path="$here/../.."
    [ -f "$source_path/pyproject.toml" ] ||
        die "no --source given and $source_path (the checkout around this script) has no pyproject.toml"
fi
[ -e "$source_path" ] || die "--source $source_path: no such file or directory"
source_path="$(realpath "$source_path")"
case "$source_path" in
*.whl | *.tar.gz) [ -f "$source_path" ] || die "--source $source_path is not a file" ;;
*) [ -f "$source_path/pyproject.toml" ] ||
    die "--source $source_path is neither a wheel (.whl), an sdist (.tar.gz) nor a checkout with pyproject.toml" ;;
esac
if [ -n "$config" ]; then
    [ -f "$config" ] || die "--config $config: no such file"
    config="$(realpath "$config")"
fi
for secret in "${secrets[@]}"; do
    [ -f "$secret" ] || die "--secret $secret: no such file"
    case "$(basename "$secret")" in
    edge.yaml | edge.yaml.*) die "--secret $secret: that name is the config's own (edge.yaml and its siblings)" ;;
    esac
done
[ -f "$UNIT_SOURCE" ] || die "the unit file $UNIT_SOURCE is missing (run this script from an Anju checkout)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# -- Debian packages ----------------------------------------------------------------------------------------------

missing=()
for package in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" != installed ]; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed (network? /etc/apt/sources.list?)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$work/apt.log" 2>&1 ||
        { cat "$work/apt.log" >&2; die "apt-get could not install: ${missing[*]}"; }
    changed "Debian packages ${missing[*]}"
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "python3 is $(python3 --version 2>&1); anju-edge needs Python >= 3.11 (Debian 12 or later)"

# -- user and directories -----------------------------------------------------------------------------------------

if ! getent passwd "$ACCOUNT" >/dev/null; then
    group_option=(--user-group)
    if getent group "$ACCOUNT" >/dev/null; then
        group_option=(--gid "$ACCOUNT")
    fi
    useradd --system --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin "${group_option[@]}" "$ACCOUNT"
    changed "system user $ACCOUNT"
fi

# ensure_dir PATH OWNER GROUP MODE: create it, or put its owner, group and mode right.
ensure_dir() {
    local path="$1" owner="$2" group="$3" mode="$4"
    if [ -d "$path" ] && [ "$(stat -c '%U:%G %a' "$path")" = "$owner:$group ${mode#0}" ]; then
        return
    fi
    mkdir -p "$path"
    chown "$owner:$group" "$path"
    chmod "$mode" "$path"
    changed "directory $path ($owner:$group $mode)"
}
ensure_dir "$PREFIX" root root 0755
ensure_dir "$ETC" root "$ACCOUNT" 0770
ensure_dir "$STATE" "$ACCOUNT" "$ACCOUNT" 0750

# -- the venv and the agent ---------------------------------------------------------------------------------------

system_python="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv_python="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
if [ "$venv_python" != "$system_python" ]; then
    if [ -e "$VENV" ]; then
        say "the venv's Python (${venv_python:-not running}) is not the system's $system_python: making it anew"
        rm -rf "$VENV" "$STAMP"
    fi
    python3 -m venv "$VENV" || die "python3 -m venv $VENV failed (is python3-venv installed?)"
    changed "venv $VENV (Python $system_python)"
fi

pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
case "$source_path" in
*.whl) wheel="$source_path" ;;
*)
    say "building a wheel of $source_path"
    build="$source_path"
    if [ -d "$source_path" ]; then
        # From a copy: pip builds a checkout in place, which would leave build/ there and pack what a stale
        # build/lib still holds.
        build="$work/source"
        mkdir "$build"
        tar -C "$source_path" --exclude=./.git --exclude=./.venv --exclude=./run --exclude=./build \
            --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$build" -xf -
    fi
    "${pip[@]}" wheel --quiet --no-deps --wheel-dir "$work" "$build" >"$work/wheel.log" 2>&1 ||
        { cat "$work/wheel.log" >&2; die "could not build a wheel from $source_path (pip's messages above)"; }
    wheel="$(find "$work" -maxdepth 1 -name 'anju-*.whl' -print -quit)"
    [ -n "$wheel" ] || die "$source_path built no anju wheel (is it an Anju checkout?)"
    ;;
esac
extras=edge
if [ "$pi" -eq 1 ]; then
    extras=edge,pi
fi
# The wheel's RECORD lists the SHA-256 of every file in it: the same files give the same identity, however and
# whenever the wheel was built (a wheel's own bytes change with the build time). Its WHEEL file is left out: it
# names the setuptools version that built it, not what gets installed.
identity="$("$VENV/bin/python" - "$wheel" "$extras" <<'EOF'
import hashlib
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as archive:
    names = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD")]
    if len(names) != 1 or not names[0].startswith("anju-"):
        sys.exit(f"{sys.argv[1]} is not an anju wheel")
    lines = archive.read(names[0]).decode().splitlines()
dist_info = names[0].split("/")[0]
kept = sorted(line for line in lines if line.split(",")[0] not in (f"{dist_info}/WHEEL", f"{dist_info}/RECORD"))
digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()
print(f"{dist_info.removesuffix('.dist-info')} files-sha256={digest} extras={sys.argv[2]}")
EOF
)" || die "--source $source_path: not an anju wheel"
if [ "$(cat "$STAMP" 2>/dev/null || true)" = "$identity" ] && "$VENV/bin/anju-edge" --help >/dev/null 2>&1; then
    say "ok: ${identity%% *} [$extras] already installed in $VENV"
else
    say "installing ${identity%% *} [$extras] into $VENV (dependencies from PyPI)"
    # --force-reinstall: the same version with other files (a newer checkout) must replace the installed one.
    "${pip[@]}" install --root-user-action=ignore --quiet --no-deps --force-reinstall "$wheel" ||
        die "pip could not install $wheel (pip's messages above)"
    "${pip[@]}" install --root-user-action=ignore --quiet "${wheel}[$extras]" ||
        die "pip could not install the dependencies of ${wheel}[$extras] (pip's messages above; network? PyPI?)"
    printf '%s\n' "$identity" >"$STAMP"
    changed "agent ${identity%% *} [$extras]"
fi
"$VENV/bin/anju-edge" --help >/dev/null || die "$VENV/bin/anju-edge does not run after the install"

# -- the unit -----------------------------------------------------------------------------------------------------

unit_changed=0
if ! cmp -s "$UNIT_SOURCE" "$UNIT_PATH"; then
    install -D -o root -g root -m 0644 "$UNIT_SOURCE" "$UNIT_PATH"
    unit_changed=1
    changed "unit $UNIT_PATH"
fi

# -- config and secrets -------------------------------------------------------------------------------------------

# place SOURCE TARGET: install SOURCE as TARGET (0640 root:anju-edge) unless an equal one is there; one that
# differs is kept with a warning, or with --replace moved aside first.
place() {
    local source="$1" target="$2" kind="${3:-config}" aside
    if [ -e "$target" ] && cmp -s "$source" "$target"; then
        return
    fi
    if [ -e "$target" ] && [ "$kind" = secret ]; then
        # The hub never pushes a secret: the one given here is the current one (`anju-hub provision rotate`).
        install -o root -g "$ACCOUNT" -m 0640 "$source" "$target"
        changed "$target replaced by $source (a secret given is always installed)"
        return
    fi
    if [ -e "$target" ] && [ "$replace" -eq 0 ]; then
        warn "kept $target: it differs from $source (edited here, or pushed by the hub); pass --replace to install $source instead"
        return
    fi
    if [ -e "$target" ]; then
        aside="$target.replaced-$(date -u +%Y%m%dT%H%M%SZ)"
        cp -p "$target" "$aside"
        install -o root -g "$ACCOUNT" -m 0640 "$source" "$target"
        changed "$target replaced by $source (the previous one kept as $aside)"
        return
    fi
    install -o root -g "$ACCOUNT" -m 0640 "$source" "$target"
    changed "$target (from $source)"
}

for secret in "${secrets[@]}"; do
    place "$secret" "$ETC/$(basename "$secret")" secret
done
if [ -n "$config" ]; then
    if ! "$VENV/bin/anju-edge" check-config "$config" >"$work/check.log" 2>&1; then
        die "invalid config $config, not installed: $(sed -e 's/^.* bad configuration: //' "$work/check.log")"
    fi
    place "$config" "$ETC/edge.yaml"
elif [ -f "$ETC/edge.yaml" ]; then
    say "ok: keeping the installed $ETC/edge.yaml"
else
    die "no config: pass --config edge.yaml (anju-hub provision gateway ... --out DIR writes one, with its secrets)"
fi
# As the service will: its user, so that a file it cannot read fails here, not at the first start.
if ! setpriv --reuid="$ACCOUNT" --regid="$ACCOUNT" --init-groups -- \
    "$VENV/bin/anju-edge" check-config "$ETC/edge.yaml" >"$work/check.log" 2>&1; then
    die "invalid config $ETC/edge.yaml (checked as user $ACCOUNT): $(sed -e 's/^.* bad configuration: //' "$work/check.log")"
fi
outbox="$("$VENV/bin/python" -c 'import sys, pathlib, edge.config as c; print(c.load_config(pathlib.Path(sys.argv[1])).outbox)' \
    "$ETC/edge.yaml")" || die "could not read the outbox path from $ETC/edge.yaml"
case "$outbox" in
"$STATE"/*) ;;
*) die "$ETC/edge.yaml: outbox $outbox is not under $STATE, the only state directory the unit may write" ;;
esac
say "ok: $ETC/edge.yaml: $(cat "$work/check.log")"

# -- enable and start ---------------------------------------------------------------------------------------------

if ! systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then
    systemctl enable --quiet "$UNIT" || die "systemctl enable $UNIT failed"
    changed "unit $UNIT enabled"
fi
if [ -d /run/systemd/system ]; then
    if [ "$unit_changed" -eq 1 ]; then
        systemctl daemon-reload
    fi
    if [ "${#changes[@]}" -gt 0 ]; then
        systemctl restart "$UNIT" || die "$UNIT did not start: journalctl -u $UNIT"
        changed "unit $UNIT (re)started"
    elif ! systemctl is-active --quiet "$UNIT"; then
        systemctl start "$UNIT" || die "$UNIT did not start: journalctl -u $UNIT"
        changed "unit $UNIT started"
    fi
else
    say "systemd is not running here (a chroot, or an image being built): $UNIT is enabled and starts at the" \
        "next boot, not now"
fi

note=""
if [ "$warnings" -gt 0 ]; then
    note=" ($warnings warnings above)"
fi
if [ "${#changes[@]}" -eq 0 ]; then
    say "nothing changed: anju-edge was already installed$note"
else
    say "done: ${#changes[@]} changes$note"
fi
