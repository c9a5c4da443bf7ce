#!/bin/sh
# make run: the demo application (tessera-origin --demo, a deliberately slow
# site) on 127.0.0.1:8000 with tessera in front of it on the port that
# conf.d/tessera.conf listens on (8080).  Ctrl-C stops both.
#
# Environment: BUILD (default build), TESSERA_CONF (default conf.d/tessera.conf),
# DEMO_DELAY_MS (origin delay per page, default 300).
set -u

BUILD=${BUILD:-build}
CONF=${TESSERA_CONF:-conf.d/tessera.conf}
DELAY=${DEMO_DELAY_MS:-300}
origin_pid=
tessera_pid=

stop_all() {
    trap - INT TERM EXIT
    for pid in $tessera_pid $origin_pid; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in $tessera_pid $origin_pid; do
        wait "$pid" 2>/dev/null
    done
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

for bin in "$BUILD/tessera-origin" "$BUILD/tessera"; do
    if [ ! -x "$bin" ]; then
        echo "run-demo: $bin is missing: run make first" >&2
        exit 1
    fi
done

"$BUILD/tessera-origin" --demo --delay-ms "$DELAY" -l 127.0.0.1:8000 &
origin_pid=$!

# Wait (up to 5 s) until the origin answers, or give up if it died
# (port 8000 taken, for instance).
i=0
until curl -s -o /dev/null http://127.0.0.1:8000/__count 2>/dev/null; do
    if ! kill -0 "$origin_pid" 2>/dev/null; then
        echo "run-demo: tessera-origin failed to start (is 127.0.0.1:8000 free?)" >&2
        origin_pid=
        exit 1
    fi
    i=$((i + 1))
    [ "$i" -ge 50 ] && break
    sleep 0.1
done

"$BUILD/tessera" -c "$CONF" &
tessera_pid=$!

cat <<MSG
demo app:  http://127.0.0.1:8000/  (every page takes ${DELAY} ms)
tessera:   http://127.0.0.1:8080/  (config $CONF)
try:       curl -i http://127.0.0.1:8080/
           curl -i http://127.0.0.1:8080/products/1   (twice: the second is a cache hit)
Ctrl-C stops both.
MSG

# Returns when tessera exits on its own or a signal interrupts the wait.
wait "$tessera_pid"
status=$?
tessera_pid=
stop_all
exit "$status"
