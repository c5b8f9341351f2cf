#!/bin/sh
# bench/cost.sh [SERVER.lua [OPTION...]]: what one full ECDSA handshake
# connection costs a Lua bench server, by layer (interpreter, luatls core,
# libev, malloc, the rest: GnuTLS, crypto, libc), counted by cachegrind.
# Unlike the timings of `make bench`, the counts barely move from run to
# run, so a change to the Lua layer worth 1 % shows; see bench/README.md
# for what the counts do not see. Not part of `make bench`.
#   SERVER   bench/luatls_server.lua (default), bench/sched_server.lua,
#            bench/core_server.lua; OPTION... follow "notickets" (or
#            "tickets" when MODE is resume)
#   TREE     the checkout whose lua/ and core module to load (default: this one)
#   BEFORE   another checkout, counted at the same time (side by side, the
#            two see the same timing; see bench/README.md) and printed after
#   N1, N2   handshakes of the two runs (100, 600): cost = difference / (N2 - N1)
#   MODE     hs: full handshakes, tickets off (default); resume: each
#            connection resumes with the ticket of the one before
#   CONC     concurrent client connections (1: the most repeatable counts)
#   TOP      also list the TOP costliest functions of our layers (0)
# Needs valgrind and `make -C bench tools`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
server=${1:-$here/luatls_server.lua}
[ $# -gt 0 ] && shift
tree=${TREE:-$root}
mode=${MODE:-hs}
case $mode in hs) tickets=notickets ;; resume) tickets=tickets ;; *) echo "cost.sh: MODE is hs or resume" >&2; exit 2 ;; esac
n1=${N1:-100} n2=${N2:-600} conc=${CONC:-1}
out=${OUT:-/tmp/luatls-cost}
command -v valgrind >/dev/null || { echo "cost.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
[ -x "$here/build/loadgen" ] || make --no-print-directory -C "$here" tools >/dev/null
liblua=$(ls /usr/lib/*/liblua5.4.a /usr/lib/liblua5.4.a 2>/dev/null | head -n 1)
[ -n "$liblua" ] || { echo "cost.sh: needs liblua5.4.a (apt-get install liblua5.4-dev)" >&2; exit 2; }
[ -x "$here/build/luaprof" ] || cc -O2 -g -I/usr/include/lua5.4 -o "$here/build/luaprof" \
	"$here/luaprof.c" "$liblua" -lm -ldl -Wl,-E
mkdir -p "$out"
[ -f "$out/pki/server.key" ] || sh "$root/spec/pki.sh" "$out/pki" >/dev/null
make --no-print-directory -C "$tree" LUA=lua5.4 BUILD=build/lua5.4 module >/dev/null
nm "$liblua" 2>/dev/null | awk '$2 ~ /^[TtWw]$/ { print $3 }' | sort -u >"$out/interpreter.txt"
export LUA_PATH="$tree/lua/?.lua;$tree/lua/?/init.lua;;" LUA_CPATH="$tree/build/lua5.4/?.so;;"

# one run: N handshakes against a fresh server under cachegrind
run() { # N PORT FILE
	valgrind --tool=cachegrind --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 \
		--LL=524288,8,64 --cachegrind-out-file="$3" "$here/build/luaprof" "$server" "$2" \
		"$out/pki/server-chain.pem" "$out/pki/server.key" 300 $tickets $options >"$3.log" 2>&1 &
	pid=$!
	i=0
	until ss -ltn | grep -q ":$2 " || [ $i -ge 150 ]; do sleep 0.2; i=$((i + 1)); done
	"$here/build/loadgen" "$mode" -p "$2" -c "$conc" -n "$1" -w 0 -t 240 >"$3.loadgen" || true
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
options="$*"
if [ -n "${BEFORE:-}" ]; then
	TREE="$BEFORE" OUT="$out/before" BEFORE= sh "$0" "$server" "$@" >"$out/before.txt" 2>&1 &
	before=$!
fi
port=$((22000 + $$ % 1500 * 2)) # two ports of its own: runs may go side by side
for p in $port $((port + 1)); do
	! ss -ltn | grep -q ":$p " || { echo "cost.sh: port $p is in use" >&2; exit 1; }
done
run "$n1" "$port" "$out/small.cg" &
small=$!
run "$n2" $((port + 1)) "$out/big.cg"
wait $small
for f in small:$n1 big:$n2; do
	grep -q "ok=${f#*:} err=0 " "$out/${f%:*}.cg.loadgen" || {
		echo "cost.sh: the ${f%:*} run did not make ${f#*:} handshakes:" >&2
		cat "$out/${f%:*}.cg.loadgen" "$out/${f%:*}.cg.log" >&2
		exit 1
	}
done
echo "server: $server $tickets $* (tree $tree), $mode"
lua5.4 "$here/cost.lua" "$out/interpreter.txt" "$out/small.cg" "$n1" "$out/big.cg" "$n2" "${TOP:-0}"
if [ -n "${BEFORE:-}" ]; then
	wait $before || true
	echo
	cat "$out/before.txt"
fi
