#!/bin/sh
# bench/profile.sh SERVER MODE [SECONDS]: perf profile of one bench server
# under one load generator mode, by library and by symbol.
#   SERVER  baseline | baseline+tickets | luatls
#   MODE    hs | resume | bulk | ttfb
# Needs `make -C bench tools` and perf (linux-perf). luatls runs under
# bench/build/luaprof (lua5.4 with symbols). Output in $OUT (default
# /tmp/luatls-profile).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
server=${1:?usage: profile.sh SERVER MODE [SECONDS]}
mode=${2:?usage: profile.sh SERVER MODE [SECONDS]}
secs=${3:-5}
out=${OUT:-/tmp/luatls-profile}
mkdir -p "$out"
[ -x "$here/build/luaprof" ] || cc -O2 -g -I/usr/include/lua5.4 -o "$here/build/luaprof" \
	"$here/luaprof.c" /usr/lib/x86_64-linux-gnu/liblua5.4.a -lm -ldl -Wl,-E
[ -f "$out/pki/server.key" ] || sh "$root/spec/pki.sh" "$out/pki" >/dev/null
make --no-print-directory -C "$root" LUA=lua5.4 BUILD=build/lua5.4 module >/dev/null
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" LUA_CPATH="$root/build/lua5.4/?.so;;"

port=$((21000 + $$ % 4000))
crt=$out/pki/server-chain.pem key=$out/pki/server.key
case $server in
baseline) set -- "$here/build/baseline" -p $port -c "$crt" -k "$key" ;;
baseline+tickets) set -- "$here/build/baseline" -T -p $port -c "$crt" -k "$key" ;;
luatls) set -- "$here/build/luaprof" "$here/luatls_server.lua" $port "$crt" "$key" $((secs + 30)) notickets ;;
*) echo "profile.sh: unknown server $server" >&2; exit 2 ;;
esac
taskset -c 0 "$@" >"$out/server.log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT
sleep 0.5
perf record -e cpu-clock -F 4000 -g -p $pid -o "$out/perf.data" >/dev/null 2>&1 &
rec=$!
sleep 0.2
case $mode in
bulk) taskset -c 1 "$here/build/loadgen" bulk -p $port -P $pid -b 1073741824 -t 60 ;;
*) taskset -c 1 "$here/build/loadgen" "$mode" -p $port -P $pid -w 0.3 -t "$secs" ;;
esac
kill -INT $rec
wait $rec 2>/dev/null || true
echo "--- by library"
perf report -i "$out/perf.data" --stdio --no-children --sort dso 2>/dev/null | grep -E '^ +[0-9.]+%' | head -12
echo "--- by symbol"
perf report -i "$out/perf.data" --stdio --no-children --sort dso,sym 2>/dev/null | grep -E '^ +[0-9.]+%' | head -40
