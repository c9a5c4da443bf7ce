#!/usr/bin/env bash
# bench/run.sh: cache-hit throughput and latency, tessera vs nginx (proxy_cache),
# both in front of the same tessera-origin, measured with wrk in the same run.
# See bench/README.md.  Everything listens on 127.0.0.1 only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# settings (BENCH_* environment), log/die, install, temp dir and trap, origin/tessera, wrk
. "$ROOT/bench/lib.sh"

# ---- tools: wrk, nginx (with proxy_cache), curl, ss -----------------------------------------
# On Debian 12 the `nginx` package holds the binary, http_proxy (proxy_cache) included;
# nginx-light is only `nginx` plus the echo module.
mapfile -t missing < <(common_missing)
[ -n "$(find_nginx)" ] || missing+=(nginx)
install_packages "${missing[@]}"
NGINX=$(find_nginx)

# ---- temp dir, processes, cleanup -----------------------------------------------------------
make_tmp

# ---- 1. the origin --------------------------------------------------------------------------
start_origin

# ---- 2a. tessera ----------------------------------------------------------------------------
{ tessera_conf_common; cat <<EOF; } >"$TMP/tessera.conf"
route /bench/ {
    backend origin;
    cache on;
    ttl 1h;
}
route default {
    backend origin;
}
log {
    access off;
    error $TMP/tessera-error.log;
    level warn;
}
cache {
    memory 256m;
}
EOF
start_tessera

# ---- 2b. nginx ------------------------------------------------------------------------------
start_nginx
wait_http "http://127.0.0.1:$TESSERA_PORT/__count" || die "tessera does not answer"

# ---- 3. warm both caches and check HITs -------------------------------------------------------
CC='hdr=Cache-Control:max-age%3D3600'
OBJECTS=("1 KiB|/bench/obj-1k?len=1024&$CC" "256 KiB|/bench/obj-256k?len=262144&$CC")

for obj in "${OBJECTS[@]}"; do
    path=${obj#*|}
    curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$TESSERA_PORT$path"
    curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$NGINX_PORT$path"
    t=$(hit_header "http://127.0.0.1:$TESSERA_PORT$path" X-Cache)
    n=$(hit_header "http://127.0.0.1:$NGINX_PORT$path" X-Cache-Status)
    [ "$t" = HIT ] || die "tessera: X-Cache '$t' for $path after warm-up (want HIT)"
    [ "$n" = HIT ] || die "nginx: X-Cache-Status '$n' for $path after warm-up (want HIT)"
done
count_before=$(origin_count)

# ---- 4. measure -----------------------------------------------------------------------------
mapfile -t nginx_workers < <(nginx_worker_pids)
[ ${#nginx_workers[@]} -gt 0 ] || die "no nginx worker processes found"

log "origin 127.0.0.1:$ORIGIN_PORT, tessera 127.0.0.1:$TESSERA_PORT, nginx 127.0.0.1:$NGINX_PORT ($($NGINX -v 2>&1 | sed 's/.*: //'))"
log "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (+${WARMUP}s warm-up), $WORKERS workers each, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
for obj in "${OBJECTS[@]}"; do
    path=${obj#*|}
    measure tessera "$TESSERA_PORT" "$path" "t$i" "$tessera_pid"
    measure nginx "$NGINX_PORT" "$path" "n$i" "${nginx_workers[@]}"
    i=$((i + 1))
done
count_after=$(origin_count)

# ---- table ----------------------------------------------------------------------------------
row() { printf '%-8s %-18s %12s %12s %14s\n' "$@"; }
status=0
echo
row object metric tessera nginx tessera/nginx
row ------ ------ ------- ----- -------------
i=0
for obj in "${OBJECTS[@]}"; do
    label=${obj%%|*}
    read -r t_rps t_p50 t_p99 t_err t_non t_req < <(parse_wrk "$TMP/t$i.wrk")
    read -r n_rps n_p50 n_p99 n_err n_non n_req < <(parse_wrk "$TMP/n$i.wrk")
    t_rss=$(awk '{ printf "%.1f", $1 / 1024 }' "$TMP/t$i.rss")
    n_rss=$(awk '{ printf "%.1f", $1 / 1024 }' "$TMP/n$i.rss")
    row "$label" "requests/s" "$t_rps" "$n_rps" "$(ratio "$t_rps" "$n_rps")"
    row "$label" "p50 latency (ms)" "$t_p50" "$n_p50" "$(ratio "$t_p50" "$n_p50")"
    row "$label" "p99 latency (ms)" "$t_p99" "$n_p99" "$(ratio "$t_p99" "$n_p99")"
    row "$label" "peak RSS (MiB)" "$t_rss" "$n_rss" "$(ratio "$t_rss" "$n_rss")"
    row "$label" "sock err/non-2xx" "$t_err/$t_non" "$n_err/$n_non" ""
    if [ "$t_err" != 0 ] || [ "$t_non" != 0 ]; then
        log "tessera: $t_err socket errors, $t_non non-2xx/3xx responses for $label"; status=1
    fi
    if [ "$n_err" != 0 ] || [ "$n_non" != 0 ]; then
        log "nginx: $n_err socket errors, $n_non non-2xx/3xx responses for $label"
    fi
    i=$((i + 1))
done
echo
echo "origin requests during the measured runs: $((count_after - count_before)) (before $count_before, after $count_after)"
echo "nginx RSS = sum of its ${#nginx_workers[@]} worker processes; ratios: req/s higher is better for tessera, latency and RSS lower"
if [ "$count_after" != "$count_before" ]; then
    log "the origin was asked during the measured runs: not all requests were cache hits"; status=1
fi
for f in "$TMP/tessera-error.log" "$TMP/nginx-error.log"; do
    if [ -s "$f" ]; then log "$(basename "$f"):"; sed 's/^/  /' "$f" | tail -n 5 >&2; fi
done
exit "$status"
