# shellcheck shell=bash
# bench/lib.sh: helpers shared by bench/run.sh and bench/memcached.sh (sourced, not run).
# The caller sets `set -euo pipefail`, cds to the repository root and sets ROOT first.
# Everything listens on 127.0.0.1 only.

# ---- settings (environment) -------------------------------------------------------------
if [ "${BENCH_QUICK:-0}" = 1 ]; then default_duration=3; else default_duration=10; fi
DURATION=${BENCH_DURATION:-$default_duration}   # seconds per measured wrk run
WARMUP=${BENCH_WARMUP:-1}                       # seconds of unmeasured wrk before each run
THREADS=${BENCH_THREADS:-2}                     # wrk -t
CONNS=${BENCH_CONNS:-64}                        # wrk -c
WORKERS=${BENCH_WORKERS:-2}                     # tessera workers (and nginx worker_processes)
KEEP=${BENCH_KEEP:-0}                           # 1: keep the temp dir (configs, logs, wrk output)

TESSERA=$ROOT/build/tessera
ORIGIN=$ROOT/build/tessera-origin
for bin in "$TESSERA" "$ORIGIN"; do
    [ -x "$bin" ] || { echo "bench: $bin not built (run: make all)" >&2; exit 1; }
done

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---- tools ----------------------------------------------------------------------------------
# install_packages PKG...: apt-get install as root; as another user print the command, exit 1.
# While installing, a policy-rc.d that denies service starts is put in place if the system has
# none, so that packaged services (nginx on *:80, memcached on :11211) do not start.
install_packages() {
    [ $# -gt 0 ] || return 0
    local install_cmd="apt-get install -y --no-install-recommends $*"
    if [ "$(id -u)" -ne 0 ]; then
        log "missing: $*; as root, run:"
        echo "  apt-get update && DEBIAN_FRONTEND=noninteractive $install_cmd"
        exit 1
    fi
    local made_policy=0 rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    echo "+ apt-get update && DEBIAN_FRONTEND=noninteractive $install_cmd"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive $install_cmd; } || rc=$?
    [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || die "apt-get failed ($rc)"
}
# common_missing: prints the packages of the tools every scenario needs that are absent
common_missing() {
    command -v wrk >/dev/null 2>&1 || echo wrk
    command -v curl >/dev/null 2>&1 || echo curl
    command -v ss >/dev/null 2>&1 || echo iproute2
    command -v ps >/dev/null 2>&1 || echo procps
    return 0
}

# ---- temp dir, processes, cleanup -----------------------------------------------------------
# make_tmp: sets TMP and installs the trap that stops every pid in pids[] and removes TMP.
# Call it in the main shell, not in $(...).
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
make_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# A loopback port nothing listens on (for servers that cannot listen on port 0).
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

# listen_port PID [NOT]: the 127.0.0.1 TCP port PID listens on, other than NOT (empty if none)
listen_port() {
    ss -Hltnp | awk -v p="pid=$1," -v not="${2:-}" \
        'index($0, p) && $4 ~ /^127\.0\.0\.1:/ { sub(/.*:/, "", $4); if ($4 != not) { print $4; exit } }'
}

# ---- the origin and tessera -----------------------------------------------------------------
# start_origin: build/tessera-origin on 127.0.0.1, port 0; sets origin_pid and ORIGIN_PORT
start_origin() {
    local i
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
}
origin_count() { curl -s --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/__count"; }

# tessera_conf_common: the lines every bench config of tessera starts with (listen on a port
# the kernel picks, workers, the origin as backend `origin`)
tessera_conf_common() {
    cat <<EOF
listen 127.0.0.1:0;
workers $WORKERS;
drain_timeout 1s;
backend origin {
    server 127.0.0.1:$ORIGIN_PORT;
    keepalive 64;
}
EOF
}

# start_tessera: runs tessera on $TMP/tessera.conf (which listens on 127.0.0.1:0);
# sets tessera_pid and TESSERA_PORT
start_tessera() {
    local i
    "$TESSERA" -c "$TMP/tessera.conf" -t >/dev/null 2>&1 || die "tessera rejects $TMP/tessera.conf"
    "$TESSERA" -c "$TMP/tessera.conf" >"$TMP/tessera.out" 2>&1 &
    tessera_pid=$!
    pids+=("$tessera_pid")
    TESSERA_PORT=
    for i in $(seq 100); do   # port 0: ask the kernel which port the process got
        TESSERA_PORT=$(listen_port "$tessera_pid" "${ADMIN_PORT:-}")
        [ -n "$TESSERA_PORT" ] && break
        kill -0 "$tessera_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$TESSERA_PORT" ] || die "tessera did not start: $(cat "$TMP/tessera.out" "$TMP/tessera-error.log" 2>/dev/null)"
}

# hit_header URL HEADER: prints the header's value from a GET (body discarded)
hit_header() {
    curl -s -o /dev/null -D - --max-time 5 "$1" | tr -d '\r' |
        awk -v h="$2" 'tolower($1) == tolower(h) ":" { sub(/^[^:]*:[ \t]*/, ""); print }'
}

# ---- measuring ------------------------------------------------------------------------------
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

# WRK_ARGS: more wrk arguments for both runs (e.g. -H 'Accept-Encoding: br'); empty by default
WRK_ARGS=()

# wrk_warmup URL: the unmeasured wrk run (none with BENCH_WARMUP=0)
wrk_warmup() {
    if [ "$WARMUP" != 0 ]; then
        wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} "$1" >/dev/null
    fi
}
# wrk_measured NAME URL TAG [PID...]: the measured wrk run into $TMP/TAG.wrk; with PIDs,
# their summed peak RSS into $TMP/TAG.rss
wrk_measured() {
    local name=$1 url=$2 tag=$3 sampler=
    shift 3
    echo 0 >"$TMP/$tag.rss"
    if [ $# -gt 0 ]; then
        sample_peak "$TMP/$tag.rss" "$@" &
        sampler=$!
    fi
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} "$url" >"$TMP/$tag.wrk"
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
    fi
    log "$name /${url#http://127.0.0.1:*/}: $(grep -E 'Requests/sec' "$TMP/$tag.wrk" | tr -s ' ')"
}
# measure NAME PORT PATH TAG PID...: warm-up then measured run (see wrk_measured)
measure() {
    local name=$1 url="http://127.0.0.1:$2$3" tag=$4
    shift 4
    wrk_warmup "$url"
    wrk_measured "$name" "$url" "$tag" "$@"
}

