# scripts/lib.sh — shared by scripts/dev-start, scripts/citus-dev-start,
# scripts/citus-build and scripts/test.
#
# ensure_packages installs, on Debian 12, whatever the build, the server and
# the tests need and is not there yet.  It needs root only when something is
# missing.

RUNRA_PACKAGES=(
    build-essential pkg-config
    postgresql-15 postgresql-server-dev-15 libpq-dev
    libmicrohttpd-dev libcurl4-openssl-dev libcjson-dev zlib1g-dev
    protobuf-c-compiler libprotobuf-c-dev
    libkrb5-dev     # PostgreSQL's libpq-be.h includes gssapi.h (the ended-sessions hook)
    # Citus, built from ../shared/vendor by scripts/citus-build (its README's list)
    liblz4-dev libzstd-dev libselinux1-dev libpam0g-dev
    libipc-run-perl
    prometheus-alertmanager   # the alerting tests send to a real Alertmanager
    prometheus                # promtool checks /metrics
    curl
)

ensure_packages() {
    local missing=()
    local p
    for p in "${RUNRA_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "missing packages: ${missing[*]} (run this script as root once, or apt-get install them)" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The unprivileged account PostgreSQL runs as when we are root.
ensure_user() {
    local user=$1
    id "$user" >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash "$user"
}

# A copy of the source tree owned by runra_test, to run PostgreSQL (which
# refuses to run as root) from it; prints the copy's path.  One copy per
# source tree and purpose, so several checkouts can test at once.
test_user_copy() {
    local src=$1 purpose=$2 work
    ensure_user runra_test
    work=/tmp/runra_obs-$purpose.$(printf %s "$src" | md5sum | cut -c1-8)
    rm -rf "$work" && mkdir -p "$work"
    tar -C "$src" --exclude=./.git --exclude=./tmp_install --exclude=./tmp_check \
        --exclude='*.o' --exclude='*.so' -cf - . | tar -C "$work" -xf -
    chown -R runra_test "$work"
    printf '%s\n' "$work"
}

# Runs "make TARGET" (default: test, every pg_regress and TAP file) in the
# test copy WORK, as runra_test when we are root, with the extra environment
# given as VAR=value arguments.  -k: a failing pg_regress file does not hide
# the TAP results.  On failure, points at the logs and shows the first diffs.
run_suite() {
    local work=$1 target=$2 status=0
    shift 2
    local run=(env PROVE_TESTS="${PROVE_TESTS:-}" PROVE_FLAGS="${PROVE_FLAGS:-}" "$@"
               make -C "$work" -k -s "$target")
    if [ "$(id -u)" = 0 ]; then
        runuser -u runra_test -- "${run[@]}" || status=$?
    else
        "${run[@]}" || status=$?
    fi
    if [ $status -ne 0 ]; then
        echo "logs: $work/tmp_check (regression.diffs, tap/log)" >&2
        [ -f "$work/tmp_check/regression.diffs" ] && head -100 "$work/tmp_check/regression.diffs" >&2
    fi
    return $status
}

# Sets CITUS_ENV to the VAR=value arguments (for run_suite) that give the
# suite Citus: CITUS_DIR, the build scripts/citus-build cached once per
# machine, and RUNRA_CITUS_REQUIRED, so that a Citus test fails instead of
# skipping when Citus does not reach the server.  As root the build is made
# here, before the suite drops to runra_test, in a cache runra_test can
# read.  No Citus source on this machine: CITUS_ENV is empty, and the
# Citus tests skip.
citus_suite_env() {
    local src=$1 dir status=0
    CITUS_ENV=()
    dir=$("$src/scripts/citus-build") || status=$?
    case $status in
        0) CITUS_ENV=(CITUS_DIR="$dir" RUNRA_CITUS_REQUIRED=1) ;;
        3) echo "Citus is not available here: the Citus tests will skip" >&2 ;;
        *) return $status ;;
    esac
}
