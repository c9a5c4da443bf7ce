#!/usr/bin/env bash
# bench/compress.sh: cache hits of a 256 KiB HTML page sent identity, br, zstd and gzip by
# tessera (each compressed variant made once and stored), against the identity page in the
# same run, and against nginx (proxy_cache + gzip on, which compresses every hit) as a peer.
# See bench/README.md.  Everything listens on 127.0.0.1 only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# settings (BENCH_* environment), log/die, install, temp dir and trap, origin/tessera, nginx, wrk
. "$ROOT/bench/lib.sh"

mapfile -t missing < <(common_missing)
[ -n "$(find_nginx)" ] || missing+=(nginx)
install_packages "${missing[@]}"
NGINX=$(find_nginx)

make_tmp
start_origin

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
    level info;
}
cache {
    memory 256m;
}
compress {
    types text/html;
}
EOF
start_tessera
start_nginx "gzip on; gzip_comp_level 6; gzip_proxied any; gzip_vary on;"
wait_http "http://127.0.0.1:$TESSERA_PORT/__count" || die "tessera does not answer"

# A page of HTML-like text (the origin's words=1 body: markup and words drawn from a fixed
# vocabulary, deterministic, compressing about like real pages).
PAGE='/bench/page.html?len=262144&ctype=text/html&words=1&hdr=Cache-Control:max-age%3D3600'
CASES=("tessera|$TESSERA_PORT|identity" "tessera|$TESSERA_PORT|br" "tessera|$TESSERA_PORT|zstd"
       "tessera|$TESSERA_PORT|gzip" "nginx|$NGINX_PORT|identity" "nginx|$NGINX_PORT|gzip")

# ---- warm up: the object, then each variant; check hits and codings ------------------------
for c in "${CASES[@]}"; do
    IFS='|' read -r name port coding <<<"$c"
    url="http://127.0.0.1:$port$PAGE"
    curl -s -o /dev/null --max-time 10 -H "Accept-Encoding: $coding" "$url"
    curl -s -o /dev/null --max-time 10 -H "Accept-Encoding: $coding" "$url"
done
size_of() { curl -s --max-time 10 -H "Accept-Encoding: $2" -o "$TMP/body" -D "$TMP/head" "$1" -w '%{size_download}'; }
for c in "${CASES[@]}"; do
    IFS='|' read -r name port coding <<<"$c"
    size=$(size_of "http://127.0.0.1:$port$PAGE" "$coding")
    enc=$(tr -d '\r' <"$TMP/head" | awk 'tolower($1) == "content-encoding:" { print $2 }')
    hit=$(tr -d '\r' <"$TMP/head" | awk 'tolower($1) == "x-cache:" || tolower($1) == "x-cache-status:" { print $2 }')
    [ "$hit" = HIT ] || die "$name $coding: not a hit after warm-up ($hit)"
    [ "${enc:-identity}" = "$coding" ] || die "$name: asked for $coding, got ${enc:-identity}"
    echo "$size" >"$TMP/size.$name.$coding"
done
made=$(grep -c 'made the .* variant' "$TMP/tessera-error.log" || true)
count_before=$(origin_count)

# ---- measure --------------------------------------------------------------------------------
mapfile -t nginx_workers < <(nginx_worker_pids)
log "origin 127.0.0.1:$ORIGIN_PORT, tessera 127.0.0.1:$TESSERA_PORT, nginx 127.0.0.1:$NGINX_PORT ($($NGINX -v 2>&1 | sed 's/.*: //'))"
log "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (+${WARMUP}s warm-up), $WORKERS workers each, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
for c in "${CASES[@]}"; do
    IFS='|' read -r name port coding <<<"$c"
    WRK_ARGS=(-H "Accept-Encoding: $coding")
    if [ "$name" = tessera ]; then pids_rss=("$tessera_pid"); else pids_rss=("${nginx_workers[@]}"); fi
    measure "$name $coding" "$port" "$PAGE" "c$i" "${pids_rss[@]}"
    i=$((i + 1))
done
count_after=$(origin_count)

# ---- table ----------------------------------------------------------------------------------
row() { printf '%-8s %-9s %11s %9s %9s %10s %9s %13s\n' "$@"; }
echo
row server coding "requests/s" "p50 ms" "p99 ms" "body bytes" "RSS MiB" "req/s ratio"
row ------ ------ ---------- ------ ------ ---------- ------- -----------
read -r base_rps _ < <(parse_wrk "$TMP/c0.wrk")
status=0
i=0
for c in "${CASES[@]}"; do
    IFS='|' read -r name port coding <<<"$c"
    read -r rps p50 p99 err non _ < <(parse_wrk "$TMP/c$i.wrk")
    rss=$(awk '{ printf "%.1f", $1 / 1024 }' "$TMP/c$i.rss")
    row "$name" "$coding" "$rps" "$p50" "$p99" "$(cat "$TMP/size.$name.$coding")" "$rss" "$(ratio "$rps" "$base_rps")"
    if [ "$err" != 0 ] || [ "$non" != 0 ]; then
        log "$name $coding: $err socket errors, $non non-2xx/3xx responses"
        [ "$name" = tessera ] && status=1
    fi
    i=$((i + 1))
done
read -r tg _ < <(parse_wrk "$TMP/c3.wrk")
read -r ng _ < <(parse_wrk "$TMP/c5.wrk")
echo
echo "req/s ratio: against tessera identity.  gzip hits, tessera/nginx: $(ratio "$tg" "$ng")"
echo "variants made by tessera: $made (expected 3: br, zstd, gzip, once each)"
echo "origin requests during the measured runs: $((count_after - count_before))"
[ "$made" = 3 ] || { log "tessera made $made variants, not 3"; status=1; }
[ "$count_after" = "$count_before" ] || { log "the origin was asked during the measured runs"; status=1; }
exit "$status"
