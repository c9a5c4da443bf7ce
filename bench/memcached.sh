#!/usr/bin/env bash
# bench/memcached.sh: cache hits served from memcached (`store memcached`) vs from tessera's
# memory store (`store memory`): one tessera with both routes in front of the same
# tessera-origin and one memcached, measured with wrk in the same run.
# See bench/README.md.  Everything listens on 127.0.0.1 only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# settings (BENCH_* environment), log/die, install, temp dir and trap, origin/tessera, wrk
. "$ROOT/bench/lib.sh"

# ---- tools: wrk, memcached, curl, ss --------------------------------------------------------
mapfile -t missing < <(common_missing)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
install_packages "${missing[@]}"
MEMCACHED=$(command -v memcached)

# ---- temp dir, processes, cleanup -----------------------------------------------------------
make_tmp

# ---- 1. the origin --------------------------------------------------------------------------
start_origin

# ---- 2. memcached ---------------------------------------------------------------------------
# mc_stats NAME...: the values of memcached `stats` fields, in the order asked
mc_stats() {
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" && printf "stats\r\nquit\r\n" >&3 && cat <&3' \
        "$MC_PORT" | tr -d '\r' |
        awk -v names="$*" '
            $1 == "STAT" { v[$2] = $3; seen = 1 }
            END { if (!seen) exit 1; n = split(names, a, " "); for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? " " : ""), v[a[i]] + 0; print "" }'
}
MC_PORT=
for attempt in 1 2 3; do   # a free port can be taken before memcached binds it: retry
    port=$(free_port) || die "no free loopback port"
    "$MEMCACHED" -u nobody -l 127.0.0.1 -p "$port" -U 0 -m 256 >"$TMP/memcached.out" 2>&1 &
    mc_pid=$!
    pids+=("$mc_pid")
    for i in $(seq 100); do
        [ "$(listen_port "$mc_pid")" = "$port" ] && { MC_PORT=$port; break; }
        kill -0 "$mc_pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$MC_PORT" ] && break
    kill -TERM "$mc_pid" 2>/dev/null || true
done
[ -n "$MC_PORT" ] || die "memcached did not start: $(cat "$TMP/memcached.out")"
mc_stats pid >/dev/null || die "memcached does not answer stats"

# ---- 3. tessera: one route per store --------------------------------------------------------
cat >"$TMP/tessera.conf" <<EOF
listen 127.0.0.1:0;
workers $WORKERS;
drain_timeout 1s;
backend app {
    server 127.0.0.1:$ORIGIN_PORT;
    keepalive 64;
}
route /mem/ { backend app; cache on; store memory; }
route /mc/ { backend app; cache on; store memcached; }
route default {
    backend app;
}
log {
    access off;
    error $TMP/tessera-error.log;
    level warn;
}
cache {
    memory 256m;
}
memcached {
    server 127.0.0.1:$MC_PORT;
}
EOF
start_tessera
wait_http "http://127.0.0.1:$TESSERA_PORT/__count" || die "tessera does not answer"

# ---- 4. warm both routes and check HITs -----------------------------------------------------
# The cache key includes Host: curl and wrk both send "Host: 127.0.0.1:$TESSERA_PORT".
CC='hdr=Cache-Control:max-age%3D3600'
OBJECTS=("1 KiB|obj-1k?len=1024&$CC" "256 KiB|obj-256k?len=262144&$CC")
BASE=http://127.0.0.1:$TESSERA_PORT

# headers URL: the response head of a GET, CR stripped (body discarded)
headers() { curl -s -o /dev/null -D - --max-time 5 "$1" | tr -d '\r'; }
# field NAME: the value of header NAME from a head on stdin
field() { awk -v h="$1" 'tolower($1) == tolower(h) ":" { sub(/^[^:]*:[ \t]*/, ""); print }'; }

