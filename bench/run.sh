#!/bin/sh
# bench/run.sh: runs bench/run.lua (the benchmark) with what it needs: the
# descriptor limit raised, a throwaway directory with a fresh PKI, the paths
# to luatls and to the tools built by bench/Makefile. QUICK=1: quick mode.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

# 10,000 idle connections need as many descriptors on each side
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard" 2>/dev/null || true
if [ "$(ulimit -n)" -lt 10100 ]; then
	echo "bench: ulimit -n is $(ulimit -n) (hard limit $hard): 10,000-connection tests will fail" >&2
fi

tmp=$(mktemp -d /tmp/luatls-bench.XXXXXX)
cleanup() {
	if [ -f "$tmp/pids" ]; then
		for pid in $(cat "$tmp/pids"); do kill -KILL "$pid" 2>/dev/null || true; done
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sh "$root/spec/pki.sh" "$tmp/pki" >/dev/null

export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
export LUA_CPATH="$root/build/lua5.4/?.so;;"
export BENCH_BIN="$here/build" BENCH_TMP="$tmp" BENCH_SRC="$here" QUICK="${QUICK:-}"
lua5.4 "$here/run.lua"
