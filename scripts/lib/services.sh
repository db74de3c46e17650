# shellcheck shell=bash
#
# scripts/lib/services.sh: make sure Postgres and NATS (JetStream) are
# reachable for Chronicle, starting throwaway instances when they are not.
#
# Source this file from a bash script (it is `set -euo pipefail` friendly), then:
#
#   chronicle_load_dotenv .env        # optional: read .env without overriding the environment
#   ensure_services || exit 1         # exports DATABASE_URL and NATS_URL
#   chronicle_run_forwarding_signals cargo run ...   # optional: run a command, forwarding INT/TERM/HUP
#
# ensure_services looks at DATABASE_URL (default postgres://postgres@127.0.0.1:5432/chronicle)
# and NATS_URL (default nats://127.0.0.1:4222).  A service that answers there is
# used as it is.  Otherwise, if the address is local, a throwaway instance is started
# in a temporary directory (on the configured port if it is free, else on a free
# port, in which case the exported URL is rewritten) and an EXIT trap stops it and
# deletes its directory.  Services this file did not start are never touched.
#
# If the server binaries are missing, we are root, apt-get exists and
# CHRONICLE_NO_INSTALL is unset/empty, the Debian packages `postgresql` /
# `nats-server` are installed.

# Guard against being sourced twice.
if [[ -n ${_CSVC_LOADED:-} ]]; then
  return 0
fi
_CSVC_LOADED=1

CHRONICLE_DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/chronicle
CHRONICLE_DEFAULT_NATS_URL=nats://127.0.0.1:4222

# State of what we started (only these are ever stopped).
_csvc_pg_tmp=""       # temp dir of the throwaway cluster (data dir is $_csvc_pg_tmp/data)
_csvc_pg_ctl=""       # pg_ctl binary used to start it
_csvc_pg_started=""   # non-empty once pg_ctl start succeeded (or may have)
_csvc_pg_user=""      # OS user the cluster runs as (root only)
_csvc_nats_tmp=""
_csvc_nats_pid=""
_csvc_traps_installed=""
_csvc_cleaned=""
_csvc_child_pid=""
_csvc_pending_signal=""
_csvc_port=""
_csvc_initdb=""
_csvc_nats_bin=""
_csvc_nats_info=""
_csvc_pg_login_error=""
_csvc_pg_reused_after_install=""
_csvc_nats_reused_after_install=""
_csvc_setsid_cmd=()
_u_scheme="" _u_userinfo="" _u_host="" _u_port="" _u_rest=""

_csvc_say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# .env loading
# ---------------------------------------------------------------------------