for obj in "${OBJECTS[@]}"; do
    path=${obj#*|}
    for store in mem mc; do
        url="$BASE/$store/$path"
        curl -s -o /dev/null --max-time 10 "$url"
        # The memcached write is asynchronous: wait (max 5 s) until the object is a hit.
        for i in $(seq 50); do
            head=$(headers "$url")
            [ "$(field X-Cache <<<"$head")" = HIT ] && break
            sleep 0.1
        done
        xc=$(field X-Cache <<<"$head")
        cs=$(field Cache-Status <<<"$head")
        [ "$xc" = HIT ] || die "X-Cache '$xc' for /$store/$path after warm-up (want HIT)"
        case "$store:$cs" in
            mc:*detail=memcached*) ;;
            mc:*) die "Cache-Status '$cs' for /$store/$path: want a hit with detail=memcached" ;;
            mem:*detail=memcached*) die "Cache-Status '$cs' for /$store/$path: a memory hit must not come from memcached" ;;
        esac
        log "/$store/${path%%\?*}: X-Cache: $xc; Cache-Status: $cs"
    done
done
count_before=$(origin_count)

# ---- 5. measure -----------------------------------------------------------------------------
log "origin 127.0.0.1:$ORIGIN_PORT, tessera 127.0.0.1:$TESSERA_PORT, memcached 127.0.0.1:$MC_PORT ($("$MEMCACHED" -V))"
log "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (+${WARMUP}s warm-up), $WORKERS tessera workers, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
for obj in "${OBJECTS[@]}"; do
    path=${obj#*|}
    for store in mem mc; do
        url="$BASE/$store/$path"
        wrk_warmup "$url"
        read -r h0 m0 < <(mc_stats get_hits get_misses) || die "memcached stats failed"
        wrk_measured "tessera store=$store" "$url" "$store$i"
        read -r h1 m1 < <(mc_stats get_hits get_misses) || die "memcached stats failed"
        echo "$((h1 - h0)) $((m1 - m0))" >"$TMP/$store$i.mc"   # memcached gets: hits misses
    done
    i=$((i + 1))
done
count_after=$(origin_count)

# ---- table ----------------------------------------------------------------------------------
row() { printf '%-8s %-18s %12s %12s %17s\n' "$@"; }
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
status=0
echo
row object metric memory memcached memcached/memory
row ------ ------ ------ --------- ----------------
i=0
for obj in "${OBJECTS[@]}"; do
    label=${obj%%|*}
    read -r a_rps a_p50 a_p99 a_err a_non a_req < <(parse_wrk "$TMP/mem$i.wrk")
    read -r b_rps b_p50 b_p99 b_err b_non b_req < <(parse_wrk "$TMP/mc$i.wrk")
    read -r a_gh a_gm <"$TMP/mem$i.mc"
    read -r b_gh b_gm <"$TMP/mc$i.mc"
    row "$label" "requests/s" "$a_rps" "$b_rps" "$(ratio "$b_rps" "$a_rps")"
    row "$label" "p50 latency (ms)" "$a_p50" "$b_p50" "$(ratio "$b_p50" "$a_p50")"
    row "$label" "p99 latency (ms)" "$a_p99" "$b_p99" "$(ratio "$b_p99" "$a_p99")"
    row "$label" "mc gets/request" "$(per "$((a_gh + a_gm))" "$a_req")" "$(per "$((b_gh + b_gm))" "$b_req")" ""
    row "$label" "sock err/non-2xx" "$a_err/$a_non" "$b_err/$b_non" ""
    for s in "memory:$a_err:$a_non" "memcached:$b_err:$b_non"; do
        IFS=: read -r name err non <<<"$s"
        if [ "$err" != 0 ] || [ "$non" != 0 ]; then
            log "store $name: $err socket errors, $non non-2xx/3xx responses for $label"; status=1
        fi
    done
    if [ "$((a_gh + a_gm))" != 0 ]; then
        log "store memory: $((a_gh + a_gm)) memcached gets during the $label run (want 0)"; status=1
    fi
    if [ "$b_gm" != 0 ]; then
        log "store memcached: $b_gm memcached misses during the $label run (want 0)"; status=1
    fi
    i=$((i + 1))
done
echo
echo "origin requests during the measured runs: $((count_after - count_before)) (before $count_before, after $count_after)"
echo "ratios: req/s below 1 and latency above 1 = memcached hits cost more than memory hits"
echo "mc gets/request: memcached gets (stats get_hits+get_misses) per wrk request; below 1 when concurrent hits of one key share a get"
if [ "$count_after" != "$count_before" ]; then
    log "the origin was asked during the measured runs: not all requests were cache hits"; status=1
fi
if [ -s "$TMP/tessera-error.log" ]; then
    log "tessera-error.log:"; sed 's/^/  /' "$TMP/tessera-error.log" | tail -n 5 >&2
fi
exit "$status"
