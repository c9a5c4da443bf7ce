#!/usr/bin/env bash
# bench/bans.sh: cache-hit throughput and latency of two identical tessera processes, one
# with no bans and one with 10,000 bans (tag purges that match nothing measured), measured
# in turns (A B A B) in the same run, so that drift of the machine hits both alike.
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
ROUNDS=${BENCH_ROUNDS:-2}

# start_instance NAME: a tessera with an admin listener; sets PORT_<NAME>, ADMIN_<NAME>, PID_<NAME>
start_instance() {
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
    error $TMP/tessera-$1-error.log;
    level warn;
}
EOF
    start_tessera
    wait_http "http://127.0.0.1:$TESSERA_PORT/__count" || die "tessera $1 does not answer"
    printf -v "PORT_$1" '%s' "$TESSERA_PORT"
    printf -v "ADMIN_$1" '%s' "$ADMIN_PORT"
    printf -v "PID_$1" '%s' "$tessera_pid"
}
start_instance A
start_instance B

PAGE='/bench/obj-1k?len=1024&hdr=Cache-Control:max-age%3D3600&hdr=Surrogate-Key:bench-object'
for port in "$PORT_A" "$PORT_B"; do
    curl -s -o /dev/null "http://127.0.0.1:$port$PAGE"
    [ "$(hit_header "http://127.0.0.1:$port$PAGE" X-Cache)" = HIT ] || die "not a hit after warm-up"
done

# NBANS bans on B, 100 tags a request (one ban per tag), none matching the measured object
log "adding $NBANS bans to B"
i=0
while [ "$i" -lt "$NBANS" ]; do
    tags=$(seq "$i" $((i + 99)) | awk '{ printf "%s\"other-%d\"", (NR > 1 ? "," : ""), $1 }')
    curl -sf -o /dev/null -d "{\"tag\":[$tags]}" "http://127.0.0.1:$ADMIN_B/purge" ||
        die "the admin listener refused a purge"
    i=$((i + 100))
done
active=$(curl -s "http://127.0.0.1:$ADMIN_B/stats" | awk -F'[:,]' '/"bans_active"/ { gsub(/ /, "", $2); print $2 }')
[ "$active" -ge "$NBANS" ] || die "only $active bans active"
[ "$(hit_header "http://127.0.0.1:$PORT_B$PAGE" X-Cache)" = HIT ] ||
    die "the object was purged by a ban that should not match"
count_before=$(origin_count)

log "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (+${WARMUP}s warm-up), $ROUNDS rounds A B, $WORKERS workers each, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    measure "A (0 bans), round $r" "$PORT_A" "$PAGE" "a$r" "$PID_A"
    measure "B ($active bans), round $r" "$PORT_B" "$PAGE" "b$r" "$PID_B"
done
count_after=$(origin_count)

# the median over rounds of one figure (column N of parse_wrk) for instance X
median() {
    local x=$1 col=$2 r
    for r in $(seq "$ROUNDS"); do parse_wrk "$TMP/$x$r.wrk" | awk -v c="$col" '{ print $c }'; done |
        sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
row() { printf '%-18s %12s %12s %14s\n' "$@"; }
echo
row "median of $ROUNDS" "0 bans" "$active bans" "with/without"
row ------ ------ ------ ------------
for m in "requests/s|1" "p50 latency (ms)|2" "p99 latency (ms)|3"; do
    a=$(median a "${m#*|}")
    b=$(median b "${m#*|}")
    row "${m%|*}" "$a" "$b" "$(ratio "$b" "$a")"
done
echo
echo "origin requests during the measured runs: $((count_after - count_before))"
status=0
[ "$count_after" = "$count_before" ] || { log "the origin was asked: not all requests were hits"; status=1; }
awk -v a="$(median b 1)" -v b="$(median a 1)" 'BEGIN { exit !(a >= 0.9 * b) }' ||
    { log "hits with $active bans are more than 10% slower"; status=1; }
exit "$status"
