# Shared set-up steps for scripts/run.sh and scripts/test.sh (sourced, not run).

log() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    log "installing $* from Debian's packages"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bindir() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" ]] && { echo "$dir"; return 0; }
    done
    command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]] \
        && { pg_config --bindir; return 0; }
    return 1
}

ensure_system_packages() {
    local need=()
    command -v redis-server >/dev/null || need+=(redis-server)
    pg_bindir >/dev/null || need+=(postgresql)
    python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
    # the browser tests drive Debian's chromium (Playwright's own download is not reachable)
    [[ -x /usr/bin/chromium ]] || need+=(chromium)
    if ((${#need[@]})); then apt_install "${need[@]}"; fi
}

ensure_venv() {
    local extra=${1:-}
    local spec="." stamp=.venv/.installed
    [[ -n "$extra" ]] && spec=".[$extra]"
    local want
    want="$(sha256sum pyproject.toml | cut -c1-16)-$extra"
    if [[ ! -x .venv/bin/python ]]; then
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || { log "Python 3.11 or newer is needed"; exit 1; }
        log "creating .venv"
        python3 -m venv .venv
    fi
    if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
        log "installing the project into .venv"
        .venv/bin/python -m pip install -q --upgrade pip >/dev/null
        .venv/bin/python -m pip install -q -e "$spec"
        echo "$want" > "$stamp"
    fi
}

# A throw-away PostgreSQL cluster on a free port, owned by an unprivileged user (initdb refuses
# to run as root), with fsync off: test data need not survive a power cut.
start_private_postgres() {
    local bindir port user
    bindir=$(pg_bindir)
    port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    PRIVATE_PG_DIR=$(mktemp -d /tmp/hub-pg.XXXXXX)
    user=$(id -un)
    if [[ $(id -u) -eq 0 ]]; then
        user=postgres
        id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$PRIVATE_PG_DIR"
    fi
    local run=(env)
    [[ $(id -u) -eq 0 ]] && run=(runuser -u postgres --)
    "${run[@]}" "$bindir/initdb" -D "$PRIVATE_PG_DIR/data" -U postgres -A trust -E UTF8 \
        --no-sync >/dev/null
    "${run[@]}" "$bindir/pg_ctl" -D "$PRIVATE_PG_DIR/data" -l "$PRIVATE_PG_DIR/log" -w -s \
        -o "-p $port -k $PRIVATE_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start
    PRIVATE_PG_RUN=("${run[@]}")
    PRIVATE_PG_BIN=$bindir
    PRIVATE_PG_URL="postgresql+asyncpg://postgres@127.0.0.1:$port/postgres"
    log "private PostgreSQL on port $port"
}

stop_private_postgres() {
    if [[ -n "${PRIVATE_PG_DIR:-}" && -d "$PRIVATE_PG_DIR/data" ]]; then
        "${PRIVATE_PG_RUN[@]}" "$PRIVATE_PG_BIN/pg_ctl" -D "$PRIVATE_PG_DIR/data" -m immediate -s stop || true
        rm -rf "$PRIVATE_PG_DIR"
    fi
}