# ratio A B: A/B with two decimals, "-" if B is 0
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# ---- nginx, the peer --------------------------------------------------------------------------
# find_nginx: the nginx binary (Debian 12's `nginx` package has proxy_cache), or nothing
find_nginx() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true; }

# write_nginx_conf PORT EXTRA: $TMP/nginx.conf, a caching proxy (proxy_cache, 1 h for 200s)
# in front of the origin on 127.0.0.1:PORT, with EXTRA directives in its http block
write_nginx_conf() {
    local user_line=
    [ "$(id -u)" -eq 0 ] && user_line="user root;"
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
    $2
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

# start_nginx [HTTP_DIRECTIVES]: nginx ($NGINX) configured by write_nginx_conf on a free
# 127.0.0.1 port; sets nginx_pid and NGINX_PORT
start_nginx() {
    local attempt port
    mkdir -p "$TMP/nginx/cache"
    NGINX_PORT=
    for attempt in 1 2 3; do   # a free port can be taken before nginx binds it: retry
        port=$(free_port) || die "no free loopback port"
        write_nginx_conf "$port" "${1:-}"
        "$NGINX" -t -q -p "$TMP/nginx/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" \
            || die "nginx rejects $TMP/nginx.conf: $(cat "$TMP/nginx-error.log")"
        "$NGINX" -p "$TMP/nginx/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" >"$TMP/nginx.out" 2>&1 &
        nginx_pid=$!
        pids+=("$nginx_pid")
        if wait_http "http://127.0.0.1:$port/__count" && kill -0 "$nginx_pid" 2>/dev/null; then
            NGINX_PORT=$port
            return 0
        fi
        kill -TERM "$nginx_pid" 2>/dev/null || true
    done
    die "nginx did not start: $(cat "$TMP/nginx-error.log")"
}

# nginx_worker_pids: the pids of nginx's worker processes (for RSS)
nginx_worker_pids() {
    local p
    for p in $(ps -o pid= --ppid "$nginx_pid"); do
        case "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" in
            "nginx: worker process"*) echo "$p" ;;
        esac
    done
}
