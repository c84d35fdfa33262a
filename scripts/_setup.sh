# Shared install steps of scripts/run and scripts/test; sourced, not run.
#
# Every step checks first and does nothing when what it installs is already
# there, so a second run is quick. `apt-get update` runs at most once, and only
# when a Debian package must be installed.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
_APT_UPDATED=""

say() {
    printf '%s\n' "$*" >&2
}

die() {
    say "error: $*"
    exit 1
}

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root and sudo is not installed; run it as root, then run this script again"
    fi
}

# apt_install PACKAGE...: install Debian packages, without starting the
# services they bring (a redis-server package must not leave a server running
# on 6379: the tests start their own).
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "cannot install $* automatically: apt-get not found (this script knows Debian and Ubuntu); install them by hand"
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        if printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod 755 "$policy"; then
            made_policy=1
        fi
    fi
    local status=0 output
    output="$(mktemp)"
    if [ -z "$_APT_UPDATED" ]; then
        say "==> apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >"$output" 2>&1 &&
            _APT_UPDATED=1 || status=$?
    fi
    if [ "$status" -eq 0 ]; then
        say "==> apt-get install $*"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
            </dev/null >>"$output" 2>&1 || status=$?
    fi
    if [ -n "$made_policy" ]; then
        as_root rm -f "$policy"
    fi
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$output" >&2
        rm -f "$output"
        die "apt-get install $* failed"
    fi
    rm -f "$output"
}

# The hash of everything `pip install .` puts in the venv, to skip the install
# when nothing changed since the last one.
_source_hash() {
    (
        cd "$REPO_ROOT" &&
            {
                find setup.cfg pyproject.toml README.md gamenet twisted/plugins \
                    -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -not -name dropin.cache 2>/dev/null || true
            } |
            LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
    )
}

# ensure_venv: a working .venv in the repo, made with `python3 -m venv`;
# python3, python3-venv and python3-pip come from Debian when venv cannot work.
ensure_venv() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null &&
        "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$VENV"
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3 python3-venv python3-pip
        say "==> python3 -m venv .venv"
        python3 -m venv "$VENV" || { rm -rf "$VENV"; die "python3 -m venv failed"; }
    fi
    "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null ||
        { rm -rf "$VENV"; die "gamenet needs Python 3.11 or later; python3 is $(python3 -V 2>&1)"; }
}

# install_gamenet [EXTRA]: `pip install .` (or '.[EXTRA]') into .venv, not
# editable (twisted/plugins is a namespace directory that editable installs do
# not expose to twistd), skipped when the sources are those of the last install.
install_gamenet() {
    local extra="${1:-}" spec="." stamp hash
    [ -n "$extra" ] && spec=".[$extra]"
    stamp="$VENV/.gamenet-installed${extra:+-$extra}"
    hash="$(_source_hash)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] && "$VENV/bin/python" -c 'import gamenet' 2>/dev/null; then
        return 0
    fi
    say "==> pip install '$spec' into .venv"
    # A build/ left by an earlier build would put files deleted since into the wheel.
    rm -rf "$REPO_ROOT/build" "$REPO_ROOT"/*.egg-info
    (cd "$REPO_ROOT" && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$spec") ||
        die "pip install '$spec' failed"
    rm -rf "$REPO_ROOT/build" "$REPO_ROOT"/*.egg-info
    printf '%s\n' "$hash" >"$stamp"
    [ -n "$extra" ] && printf '%s\n' "$hash" >"$VENV/.gamenet-installed"
    return 0
}