# chronicle_load_dotenv [FILE]: export KEY=VALUE lines of FILE (default .env)
# for keys that are not already set in the environment.  Supports comments,
# blank lines, `export KEY=...`, and single/double-quoted values (no escape or
# variable expansion, no multi-line values).
chronicle_load_dotenv() {
  local file=${1:-.env} line key val
  [[ -f $file ]] || return 0
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]] || continue
    key=${BASH_REMATCH[2]}
    val=${BASH_REMATCH[3]}
    if [[ $val =~ ^\"(.*)\"[[:space:]]*(#.*)?$ ]]; then
      val=${BASH_REMATCH[1]}
    elif [[ $val =~ ^\'(.*)\'[[:space:]]*(#.*)?$ ]]; then
      val=${BASH_REMATCH[1]}
    else
      val=${val%%[[:space:]]#*}                 # inline comment
      val=${val%"${val##*[![:space:]]}"}         # trailing whitespace
    fi
    if [[ -n ${!key+x} ]]; then
      continue                                  # already set: the environment wins
    fi
    export "$key=$val"
  done <"$file"
}

# ---------------------------------------------------------------------------
# URL handling
# ---------------------------------------------------------------------------

# _csvc_parse_url URL DEFAULT_PORT: sets _u_scheme _u_userinfo _u_host _u_port
# _u_rest (path, query and fragment, verbatim).  Only the first URL of a
# comma-separated list is considered.
_csvc_parse_url() {
  local url=${1%%,*} default_port=$2 rest authority hostport after
  if [[ $url == *://* ]]; then
    _u_scheme=${url%%://*}
    rest=${url#*://}
  else
    _u_scheme=""
    rest=$url
  fi
  authority=${rest%%[/?#]*}
  _u_rest=${rest:${#authority}}
  if [[ $authority == *@* ]]; then
    _u_userinfo="${authority%@*}@"
    hostport=${authority##*@}
  else
    _u_userinfo=""
    hostport=$authority
  fi
  if [[ $hostport == \[* ]]; then                 # [ipv6]:port
    _u_host=${hostport#\[}
    _u_host=${_u_host%%\]*}
    after=${hostport#*\]}
    _u_port=${after#:}
  else
    _u_host=${hostport%%:*}
    if [[ $hostport == *:* ]]; then _u_port=${hostport##*:}; else _u_port=""; fi
  fi
  [[ -n $_u_port ]] || _u_port=$default_port
}

# _csvc_build_url HOST PORT: the parsed URL with its host and port replaced.
_csvc_build_url() {
  local host=$1
  [[ $host == *:* ]] && host="[$host]"
  printf '%s%s%s:%s%s' "${_u_scheme:+$_u_scheme://}" "$_u_userinfo" "$host" "$2" "$_u_rest"
}

_csvc_display_host() { if [[ $1 == *:* ]]; then printf '[%s]' "$1"; else printf '%s' "$1"; fi; }

_csvc_is_local_host() {
  case $1 in
    '' | localhost | 127.* | ::1 | 0.0.0.0 | ::) return 0 ;;
    *) return 1 ;;
  esac
}

# ---------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------

# _csvc_tcp BASH_SNIPPET HOST PORT: run a bash snippet with fd 3 connected to
# HOST:PORT (positional $1/$2 inside the snippet), bounded by a timeout.
_csvc_tcp() {
  local snippet=$1 host=$2 port=$3
  # shellcheck disable=SC2016  # expanded by the inner bash
  local code='exec 3<>"/dev/tcp/$1/$2" || exit 2; '"$snippet"
  if command -v timeout >/dev/null 2>&1; then
    timeout 5 bash -c "$code" _ "$host" "$port" 2>/dev/null
  else
    bash -c "$code" _ "$host" "$port" 2>/dev/null
  fi
}

# Does anything accept TCP connections on HOST:PORT?
_csvc_port_open() { _csvc_tcp 'exit 0' "$1" "$2"; }

_csvc_free_port() {
  local i p
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))   # below Linux's ephemeral range (32768+)
    if ! _csvc_port_open 127.0.0.1 "$p"; then
      printf '%s' "$p"
      return 0
    fi
  done
  return 1
}

# Find a Postgres client tool: PATH first, then /usr/lib/postgresql/*/bin (highest version).
_csvc_pg_client_tool() {
  local name=$1 d
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return 0
  fi
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
    if [[ -x $d/$name ]]; then
      printf '%s\n' "$d/$name"
      return 0
    fi
  done
  return 1
}

# _csvc_pg_probe HOST PORT: 0 = a Postgres server accepts connections,
# 1 = a Postgres server is there but rejects connections (starting up, ...),
# 2 = no Postgres server there.
_csvc_pg_probe() {
  local host=$1 port=$2 isready rc=0
  if isready=$(_csvc_pg_client_tool pg_isready); then
    "$isready" -q -h "$host" -p "$port" -t 5 >/dev/null 2>&1 || rc=$?
    case $rc in
      0 | 1) return "$rc" ;;
      *) return 2 ;;
    esac
  fi
  # No pg_isready: send an SSLRequest; a Postgres server answers 'S' or 'N'.
  # shellcheck disable=SC2016
  if _csvc_tcp 'printf "\x00\x00\x00\x08\x04\xd2\x16\x2f" >&3; IFS= read -r -n1 -t 3 r <&3 || exit 1; [[ $r == [SNE] ]]' "$host" "$port"; then
    return 0
  fi
  return 2
}

# Wait a little if a Postgres server is there but still starting.
_csvc_pg_probe_wait() {
  local rc=0 i
  for ((i = 0; i < 20; i++)); do
    rc=0
    _csvc_pg_probe "$1" "$2" || rc=$?
    [[ $rc == 1 ]] || return "$rc"
    sleep 0.5
  done
  return 1
}

# _csvc_pg_login_check URL: when psql is available, try to log in (to the
# `postgres` database, since the app creates its own database).  Fails only when
# the server clearly rejects the credentials; other problems are left to the app.
_csvc_pg_login_check() {
  local psql err url query=""
  psql=$(_csvc_pg_client_tool psql) || return 0
  [[ $_u_rest == *\?* ]] && query="?${_u_rest#*\?}"
  url="${_u_scheme:-postgres}://${_u_userinfo}$(_csvc_display_host "${_u_host:-localhost}"):${_u_port}/postgres${query}"
  if err=$(PGCONNECT_TIMEOUT=5 "$psql" -X -w -q -At -d "$url" -c 'select 1' 2>&1 >/dev/null </dev/null); then
    return 0
  fi
  if [[ $err =~ (authentication\ failed|no\ password\ supplied|fe_sendauth|pg_hba\.conf|role\ \".*\"\ does\ not\ exist) ]]; then
    _csvc_pg_login_error=$(printf '%s' "$err" | head -n 1)
    return 1
  fi
  return 0
}

# _csvc_nats_probe HOST PORT: 0 = a NATS server answers (it greets with INFO),
# 2 = not a NATS server.  Sets _csvc_nats_info to the greeting.
_csvc_nats_probe() {
  # shellcheck disable=SC2016
  _csvc_nats_info=$(_csvc_tcp 'IFS= read -r -t 3 l <&3 || exit 1; [[ $l == INFO* ]] || exit 1; printf "%s" "$l"' "$1" "$2") || return 2
  return 0
}

# ---------------------------------------------------------------------------
# Installing / running as the postgres user
# ---------------------------------------------------------------------------

_csvc_can_install() {
  [[ -z ${CHRONICLE_NO_INSTALL:-} ]] && [[ $EUID == 0 ]] && command -v apt-get >/dev/null 2>&1
}

_csvc_apt_install() {
  local svc=$1 pkg=$2
  _csvc_say "$svc: installing Debian package '$pkg' (set CHRONICLE_NO_INSTALL=1 to prevent this) ..."
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -q --no-install-recommends "$pkg" >&2 </dev/null; then
    hash -r
    return 0
  fi
  if apt-get update -q >&2 </dev/null && apt-get install -y -q --no-install-recommends "$pkg" >&2 </dev/null; then
    hash -r
    return 0
  fi
  _csvc_say "$svc: error: 'apt-get install $pkg' failed"
  return 1
}

# Sets _csvc_initdb and _csvc_pg_ctl.  /usr/lib/postgresql/*/bin (highest version) first, then PATH.
_csvc_find_pg_server() {
  local d
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
    if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
      _csvc_initdb=$d/initdb
      _csvc_pg_ctl=$d/pg_ctl
      return 0
    fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    _csvc_initdb=$(command -v initdb)
    _csvc_pg_ctl=$(command -v pg_ctl)
    return 0
  fi
  return 1
}

# Services are started in their own session when possible, so that a Ctrl-C in
# the terminal does not hit them before the app has shut down gracefully.
# (-w: if setsid has to fork, it still waits, so pg_ctl -w keeps its meaning.)
_csvc_init_setsid() {
  _csvc_setsid_cmd=()
  if command -v setsid >/dev/null 2>&1; then
    if setsid --help 2>&1 | grep -q -- '--wait'; then
      _csvc_setsid_cmd=(setsid -w)
    else
      _csvc_setsid_cmd=(setsid)
    fi
  fi
}

# _csvc_as_pg_user [--setsid] CMD...: run CMD as the cluster's OS user (root
# cannot run initdb/postgres).
_csvc_as_pg_user() {
  local pre=()
  if [[ $1 == --setsid ]]; then
    shift
    pre=("${_csvc_setsid_cmd[@]}")
  fi
  if [[ -z $_csvc_pg_user ]]; then
    "${pre[@]}" "$@"
  elif command -v runuser >/dev/null 2>&1; then
    "${pre[@]}" runuser -u "$_csvc_pg_user" -- "$@"
  else
    "${pre[@]}" su -s /bin/bash "$_csvc_pg_user" -c "$(printf '%q ' "$@")"
  fi
}

_csvc_choose_pg_user() {
  _csvc_pg_user=""
  [[ $EUID == 0 ]] || return 0
  if id -u postgres >/dev/null 2>&1; then
    _csvc_pg_user=postgres
    return 0
  fi
  if ! id -u chronicle-pg >/dev/null 2>&1; then
    _csvc_say "postgres: creating system user 'chronicle-pg' to run the throwaway cluster (initdb refuses to run as root)"
    if ! useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin chronicle-pg >&2; then
      _csvc_say "postgres: error: could not create a system user to run Postgres as"
      return 1
    fi
  fi
  _csvc_pg_user=chronicle-pg
}

# Make a temp dir that the cluster user can write to (a TMPDIR under /root would not do).
_csvc_make_pg_tmp() {
  local base
  for base in "${TMPDIR:-/tmp}" /tmp; do
    _csvc_pg_tmp=$(mktemp -d "$base/chronicle-pg.XXXXXX") || continue
    if [[ -n $_csvc_pg_user ]]; then
      chown "$_csvc_pg_user:" "$_csvc_pg_tmp" || true
      chmod 700 "$_csvc_pg_tmp" || true
      if ! _csvc_as_pg_user test -w "$_csvc_pg_tmp" 2>/dev/null; then
        rm -rf "$_csvc_pg_tmp"
        _csvc_pg_tmp=""
        continue
      fi
    fi
    return 0
  done
  _csvc_say "postgres: error: could not create a temporary directory usable by user '${_csvc_pg_user:-$(id -un)}'"
  return 1
}

# ---------------------------------------------------------------------------
# Throwaway Postgres
# ---------------------------------------------------------------------------

_csvc_log_tail() {
  local f
  for f in "$@"; do
    if [[ -s $f ]]; then
      _csvc_say "---- $f (last lines) ----"
      tail -n 15 "$f" >&2 || true
    fi
  done
}

# _csvc_start_postgres HOST PORT: start a throwaway cluster; on success sets _csvc_port.
_csvc_start_postgres() {
  local want_port=$2 port attempt data psql role db
  if ! _csvc_find_pg_server; then
    if _csvc_can_install; then
      _csvc_apt_install postgres postgresql || return 1
      # The package's postinst may have created and started a `main` cluster.
      if _csvc_pg_probe_wait "$1" "$want_port" && _csvc_pg_login_check; then
        _csvc_port=$want_port
        _csvc_pg_reused_after_install=1
        return 0
      fi
      _csvc_find_pg_server || {
        _csvc_say "postgres: error: installed 'postgresql' but still cannot find initdb/pg_ctl"
        return 1
      }
    else
      _csvc_say "postgres: error: nothing answers at $(_csvc_display_host "$1"):$want_port and no PostgreSQL server binaries (initdb, pg_ctl) were found."
      _csvc_say "postgres:        Install them (sudo apt-get install postgresql) or point DATABASE_URL at a reachable server.${CHRONICLE_NO_INSTALL:+ (Automatic installation is disabled by CHRONICLE_NO_INSTALL.)}"
      return 1
    fi
  fi

  _csvc_choose_pg_user || return 1
  _csvc_make_pg_tmp || return 1
  data=$_csvc_pg_tmp/data

  if ! (cd / && _csvc_as_pg_user "$_csvc_initdb" -D "$data" -A trust -U postgres -E UTF8 --locale=C) >"$_csvc_pg_tmp/initdb.log" 2>&1; then
    _csvc_say "postgres: error: initdb failed ($_csvc_initdb)"
    _csvc_log_tail "$_csvc_pg_tmp/initdb.log"
    return 1
  fi
  {
    printf '\n# chronicle throwaway cluster\n'
    printf "listen_addresses = '127.0.0.1'\n"
    printf "unix_socket_directories = '%s'\n" "$_csvc_pg_tmp"
  } >>"$data/postgresql.conf"

  for attempt in 1 2 3 4 5; do
    if [[ $attempt == 1 ]] && ! _csvc_port_open 127.0.0.1 "$want_port"; then
      port=$want_port
    else
      port=$(_csvc_free_port) || {
        _csvc_say "postgres: error: could not find a free TCP port"
        return 1
      }
    fi
    _csvc_pg_started=1
    if (cd / && _csvc_as_pg_user --setsid "$_csvc_pg_ctl" -D "$data" -l "$_csvc_pg_tmp/postgres.log" \
      -w -t 60 -o "-p $port" start) >"$_csvc_pg_tmp/pg_ctl.log" 2>&1 </dev/null; then
      _csvc_port=$port
      break
    fi
    # Make sure nothing is left half-started before retrying or giving up.
    (cd / && _csvc_as_pg_user "$_csvc_pg_ctl" -D "$data" -m immediate -w stop) >/dev/null 2>&1 || true
    _csvc_pg_started=""
    if grep -qs 'Address already in use' "$_csvc_pg_tmp/postgres.log" "$_csvc_pg_tmp/pg_ctl.log"; then
      : >"$_csvc_pg_tmp/postgres.log"
      continue                                   # lost a race for the port: try another one
    fi
    _csvc_say "postgres: error: could not start the throwaway cluster ($_csvc_pg_ctl)"
    _csvc_log_tail "$_csvc_pg_tmp/pg_ctl.log" "$_csvc_pg_tmp/postgres.log"
    return 1
  done
  if [[ -z $_csvc_pg_started ]]; then
    _csvc_say "postgres: error: could not start the throwaway cluster: no free port found"
    return 1
  fi

  # Create the URL's role (if not postgres) and database, so that tests which
  # connect directly work too.  Best effort.
  if psql=$(_csvc_pg_client_tool psql); then
    role=${_u_userinfo%@}
    role=${role%%:*}
    [[ -n $role ]] || role=${PGUSER:-$(id -un)}
    if [[ $role != postgres && $role =~ ^[A-Za-z_][A-Za-z0-9_.-]*$ ]]; then
      "$psql" -X -q -h 127.0.0.1 -p "$_csvc_port" -U postgres -d postgres \
        -c "CREATE ROLE \"$role\" LOGIN SUPERUSER" >/dev/null 2>&1 </dev/null || true
    fi
    db=${_u_rest#/}
    db=${db%%[?#]*}
    if [[ -n $db && $db != postgres && $db =~ ^[A-Za-z_][A-Za-z0-9_.-]*$ ]]; then
      "$psql" -X -q -h 127.0.0.1 -p "$_csvc_port" -U postgres -d postgres \
        -c "CREATE DATABASE \"$db\"" >/dev/null 2>&1 </dev/null || true
    fi
  fi
  return 0
}

_csvc_stop_postgres() {
  [[ -n $_csvc_pg_tmp ]] || return 0
  local data=$_csvc_pg_tmp/data pid="" i
  if [[ -n $_csvc_pg_started && -f $data/postmaster.pid ]]; then
    pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] || pid=""
    if ! (cd / && _csvc_as_pg_user "$_csvc_pg_ctl" -D "$data" -m fast -w -t 30 stop) >/dev/null 2>&1; then
      # pg_ctl failed: signal our postmaster directly (immediate shutdown).
      [[ -z $pid ]] || kill -QUIT "$pid" 2>/dev/null || true
    fi
    # The postmaster removes its pid file just before exiting: wait for the process itself.
    if [[ -n $pid ]]; then
      for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  _csvc_pg_started=""
  rm -rf "$_csvc_pg_tmp" || true
  _csvc_pg_tmp=""
}

# ---------------------------------------------------------------------------
# Throwaway NATS
# ---------------------------------------------------------------------------

_csvc_find_nats() {
  local c
  for c in "$(command -v nats-server 2>/dev/null || true)" /usr/sbin/nats-server /usr/local/bin/nats-server /usr/bin/nats-server; do
    if [[ -n $c && -x $c ]]; then
      _csvc_nats_bin=$c
      return 0
    fi
  done
  return 1
}

# _csvc_start_nats HOST PORT: on success sets _csvc_port.
_csvc_start_nats() {
  local want_port=$2 port attempt deadline base started
  if ! _csvc_find_nats; then
    if _csvc_can_install; then
      _csvc_apt_install nats nats-server || return 1
      # The package may have started a system-wide server.
      if _csvc_nats_probe "$1" "$want_port"; then
        _csvc_port=$want_port
        _csvc_nats_reused_after_install=1
        return 0
      fi
      _csvc_find_nats || {
        _csvc_say "nats: error: installed 'nats-server' but still cannot find the nats-server binary"
        return 1
      }
    else
      _csvc_say "nats: error: nothing answers at $(_csvc_display_host "$1"):$want_port and no nats-server binary was found."
      _csvc_say "nats:        Install it (sudo apt-get install nats-server) or point NATS_URL at a reachable server with JetStream.${CHRONICLE_NO_INSTALL:+ (Automatic installation is disabled by CHRONICLE_NO_INSTALL.)}"
      return 1
    fi
  fi

  for base in "${TMPDIR:-/tmp}" /tmp; do
    _csvc_nats_tmp=$(mktemp -d "$base/chronicle-nats.XXXXXX") && break
  done
  [[ -n $_csvc_nats_tmp ]] || {
    _csvc_say "nats: error: could not create a temporary directory"
    return 1
  }

  for attempt in 1 2 3 4 5; do
    if [[ $attempt == 1 ]] && ! _csvc_port_open 127.0.0.1 "$want_port"; then
      port=$want_port
    else
      port=$(_csvc_free_port) || {
        _csvc_say "nats: error: could not find a free TCP port"
        return 1
      }
    fi
    : >"$_csvc_nats_tmp/nats.log"
    "${_csvc_setsid_cmd[@]}" "$_csvc_nats_bin" -a 127.0.0.1 -p "$port" -js -sd "$_csvc_nats_tmp/jetstream" \
      -l "$_csvc_nats_tmp/nats.log" -P "$_csvc_nats_tmp/nats.pid" </dev/null >/dev/null 2>&1 &
    _csvc_nats_pid=$!
    started=""
    deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
      if ! kill -0 "$_csvc_nats_pid" 2>/dev/null; then
        break                                       # it exited
      fi
      if _csvc_nats_probe 127.0.0.1 "$port"; then
        started=1
        break
      fi
      sleep 0.1
    done
    if [[ -n $started ]]; then
      _csvc_port=$port
      return 0
    fi
    _csvc_kill_nats
    if grep -qs 'address already in use' "$_csvc_nats_tmp/nats.log"; then
      continue                                      # lost a race for the port
    fi
    _csvc_say "nats: error: could not start nats-server ($_csvc_nats_bin) on 127.0.0.1:$port"
    _csvc_log_tail "$_csvc_nats_tmp/nats.log"
    return 1
  done
  _csvc_say "nats: error: could not start nats-server: no free port found"
  return 1
}

_csvc_kill_nats() {
  local pid i alive pids=()
  [[ -n $_csvc_nats_pid ]] && pids+=("$_csvc_nats_pid")
  if [[ -n $_csvc_nats_tmp && -f $_csvc_nats_tmp/nats.pid ]]; then
    pid=$(head -n 1 "$_csvc_nats_tmp/nats.pid" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ && $pid != "${_csvc_nats_pid:-}" ]] && pids+=("$pid")
    rm -f "$_csvc_nats_tmp/nats.pid"
  fi
  ((${#pids[@]})) || return 0
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    alive=""
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ -n $alive ]] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait "$_csvc_nats_pid" 2>/dev/null || true
  _csvc_nats_pid=""
}

_csvc_stop_nats() {
  _csvc_kill_nats
  if [[ -n $_csvc_nats_tmp ]]; then
    rm -rf "$_csvc_nats_tmp" || true
    _csvc_nats_tmp=""
  fi
}

# ---------------------------------------------------------------------------
# Cleanup and traps
# ---------------------------------------------------------------------------

_csvc_cleanup() {
  local -
  set +e
  [[ -z $_csvc_cleaned ]] || return 0
  _csvc_cleaned=1
  _csvc_stop_nats
  _csvc_stop_postgres
  return 0
}

# Print the command of the current trap for SIGNAL (empty if none).
_csvc_trap_cmd() {
  local p
  p=$(trap -p "$1")
  [[ -n $p ]] || return 0
  eval "set -- $p"
  printf '%s' "$3"
}

_csvc_install_traps() {
  [[ -z $_csvc_traps_installed ]] || return 0
  _csvc_traps_installed=1
  local old sig code
  old=$(_csvc_trap_cmd EXIT)
  # shellcheck disable=SC2064  # expand the old trap now, on purpose
  trap "_csvc_cleanup${old:+; $old}" EXIT
  # In a script, turn INT/TERM/HUP into an exit so that the EXIT trap runs.
  # (Not in an interactive shell: Ctrl-C must not close it.)
  if [[ $- != *i* ]]; then
    for sig in INT TERM HUP; do
      case $sig in INT) code=130 ;; TERM) code=143 ;; HUP) code=129 ;; esac
      if [[ -n $(trap -p "$sig") ]]; then
        old=$(_csvc_trap_cmd "$sig")
        [[ -n $old ]] || continue                # signal deliberately ignored: leave it so
        # shellcheck disable=SC2064
        trap "$old; exit $code" "$sig"
      else
        # shellcheck disable=SC2064
        trap "exit $code" "$sig"
      fi
    done
  fi
}

# ---------------------------------------------------------------------------
# Public: ensure_services
# ---------------------------------------------------------------------------

ensure_services() {
  local db_url nats_url host port display rc
  db_url=${DATABASE_URL:-$CHRONICLE_DEFAULT_DATABASE_URL}
  nats_url=${NATS_URL:-$CHRONICLE_DEFAULT_NATS_URL}
  _csvc_install_traps
  _csvc_init_setsid

  # ----- Postgres -----
  _csvc_parse_url "$db_url" 5432
  host=${_u_host:-localhost}
  port=$_u_port
  display="$(_csvc_display_host "$host"):$port"
  if [[ -n $_csvc_pg_tmp ]]; then
    : # already started by an earlier call; DATABASE_URL already points at it
  elif [[ -z $_u_host && $_u_rest == *host=* ]]; then
    _csvc_say "postgres: using DATABASE_URL as is (host given as a query parameter)"
  elif ! [[ $port =~ ^[0-9]+$ ]]; then
    _csvc_say "postgres: error: cannot parse the port of DATABASE_URL ($db_url)"
    return 1
  else
    rc=0
    _csvc_pg_probe_wait "$host" "$port" || rc=$?
    _csvc_pg_login_error=""
    if [[ $rc == 0 ]] && _csvc_pg_login_check; then
      _csvc_say "postgres: using $display"
    elif ! _csvc_is_local_host "$host"; then
      if [[ -n $_csvc_pg_login_error ]]; then
        _csvc_say "postgres: error: $display rejects the login: $_csvc_pg_login_error"
      else
        _csvc_say "postgres: error: no Postgres server accepts connections at $display (from DATABASE_URL)."
        _csvc_say "postgres:        A throwaway cluster can only stand in for a local address (127.0.0.1/localhost); start that server or change DATABASE_URL."
      fi
      return 1
    else
      if [[ -n $_csvc_pg_login_error ]]; then
        _csvc_say "postgres: note: the server at $display rejects the login ($_csvc_pg_login_error); starting a throwaway cluster instead"
      elif [[ $rc == 1 ]]; then
        _csvc_say "postgres: note: the server at $display is not accepting connections; starting a throwaway cluster instead"
      elif _csvc_port_open 127.0.0.1 "$port"; then
        _csvc_say "postgres: note: $display is taken by something that is not Postgres; starting a throwaway cluster on another port"
      fi
      _csvc_pg_reused_after_install=""
      _csvc_start_postgres "$host" "$port" || return 1
      if [[ -n $_csvc_pg_reused_after_install ]]; then
        _csvc_say "postgres: using $display (started by the package installation)"
      else
        _csvc_say "postgres: started throwaway cluster on 127.0.0.1:$_csvc_port (data in $_csvc_pg_tmp/data)"
        if [[ $_csvc_port != "$port" || $host != 127.0.0.1 ]]; then
          db_url=$(_csvc_build_url 127.0.0.1 "$_csvc_port")
        fi
      fi
    fi
  fi

  # ----- NATS -----
  _csvc_parse_url "$nats_url" 4222
  host=${_u_host:-localhost}
  port=$_u_port
  display="$(_csvc_display_host "$host"):$port"
  if [[ -n $_csvc_nats_tmp ]]; then
    :
  elif ! [[ $port =~ ^[0-9]+$ ]]; then
    _csvc_say "nats: error: cannot parse the port of NATS_URL ($nats_url)"
    return 1
  elif _csvc_nats_probe "$host" "$port"; then
    _csvc_say "nats: using $display"
    if [[ $_csvc_nats_info != *'"jetstream":true'* ]]; then
      _csvc_say "nats: warning: the server at $display does not advertise JetStream; Chronicle needs it (nats-server -js)"
    fi
  elif ! _csvc_is_local_host "$host"; then
    _csvc_say "nats: error: no NATS server answers at $display (from NATS_URL)."
    _csvc_say "nats:        A throwaway server can only stand in for a local address (127.0.0.1/localhost); start that server or change NATS_URL."
    return 1
  else
    if _csvc_port_open 127.0.0.1 "$port"; then
      _csvc_say "nats: note: $display is taken by something that is not NATS; starting a throwaway server on another port"
    fi
    _csvc_nats_reused_after_install=""
    _csvc_start_nats "$host" "$port" || return 1
    if [[ -n $_csvc_nats_reused_after_install ]]; then
      _csvc_say "nats: using $display (started by the package installation)"
    else
      _csvc_say "nats: started throwaway server on 127.0.0.1:$_csvc_port (JetStream data in $_csvc_nats_tmp/jetstream)"
      if [[ $_csvc_port != "$port" || $host != 127.0.0.1 ]]; then
        nats_url=$(_csvc_build_url 127.0.0.1 "$_csvc_port")
      fi
    fi
  fi

  export DATABASE_URL=$db_url
  export NATS_URL=$nats_url
}

# ---------------------------------------------------------------------------
# Public: chronicle_run_forwarding_signals CMD [ARGS...]
# ---------------------------------------------------------------------------
# Run CMD in its own process group and wait for it, forwarding INT/TERM/HUP to
# that group, so that the app shuts down gracefully first and the EXIT trap
# cleans up the throwaway services afterwards.  Returns CMD's exit status.

_csvc_forward() {
  if [[ -z $_csvc_child_pid ]]; then
    _csvc_pending_signal=$1
    return 0
  fi
  kill -s "$1" -- "-$_csvc_child_pid" 2>/dev/null || kill -s "$1" "$_csvc_child_pid" 2>/dev/null || true
}

chronicle_run_forwarding_signals() {
  local rc=0 saved_int saved_term saved_hup had_monitor=""
  saved_int=$(trap -p INT)
  saved_term=$(trap -p TERM)
  saved_hup=$(trap -p HUP)
  _csvc_child_pid=""
  _csvc_pending_signal=""
  trap '_csvc_forward INT' INT
  trap '_csvc_forward TERM' TERM
  trap '_csvc_forward HUP' HUP

  # Job control gives the child its own process group (so a terminal Ctrl-C
  # reaches it only through us, exactly once) and keeps SIGINT un-ignored.
  [[ $- == *m* ]] && had_monitor=1
  set -m
  "$@" &
  _csvc_child_pid=$!
  [[ -n $had_monitor ]] || set +m
  if [[ -n $_csvc_pending_signal ]]; then
    _csvc_forward "$_csvc_pending_signal"     # arrived before the child existed
  fi

  while :; do
    rc=0
    wait "$_csvc_child_pid" || rc=$?
    # >128 with the child still alive: wait was interrupted by a trapped signal.
    if ((rc > 128)) && kill -0 "$_csvc_child_pid" 2>/dev/null; then
      continue
    fi
    break
  done
  _csvc_child_pid=""

  if [[ -n $saved_int ]]; then eval "$saved_int"; else trap - INT; fi
  if [[ -n $saved_term ]]; then eval "$saved_term"; else trap - TERM; fi
  if [[ -n $saved_hup ]]; then eval "$saved_hup"; else trap - HUP; fi
  return "$rc"
}
