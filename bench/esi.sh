#!/usr/bin/env bash
# bench/esi.sh: hits of a page assembled by ESI from 10 cached fragments (/page/, esi on)
# against the same final HTML cached whole (/whole/), both on one tessera in the same run,
# measured in turns (ESI whole ESI whole ..., BENCH_ROUNDS, default 3), identity and gzip.
# See bench/README.md.  Everything listens on 127.0.0.1 only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
# settings (BENCH_* environment), log/die, install, temp dir and trap, origin/tessera, wrk
. "$ROOT/bench/lib.sh"

mapfile -t missing < <(common_missing)
command -v cmp >/dev/null 2>&1 || missing+=(diffutils)
command -v gzip >/dev/null 2>&1 || missing+=(gzip)
install_packages "${missing[@]}"
make_tmp
start_origin
ROUNDS=${BENCH_ROUNDS:-3}
NFRAG=10

# The origin holds the bodies (its /__set): the URLs are as short as a real site's.
{ tessera_conf_common; cat <<EOF; } >"$TMP/tessera.conf"
route /page/ {
    backend origin;
    cache on;
    ttl 60s;
    esi on;
}
route /frag/ {
    backend origin;
    cache on;
    ttl 60s;
}
route /whole/ {
    backend origin;
    cache on;
    ttl 60s;
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
wait_http "http://127.0.0.1:$TESSERA_PORT/__count" || die "tessera does not answer"
BASE="http://127.0.0.1:$TESSERA_PORT"

# ---- the page -------------------------------------------------------------------------------
# urlenc TEXT: percent-encodes all but A-Z a-z 0-9 - . _ ~ / : (the origin decodes body= once;
# '+' is not a space for it)
urlenc() {
    local LC_ALL=C s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._~/:-]) out+=$c ;;
            *) printf -v c '%%%02X' "'$c"; out+=$c ;;
        esac
    done
    printf '%s' "$out"
}
# text N SEED: N bytes (or a little less) of words from a fixed vocabulary, deterministic
text() {
    awk -v n="$1" -v seed="$2" 'BEGIN {
        split("cache edge proxy fragment page origin header body object store hit miss " \
              "worker route request response latency include template assemble stale fresh", w, " ")
        s = ""; i = seed
        while (1) { x = w[i % 21 + 1]; i = i * 7 + 3; if (length(s) + length(x) + 1 > n) break
                    s = s (s == "" ? "" : " ") x }
        printf "%s", s }'
}
# Fragment i: about 300 bytes.  No '$' anywhere: the origin would replace "$n".
CC='hdr=Cache-Control:max-age%3D3600'
frag_html=()
for i in $(seq "$NFRAG"); do
    frag_html[i]="<div class=\"card\" id=\"card-$i\"><h3>Fragment $i</h3><p>$(text 220 "$i")</p></div>"
