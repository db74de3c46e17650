#!/usr/bin/env bash
# shellcheck disable=SC2015  # `check && pass || fail` is intended: pass never fails
# Self-test for scripts/lib/services.sh (no Rust involved):  scripts/selftest-services.sh
#
# Never touches services it did not start: it uses unused ports for the
# throwaway cases and only *probes* the default addresses.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lib=$here/lib/services.sh
failures=0
pass() { printf 'PASS: %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*"
  failures=$((failures + 1))
}

psql_bin=$(command -v psql || printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for p in "$@"; do port_open "$p" || { echo "$p"; return; }; done
  while :; do p=$((40000 + RANDOM % 5000)); port_open "$p" || { echo "$p"; return; }; done
}

# Runs ensure_services in a child bash with the given env, checks the services
# from inside, prints KEY=VALUE state lines on stdout; stderr goes to $work/err.
inner_check() {
  # shellcheck disable=SC2016
  env "$@" bash -c '
    set -euo pipefail
    source "$1"
    ensure_services
    echo "DATABASE_URL=$DATABASE_URL"
    echo "NATS_URL=$NATS_URL"
    echo "PG_TMP=$_csvc_pg_tmp"
    echo "NATS_TMP=$_csvc_nats_tmp"
    if [[ -n $_csvc_pg_tmp ]]; then echo "PG_PID=$(head -n1 "$_csvc_pg_tmp/data/postmaster.pid")"; fi
    if [[ -n $_csvc_nats_tmp ]]; then echo "NATS_PID=$(cat "$_csvc_nats_tmp/nats.pid")"; fi
    base=${DATABASE_URL%/*}
    if "$2" -X -At -d "$base/postgres" -c "select 1" </dev/null >/dev/null 2>&1; then echo "PSQL=ok"; else echo "PSQL=fail"; fi
    p=${NATS_URL##*:}
    if IFS= read -r -t 3 line < "/dev/tcp/127.0.0.1/${p%%/*}" && [[ $line == INFO* ]]; then echo "NATS=ok"; else echo "NATS=fail"; fi
  ' _ "$lib" "$psql_bin"
}

get() { sed -n "s/^$1=//p" "$work/out" | head -n 1; }

check_cleaned() {
  local what=$1 d p
  for d in "$(get PG_TMP)" "$(get NATS_TMP)"; do
    [[ -z $d ]] && continue
    if [[ -e $d ]]; then fail "$what: temp dir $d still exists"; else pass "$what: temp dir $d removed"; fi
  done
  for p in "$(get PG_PID)" "$(get NATS_PID)"; do
    [[ -z $p ]] && continue
    # The library waits for its processes; allow a short grace period anyway.
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then fail "$what: process $p still running"; else pass "$what: process $p gone"; fi
  done
}

work=$(mktemp -d)
http_pid=""
trap 'rm -rf "$work"; [[ -z $http_pid ]] || kill "$http_pid" 2>/dev/null || true' EXIT

# ---------------------------------------------------------------- 1. throwaway on the configured (free) ports
pg_port=$(free_port 55432)
nats_port=$(free_port 54222)
echo "== 1. nothing on 127.0.0.1:$pg_port / :$nats_port -> throwaway services on those ports"
inner_check DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/chronicle" NATS_URL="nats://127.0.0.1:$nats_port" >"$work/out" 2>"$work/err" || true
cat "$work/err"
[[ $(get DATABASE_URL) == "postgres://postgres@127.0.0.1:$pg_port/chronicle" ]] && pass "DATABASE_URL unchanged" || fail "DATABASE_URL=$(get DATABASE_URL)"
[[ $(get NATS_URL) == "nats://127.0.0.1:$nats_port" ]] && pass "NATS_URL unchanged" || fail "NATS_URL=$(get NATS_URL)"
grep -q "^postgres: started throwaway cluster on 127.0.0.1:$pg_port (data in /" "$work/err" && pass "postgres message" || fail "postgres message"
grep -q "^nats: started throwaway server on 127.0.0.1:$nats_port" "$work/err" && pass "nats message" || fail "nats message"
[[ $(get PSQL) == ok ]] && pass "psql select 1" || fail "psql select 1"
[[ $(get NATS) == ok ]] && pass "NATS answers" || fail "NATS answers"
check_cleaned "case 1"

# ---------------------------------------------------------------- 2. configured ports taken by a non-Postgres/non-NATS listener
if command -v python3 >/dev/null 2>&1; then
  busy=$(free_port 55433)
  python3 -m http.server "$busy" --bind 127.0.0.1 >/dev/null 2>&1 &
  http_pid=$!
  for _ in $(seq 50); do port_open "$busy" && break; sleep 0.1; done
  echo "== 2. an HTTP server on 127.0.0.1:$busy -> throwaway services on other ports, URLs rewritten"
  inner_check DATABASE_URL="postgres://postgres:pw@localhost:$busy/chronicle?sslmode=disable" NATS_URL="nats://127.0.0.1:$busy" >"$work/out" 2>"$work/err" || true
  cat "$work/err"
  db=$(get DATABASE_URL)
  nu=$(get NATS_URL)
  [[ $db =~ ^postgres://postgres:pw@127\.0\.0\.1:[0-9]+/chronicle\?sslmode=disable$ && $db != *":$busy/"* ]] && pass "DATABASE_URL rewritten: $db" || fail "DATABASE_URL=$db"
  [[ $nu =~ ^nats://127\.0\.0\.1:[0-9]+$ && $nu != *":$busy" ]] && pass "NATS_URL rewritten: $nu" || fail "NATS_URL=$nu"
  [[ $(get PSQL) == ok ]] && pass "psql select 1" || fail "psql select 1"
  [[ $(get NATS) == ok ]] && pass "NATS answers" || fail "NATS answers"
  check_cleaned "case 2"
  kill "$http_pid" 2>/dev/null || true
  wait "$http_pid" 2>/dev/null || true
  http_pid=""
else
  echo "== 2. skipped (no python3)"
fi

# ---------------------------------------------------------------- 3. defaults: use what answers there
echo "== 3. defaults (DATABASE_URL/NATS_URL unset)"
inner_check -u DATABASE_URL -u NATS_URL >"$work/out" 2>"$work/err" || true
cat "$work/err"
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  grep -qx "postgres: using 127.0.0.1:5432" "$work/err" && pass "uses shared postgres" || fail "did not use shared postgres"
  [[ -z $(get PG_TMP) ]] && pass "no throwaway postgres" || fail "started a throwaway postgres"
fi
if port_open 4222; then
  grep -qx "nats: using 127.0.0.1:4222" "$work/err" && pass "uses shared nats" || fail "did not use shared nats"
  [[ -z $(get NATS_TMP) ]] && pass "no throwaway nats" || fail "started a throwaway nats"
fi
[[ $(get DATABASE_URL) == postgres://postgres@127.0.0.1:5432/chronicle && $(get NATS_URL) == nats://127.0.0.1:4222 ]] &&
  pass "default URLs exported" || fail "exported URLs: $(get DATABASE_URL) $(get NATS_URL)"
check_cleaned "case 3"

# ---------------------------------------------------------------- 4. .env loading
echo "== 4. chronicle_load_dotenv"
cat >"$work/env" <<'ENV'
# comment
export A_PLAIN=plain value  # trailing comment
A_DQ="double # not a comment"
A_SQ='single'
A_SET=from-file
A_HASH=a#b
ENV
out=$(A_SET=from-env bash -c 'set -euo pipefail; source "$1"; chronicle_load_dotenv "$2"; printf "%s|%s|%s|%s|%s" "$A_PLAIN" "$A_DQ" "$A_SQ" "$A_SET" "$A_HASH"' _ "$lib" "$work/env")
[[ $out == "plain value|double # not a comment|single|from-env|a#b" ]] && pass ".env parsed, environment wins" || fail ".env: $out"

# ---------------------------------------------------------------- 5. signal forwarding: graceful shutdown before cleanup
echo "== 5. SIGINT/SIGTERM forwarded to the child, services stopped only after it exits"
pg_port=$(free_port 55434)
nats_port=$(free_port 54224)
for sig in INT TERM; do
  # The fake server: on the signal, checks Postgres still answers, then exits 0.
  cat >"$work/fake-server" <<EOF
#!/usr/bin/env bash
trap 'sleep 0.5; if "$psql_bin" -X -At -d "\${DATABASE_URL%/*}/postgres" -c "select 1" >/dev/null 2>&1; then echo graceful-db-ok; else echo graceful-db-gone; fi; exit 0' $sig
echo ready
while :; do sleep 0.1; done
EOF
  chmod +x "$work/fake-server"
  # Job control: a background job of a non-interactive shell would start with
  # SIGINT ignored (and untrappable); as in a terminal, give it its own group.
  set -m
  # shellcheck disable=SC2016
  DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/chronicle" NATS_URL="nats://127.0.0.1:$nats_port" \
    bash -c 'set -euo pipefail; source "$1"; ensure_services; echo "PG_TMP=$_csvc_pg_tmp"; echo "NATS_TMP=$_csvc_nats_tmp"
             echo "PG_PID=$(head -n1 "$_csvc_pg_tmp/data/postmaster.pid")"; echo "NATS_PID=$(cat "$_csvc_nats_tmp/nats.pid")"
             rc=0; chronicle_run_forwarding_signals "$2" || rc=$?; echo "child rc=$rc"; exit "$rc"' _ "$lib" "$work/fake-server" \
    >"$work/out" 2>"$work/err" &
  harness=$!
  set +m
  for _ in $(seq 300); do grep -q '^ready' "$work/out" 2>/dev/null && break; sleep 0.1; done
  kill -s "$sig" "$harness"
  rc=0
  wait "$harness" || rc=$?
  cat "$work/err"
  grep -q '^graceful-db-ok' "$work/out" && pass "$sig: child shut down gracefully while postgres was still up" || fail "$sig: $(cat "$work/out")"
  grep -q '^child rc=0' "$work/out" && [[ $rc == 0 ]] && pass "$sig: script exits with the child's status" || fail "$sig: rc=$rc"
  check_cleaned "case 5 ($sig)"
done

echo
if ((failures)); then
  echo "$failures check(s) FAILED"
  exit 1
fi
echo "all checks passed"
