#!/usr/bin/env bash
# Measures the cost of a cursor page deep in a 1,000,000-post walk against the first page,
# with the exact SQL the list endpoint sends (keyset on the default sort -created_at, id).
# Usage: bench/deep-page.sh [admin database URL]   (defaults to the local Postgres)
set -euo pipefail
admin="${1:-postgres://postgres@127.0.0.1:5432/postgres}"
db="chronicle_bench_deep_page"
url="${admin%/*}/$db"
rows=1000000
limit=20
deep_page=50000

psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
trap 'psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
for migration in "$(dirname "$0")"/../migrations/*.sql; do
  psql -q -v ON_ERROR_STOP=1 "$url" -f "$migration"
done
psql -q -v ON_ERROR_STOP=1 "$url" <<SQL
INSERT INTO posts_view (id, author_id, title, body, tags, status, created_at, updated_at, published_at, version)
SELECT gen_random_uuid(), gen_random_uuid(), 'post ' || g, 'body of post ' || g, '{bench}', 'published',
       timestamptz '2026-01-01' + g * interval '1 second', now(), now(), 2
  FROM generate_series(1, $rows) g;
VACUUM ANALYZE posts_view;
SQL

# The cursor of the last row of page $deep_page - 1 (the endpoint signs exactly these values).
IFS='|' read -r cursor_time cursor_id < <(psql -At -F '|' "$url" -c \
  "SELECT created_at::text, id FROM posts_view WHERE status = 'published'
    ORDER BY created_at DESC, id DESC OFFSET $(( (deep_page - 1) * limit - 1 )) LIMIT 1")

select="SELECT id, author_id, title, body, tags, status, created_at, updated_at, published_at, version,
  (created_at)::text AS __sort_0, id::text AS __sort_id FROM posts_view WHERE true AND status = 'published'"
order="ORDER BY created_at DESC, id DESC LIMIT $((limit + 1))"
tmp=$(mktemp -d)
echo "$select $order;" > "$tmp/first.sql"
echo "$select AND (created_at, id) < ('$cursor_time'::timestamptz, '$cursor_id'::uuid) $order;" > "$tmp/deep.sql"

run() { pgbench -n -c 1 -T 10 -f "$tmp/$1.sql" "$url" 2>/dev/null | awk '/latency average/ {print $4}'; }
run first >/dev/null   # warm-up
first=$(run first); deep=$(run deep)
echo "rows=$rows limit=$limit deep_page=$deep_page"
echo "first page: ${first} ms   page $deep_page: ${deep} ms   ratio deep/first: $(awk "BEGIN {printf \"%.2f\", $deep / $first}")"
psql -At "$url" -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) $(cat "$tmp/deep.sql")" | head -6
rm -rf "$tmp"
