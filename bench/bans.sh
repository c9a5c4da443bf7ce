#!/usr/bin/env bash
# bench/bans.sh: cache-hit throughput and latency with no bans, then with 10,000 bans (tag
# purges that match nothing being measured), in the same run against the same tessera.
# The issue-8 target: 10,000 bans slow hits by less than 10%.  See bench/README.md.
# Everything listens on 127.0.0.1 only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# settings (BENCH_* environment), log/die, install, temp dir and trap, origin/tessera, wrk
. "$ROOT/bench/lib.sh"

mapfile -t missing < <(common_missing)
install_packages "${missing[@]}"
make_tmp
start_origin
NBANS=${BENCH_BANS:-10000}
ADMIN_PORT=$(free_port) || die "no free loopback port"

{ tessera_conf_common; cat <<EOF; } >"$TMP/tessera.conf"
route /bench/ {
    backend origin;
    cache on;
    ttl 1h;
}
route default {
    backend origin;
}
admin {
    listen 127.0.0.1:$ADMIN_PORT;
    token off;
}
log {
    access off;
    error $TMP/tessera-error.log;
    level warn;
}
EOF
start_tessera
wait_http "http://127.0.0.1:$TESSERA_PORT/__count" || die "tessera does not answer"

PAGE='/bench/obj-1k?len=1024&hdr=Cache-Control:max-age%3D3600&hdr=Surrogate-Key:bench-object'
URL="http://127.0.0.1:$TESSERA_PORT$PAGE"
curl -s -o /dev/null "$URL"
[ "$(hit_header "$URL" X-Cache)" = HIT ] || die "not a hit after warm-up"
count_before=$(origin_count)

log "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (+${WARMUP}s warm-up), $WORKERS workers, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
measure "tessera, 0 bans" "$TESSERA_PORT" "$PAGE" b0 "$tessera_pid"

# NBANS bans, 100 tags a request (one ban per tag), none matching the measured object
log "adding $NBANS bans"
i=0
while [ "$i" -lt "$NBANS" ]; do
    tags=$(seq "$i" $((i + 99)) | awk '{ printf "%s\"other-%d\"", (NR > 1 ? "," : ""), $1 }')
    curl -sf -o /dev/null -d "{\"tag\":[$tags]}" "http://127.0.0.1:$ADMIN_PORT/purge" ||
        die "the admin listener refused a purge"
    i=$((i + 100))
done
active=$(curl -s "http://127.0.0.1:$ADMIN_PORT/stats" | awk -F'[:,]' '/"bans_active"/ { gsub(/ /, "", $2); print $2 }')
[ "$active" -ge "$NBANS" ] || die "only $active bans active"
[ "$(hit_header "$URL" X-Cache)" = HIT ] || die "the object was purged by a ban that should not match"
measure "tessera, $active bans" "$TESSERA_PORT" "$PAGE" b1 "$tessera_pid"
count_after=$(origin_count)

row() { printf '%-18s %12s %12s %12s %14s\n' "$@"; }
read -r r0 p50_0 p99_0 e0 n0 _ < <(parse_wrk "$TMP/b0.wrk")
read -r r1 p50_1 p99_1 e1 n1 _ < <(parse_wrk "$TMP/b1.wrk")
echo
row metric "0 bans" "$active bans" "with/without" ""
row ------ ------ ------ ------------ ""
row "requests/s" "$r0" "$r1" "$(ratio "$r1" "$r0")" ""
row "p50 latency (ms)" "$p50_0" "$p50_1" "$(ratio "$p50_1" "$p50_0")" ""
row "p99 latency (ms)" "$p99_0" "$p99_1" "$(ratio "$p99_1" "$p99_0")" ""
row "sock err/non-2xx" "$e0/$n0" "$e1/$n1" "" ""
echo
echo "origin requests during the measured runs: $((count_after - count_before))"
status=0
[ "$count_after" = "$count_before" ] || { log "the origin was asked: not all requests were hits"; status=1; }
awk -v a="$r1" -v b="$r0" 'BEGIN { exit !(a >= 0.9 * b) }' ||
    { log "hits with $active bans are more than 10% slower"; status=1; }
exit "$status"
