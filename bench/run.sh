#!/usr/bin/env bash
# bench/run.sh: cache-hit throughput and latency, tessera vs nginx (proxy_cache),
# both in front of the same tessera-origin, measured with wrk in the same run.
# See bench/README.md.  Everything listens on 127.0.0.1 only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

# ---- settings (environment) -------------------------------------------------------------
if [ "${BENCH_QUICK:-0}" = 1 ]; then default_duration=3; else default_duration=10; fi
DURATION=${BENCH_DURATION:-$default_duration}   # seconds per measured wrk run
WARMUP=${BENCH_WARMUP:-1}                       # seconds of unmeasured wrk before each run
THREADS=${BENCH_THREADS:-2}                     # wrk -t
CONNS=${BENCH_CONNS:-64}                        # wrk -c
WORKERS=${BENCH_WORKERS:-2}                     # tessera workers and nginx worker_processes
KEEP=${BENCH_KEEP:-0}                           # 1: keep the temp dir (configs, logs, wrk output)

TESSERA=$ROOT/build/tessera
ORIGIN=$ROOT/build/tessera-origin
for bin in "$TESSERA" "$ORIGIN"; do
    [ -x "$bin" ] || { echo "bench: $bin not built (run: make all)" >&2; exit 1; }
done

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---- tools: wrk, nginx (with proxy_cache), curl, ss -----------------------------------------
# On Debian 12 the `nginx` package holds the binary, http_proxy (proxy_cache) included;
# nginx-light is only `nginx` plus the echo module.
find_nginx() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true; }
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ -n "$(find_nginx)" ] || missing+=(nginx)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v ps >/dev/null 2>&1 || missing+=(procps)
if [ ${#missing[@]} -gt 0 ]; then
    install_cmd="apt-get install -y --no-install-recommends ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        log "missing: ${missing[*]}; as root, run:"
        echo "  apt-get update && DEBIAN_FRONTEND=noninteractive $install_cmd"
        exit 1
    fi
    # Keep the package's own nginx service from starting (it would listen on *:80).
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    echo "+ apt-get update && DEBIAN_FRONTEND=noninteractive $install_cmd"
    rc=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive $install_cmd; } || rc=$?
    [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || die "apt-get failed ($rc)"
fi
NGINX=$(find_nginx)

# ---- temp dir, processes, cleanup -----------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench.XXXXXX")
pids=()
cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 50); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nothing listens on (for nginx, which cannot listen on port 0).
free_port() {
    local p i
    for i in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        [ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return 0; }
    done
    return 1
}

# wait_http URL: until it answers anything (max 10 s)
wait_http() {
    local i
    for i in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    return 1
}

# ---- 1. the origin --------------------------------------------------------------------------
"$ORIGIN" -l 127.0.0.1:0 -q >"$TMP/origin.out" 2>"$TMP/origin.err" &
origin_pid=$!
pids+=("$origin_pid")
ORIGIN_PORT=
for i in $(seq 100); do
    ORIGIN_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/origin.out")
    [ -n "$ORIGIN_PORT" ] && break
    kill -0 "$origin_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$ORIGIN_PORT" ] || die "origin did not start: $(cat "$TMP/origin.err")"

# ---- 2a. tessera ----------------------------------------------------------------------------
cat >"$TMP/tessera.conf" <<EOF
listen 127.0.0.1:0;
workers $WORKERS;
drain_timeout 1s;
backend origin {
    server 127.0.0.1:$ORIGIN_PORT;
    keepalive 64;
}
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
"$TESSERA" -c "$TMP/tessera.conf" -t >/dev/null 2>&1 || die "tessera rejects $TMP/tessera.conf"
"$TESSERA" -c "$TMP/tessera.conf" >"$TMP/tessera.out" 2>&1 &
tessera_pid=$!
pids+=("$tessera_pid")
TESSERA_PORT=
for i in $(seq 100); do   # port 0: ask the kernel which port the process got
    TESSERA_PORT=$(ss -Hltnp | awk -v p="pid=$tessera_pid," \
        'index($0, p) && $4 ~ /^127\.0\.0\.1:/ { sub(/.*:/, "", $4); print $4; exit }')
    [ -n "$TESSERA_PORT" ] && break
    kill -0 "$tessera_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$TESSERA_PORT" ] || die "tessera did not start: $(cat "$TMP/tessera.out" "$TMP/tessera-error.log" 2>/dev/null)"

