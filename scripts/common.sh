# Shared set-up for scripts/test, scripts/run-examples (sourced, not run).
# Installs missing Debian packages (quiet when nothing is missing), then
# configures and builds into a build directory.

COPROC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COPROC_PACKAGES=(g++ meson ninja-build pkg-config cmake python3 libfmt-dev libcereal-dev catch2 valgrind libboost-dev libzmq3-dev cppzmq-dev nlohmann-json3-dev python3-zmq)

coproc_ensure_packages() {
    local missing=() pkg
    for pkg in "${COPROC_PACKAGES[@]}" "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "coproc: installing missing Debian packages: ${missing[*]}" >&2
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# coproc_build DIR [meson setup options...]: configure once, then build
# (the targets in COPROC_TARGETS, default all). Silent when nothing is to be
# done; otherwise one line per finished step on stderr, so a first build
# (minutes on two cores) shows its progress.
coproc_build() {
    local dir="$1"
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$COPROC_ROOT" "$@" >"$dir.setup.log" 2>&1 || {
            cat "$dir.setup.log" >&2
            return 1
        }
    fi
    # shellcheck disable=SC2206  # a list of target names
    local targets=(${COPROC_TARGETS:-})
    local plan
    plan=$(ninja -C "$dir" -n "${targets[@]}" 2>/dev/null || true)
    if grep -q '^\[' <<<"$plan"; then
        echo "coproc: building in $dir (log: $dir.ninja.log)" >&2
        # ninja's own status, whatever grep finds (and despite set -e/pipefail).
        local status=0
        {
            ninja -C "$dir" "${targets[@]}" 2>&1 | tee "$dir.ninja.log" | grep --line-buffered -E '^\[[0-9]+/[0-9]+\]' >&2
            status=${PIPESTATUS[0]}
        } || true
        [ "$status" -eq 0 ] || {
            grep -E -B2 -A12 'error|FAILED' "$dir.ninja.log" | head -80 >&2
            return 1
        }
    fi
}