done
head_html="<!DOCTYPE html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tessera ESI bench</title>
<style>body{font-family:sans-serif;margin:0}header,footer{background:#eee;padding:1em}
.card{border:1px solid #ccc;margin:1em;padding:1em}.slot{display:block}</style></head>
<body><header><nav><a href=\"/\">Home</a> <a href=\"/news\">News</a> <a href=\"/about\">About</a></nav>
<h1>A page of ten fragments</h1><p>$(text 600 31)</p></header>
<main>
"
foot_html="</main>
<footer><p>$(text 500 57)</p><p><a href=\"/privacy\">Privacy</a> <a href=\"/terms\">Terms</a></p></footer>
</body></html>
"
template=$head_html
whole=$head_html
for i in $(seq "$NFRAG"); do
    src="/frag/$i?$CC"
    template+="<section class=\"slot\" data-slot=\"$i\"><esi:include src=\"$src\"/></section>
"
    whole+="<section class=\"slot\" data-slot=\"$i\">${frag_html[i]}</section>
"
done
template+=$foot_html
whole+=$foot_html
frag_bytes=0
for i in $(seq "$NFRAG"); do frag_bytes=$((frag_bytes + ${#frag_html[i]})); done
set_body() { # set_body PATH TEXT: the origin answers PATH with TEXT
    [ "$(curl -s --max-time 10 "http://127.0.0.1:$ORIGIN_PORT/__set?path=$1&body=$(urlenc "$2")")" = ok ] ||
        die "the origin did not take the body of $1"
}
for i in $(seq "$NFRAG"); do set_body "/frag/$i" "${frag_html[i]}"; done
set_body /page/index.html "$template"
set_body /whole/index.html "$whole"
PAGE="/page/index.html?ctype=text/html&$CC"
WHOLE="/whole/index.html?ctype=text/html&$CC"
printf '%s\n' "$PAGE" >"$TMP/esi.url"
printf '%s\n' "$WHOLE" >"$TMP/whole.url"
log "page ${#whole} bytes: $((${#whole} - frag_bytes)) of literal HTML, $NFRAG fragments of $((frag_bytes / NFRAG)) bytes on average; URLs: ESI ${#PAGE}, whole ${#WHOLE} bytes"

# ---- warm up, check hits and identical bodies ---------------------------------------------
CASES=("esi|$PAGE" "whole|$WHOLE")
CODINGS=(identity gzip)
get() { # get URL CODING OUT: body (as sent) into OUT, head into OUT.head
    local ae=()
    [ "$2" = identity ] || ae=(-H "Accept-Encoding: $2")
    curl -s --max-time 10 ${ae[@]+"${ae[@]}"} -o "$3" -D "$3.head" -w '%{http_code}' "$1"
}
hdr_of() { tr -d '\r' <"$1" | awk -v h="$2" 'tolower($1) == tolower(h) ":" { sub(/^[^:]*:[ \t]*/, ""); print }'; }
for _ in 1 2 3; do
    for c in "${CASES[@]}"; do
        for coding in "${CODINGS[@]}"; do
            code=$(get "$BASE${c#*|}" "$coding" "$TMP/warm") || die "curl failed for ${c%%|*} $coding"
            [ "$code" = 200 ] || die "${c%%|*} $coding: status $code in warm-up: $(head -c 300 "$TMP/warm")"
        done
    done
done
for i in $(seq "$NFRAG"); do
    src="/frag/$i?$CC"
    [ "$(hit_header "$BASE$src" X-Cache)" = HIT ] || die "fragment $i is not a hit after warm-up"
done
printf '%s' "$whole" >"$TMP/expected.html"
for c in "${CASES[@]}"; do
    name=${c%%|*}
    for coding in "${CODINGS[@]}"; do
        out="$TMP/$name.$coding.body"
        get "$BASE${c#*|}" "$coding" "$out" >/dev/null
        enc=$(hdr_of "$out.head" Content-Encoding)
        [ "${enc:-identity}" = "$coding" ] || die "$name: asked for $coding, got ${enc:-identity}"
        if [ "$coding" = gzip ]; then gzip -dc <"$out" >"$out.plain" || die "$name: bad gzip body"
        else cp "$out" "$out.plain"; fi
        cmp -s "$out.plain" "$TMP/expected.html" ||
            die "$name $coding: the body differs from the expected page ($(wc -c <"$out.plain") bytes, want ${#whole}; kept with BENCH_KEEP=1 in $TMP)"
        wc -c <"$out" | tr -d ' ' >"$TMP/size.$name.$coding"
        hdr_of "$out.head" X-Cache >"$TMP/xcache.$name.$coding"
    done
done
[ "$(cat "$TMP/xcache.whole.identity")" = HIT ] || die "whole: not a hit after warm-up"
cmp -s "$TMP/esi.identity.body" "$TMP/whole.identity.body" || die "ESI and whole bodies differ"
log "bodies identical (${#whole} bytes); X-Cache: esi $(cat "$TMP/xcache.esi.identity"), whole $(cat "$TMP/xcache.whole.identity")"
count_before=$(origin_count)
rss_before=$(rss_kb "$tessera_pid")

# ---- measure: per round and coding, ESI then whole --------------------------------------------
log "origin 127.0.0.1:$ORIGIN_PORT, tessera 127.0.0.1:$TESSERA_PORT"
log "wrk -t$THREADS -c$CONNS -d${DURATION}s --latency (+${WARMUP}s warm-up), $ROUNDS rounds, $WORKERS workers, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    for coding in "${CODINGS[@]}"; do
        WRK_ARGS=()
        [ "$coding" = identity ] || WRK_ARGS=(-H "Accept-Encoding: $coding")
        for c in "${CASES[@]}"; do
            name=${c%%|*}
            tag=$name.$coding.$r
            rss_kb "$tessera_pid" >"$TMP/$tag.rss0"
            measure "$name" "$TESSERA_PORT" "${c#*|}" "$tag" "$tessera_pid" 2>"$TMP/$tag.log" ||
                die "wrk failed for $name $coding: $(cut -c1-300 "$TMP/$tag.log")"
            grep -v '^bench: ' "$TMP/$tag.log" >&2 || true
            log "$name $coding, round $r: $(grep -E 'Requests/sec' "$TMP/$tag.wrk" | tr -s ' '), peak RSS $(awk '{ printf "%.1f", $1 / 1024 }' "$TMP/$tag.rss") MiB"
        done
    done
done
count_after=$(origin_count)
rss_after=$(rss_kb "$tessera_pid")
kill -0 "$tessera_pid" 2>/dev/null || die "tessera exited during the measured runs"

# ---- table ----------------------------------------------------------------------------------
# median TAG COL: the median over rounds of column COL of parse_wrk for $TMP/TAG.R.wrk
median() {
    local r
    for r in $(seq "$ROUNDS"); do parse_wrk "$TMP/$1.$r.wrk" | awk -v c="$2" '{ print $c }'; done |
        sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# total TAG COL: the sum over rounds; peak TAG: the highest peak RSS over rounds, in MiB
total() {
    local r
    for r in $(seq "$ROUNDS"); do parse_wrk "$TMP/$1.$r.wrk" | awk -v c="$2" '{ print $c }'; done |
        awk '{ s += $1 } END { print s + 0 }'
}
peak() { cat "$TMP/$1".*.rss | sort -g | tail -n 1 | awk '{ printf "%.1f", $1 / 1024 }'; }
# growth TAG: the most RSS grew in one run (its peak less the RSS before its warm-up), in MiB
growth() {
    local r
    for r in $(seq "$ROUNDS"); do echo $(($(cat "$TMP/$1.$r.rss") - $(cat "$TMP/$1.$r.rss0"))); done |
        sort -g | tail -n 1 | awk '{ printf "%.1f", ($1 > 0 ? $1 : 0) / 1024 }'
}
row() { printf '%-9s %-18s %12s %12s %10s\n' "$@"; }
status=0
se_esi='' se_whole=''
echo
row coding "median of $ROUNDS" "ESI" "whole" "ESI/whole"
row ------ --------- --- ----- ---------
for coding in "${CODINGS[@]}"; do
    for m in "requests/s|1" "p50 latency (ms)|2" "p99 latency (ms)|3"; do
        e=$(median "esi.$coding" "${m#*|}")
        w=$(median "whole.$coding" "${m#*|}")
        row "$coding" "${m%|*}" "$e" "$w" "$(ratio "$e" "$w")"
    done
    e=$(peak "esi.$coding"); w=$(peak "whole.$coding")
    row "$coding" "peak RSS (MiB)" "$e" "$w" "$(ratio "$e" "$w")"
    row "$coding" "RSS growth (MiB)" "$(growth "esi.$coding")" "$(growth "whole.$coding")" ""
    e=$(cat "$TMP/size.esi.$coding"); w=$(cat "$TMP/size.whole.$coding")
    row "$coding" "body bytes" "$e" "$w" "$(ratio "$e" "$w")"
    for name in esi whole; do
        err=$(total "$name.$coding" 4); non=$(total "$name.$coding" 5)
        printf -v "se_$name" '%s/%s' "$err" "$non"
        if [ "$err" != 0 ] || [ "$non" != 0 ]; then
            log "$name $coding: $err socket errors, $non non-2xx/3xx responses over $ROUNDS rounds"; status=1
        fi
    done
    row "$coding" "sock err/non-2xx" "$se_esi" "$se_whole" ""
done
echo
echo "origin requests during the measured runs: $((count_after - count_before)) (before $count_before, after $count_after)"
echo "tessera RSS: $(awk -v k="$rss_before" 'BEGIN { printf "%.1f", k / 1024 }') MiB before the measured runs, $(awk -v k="$rss_after" 'BEGIN { printf "%.1f", k / 1024 }') MiB after"
echo "ratios: req/s below 1 means assembling costs throughput; latency above 1 means slower"
[ "$count_after" = "$count_before" ] || { log "the origin was asked during the measured runs: not all requests were hits"; status=1; }
if [ -s "$TMP/tessera-error.log" ]; then log "tessera-error.log:"; sed 's/^/  /' "$TMP/tessera-error.log" | tail -n 5 >&2; fi
exit "$status"