# ---- 2b. nginx ------------------------------------------------------------------------------
mkdir -p "$TMP/nginx/cache"
user_line=
[ "$(id -u)" -eq 0 ] && user_line="user root;"
write_nginx_conf() {
    cat >"$TMP/nginx.conf" <<EOF
$user_line
worker_processes $WORKERS;
daemon off;
master_process on;
error_log $TMP/nginx-error.log warn;
pid $TMP/nginx.pid;
events {
    worker_connections 1024;
}
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path       $TMP/nginx/proxy;
    fastcgi_temp_path     $TMP/nginx/fastcgi;
    uwsgi_temp_path       $TMP/nginx/uwsgi;
    scgi_temp_path        $TMP/nginx/scgi;
    proxy_cache_path $TMP/nginx/cache levels=1:2 keys_zone=bench:32m max_size=1g inactive=1h use_temp_path=off;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$1;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOF
}
NGINX_PORT=
for attempt in 1 2 3; do   # a free port can be taken before nginx binds it: retry
    port=$(free_port) || die "no free loopback port"
    write_nginx_conf "$port"
    "$NGINX" -t -q -p "$TMP/nginx/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" \
        || die "nginx rejects $TMP/nginx.conf: $(cat "$TMP/nginx-error.log")"
    "$NGINX" -p "$TMP/nginx/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" >"$TMP/nginx.out" 2>&1 &
    nginx_pid=$!
    pids+=("$nginx_pid")
    if wait_http "http://127.0.0.1:$port/__count" && kill -0 "$nginx_pid" 2>/dev/null; then
        NGINX_PORT=$port
        break
    fi
    kill -TERM "$nginx_pid" 2>/dev/null || true
done
[ -n "$NGINX_PORT" ] || die "nginx did not start: $(cat "$TMP/nginx-error.log")"
wait_http "http://127.0.0.1:$TESSERA_PORT/__count" || die "tessera does not answer"

# ---- 3. warm both caches and check HITs -------------------------------------------------------
CC='hdr=Cache-Control:max-age%3D3600'
OBJECTS=("1 KiB|/bench/obj-1k?len=1024&$CC" "256 KiB|/bench/obj-256k?len=262144&$CC")

# hit_header URL HEADER: prints the header's value from a GET (body discarded)
hit_header() {
    curl -s -o /dev/null -D - --max-time 5 "$1" | tr -d '\r' |
        awk -v h="$2" 'tolower($1) == tolower(h) ":" { print $2 }'
}
for obj in "${OBJECTS[@]}"; do
    path=${obj#*|}
    curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$TESSERA_PORT$path"
    curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$NGINX_PORT$path"
    t=$(hit_header "http://127.0.0.1:$TESSERA_PORT$path" X-Cache)
    n=$(hit_header "http://127.0.0.1:$NGINX_PORT$path" X-Cache-Status)
    [ "$t" = HIT ] || die "tessera: X-Cache '$t' for $path after warm-up (want HIT)"
    [ "$n" = HIT ] || die "nginx: X-Cache-Status '$n' for $path after warm-up (want HIT)"
done
origin_count() { curl -s --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/__count"; }
count_before=$(origin_count)

# ---- 4. measure -----------------------------------------------------------------------------
# rss_kb PID...: sum of VmRSS in KiB
rss_kb() {
    local pid sum=0 v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
# sample_peak FILE PID...: writes the peak of the sum into FILE every 0.2 s until killed
sample_peak() {
    local out=$1 peak=0 cur
    shift
    while :; do
        cur=$(rss_kb "$@")
        if [ "$cur" -gt "$peak" ]; then peak=$cur; echo "$peak" >"$out"; fi
        sleep 0.2
    done
}
nginx_workers=()
for p in $(ps -o pid= --ppid "$nginx_pid"); do
    case "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" in
        "nginx: worker process"*) nginx_workers+=("$p") ;;
    esac
done
[ ${#nginx_workers[@]} -gt 0 ] || die "no nginx worker processes found"

# parse_wrk FILE: "req/s p50_ms p99_ms socket_errors non2xx requests"
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/)  return v * 60000
            if (v ~ /s$/)  return v * 1000
            return v + 0
        }
        /^ +50% / { p50 = ms($2) }
        /^ +99% / { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /requests in/ { reqs = $1 }
        /Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { non2xx = $5 }
        END { printf "%s %.3f %.3f %d %d %s\n", rps, p50, p99, err, non2xx, reqs }
    ' "$1"
}

# measure NAME PORT PATH TAG PID...: runs wrk, leaves results in $TMP/TAG.{wrk,rss}
measure() {
    local name=$1 port=$2 path=$3 tag=$4 sampler
    shift 4
    local url="http://127.0.0.1:$port$path"
    if [ "$WARMUP" != 0 ]; then
        wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
    fi
    echo 0 >"$TMP/$tag.rss"
    sample_peak "$TMP/$tag.rss" "$@" &
    sampler=$!
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url" >"$TMP/$tag.wrk"
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    log "$name $path: $(grep -E 'Requests/sec' "$TMP/$tag.wrk" | tr -s ' ')"
}

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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
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
