#!/bin/sh
# A TLS server and client from examples/ talking over loopback, with a fresh
# test PKI. Exits with the client's status. Run as `make demo` (which builds
# first) or `LUA=luajit examples/demo.sh` after `make LUA=luajit`.
set -eu

cd "$(dirname "$0")/.."
root=$(pwd)
LUA=${LUA:-lua5.4}
lua_name=$(basename "$LUA")

lpath="$root/lua/?.lua;$root/lua/?/init.lua;;"
cpath="$root/build/$lua_name/?.so;;"
export LUA_PATH="$lpath" LUA_PATH_5_3="$lpath" LUA_PATH_5_4="$lpath"
export LUA_CPATH="$cpath" LUA_CPATH_5_3="$cpath" LUA_CPATH_5_4="$cpath"

tmp=$(mktemp -d)
server=
cleanup() {
	if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

spec/pki.sh "$tmp"

# Port 0: the server picks a free port and says which on its first line.
# stdbuf makes that line reach the log at once even if the script does not flush.
stdbuf -oL "$LUA" examples/server.lua --cert "$tmp/server-chain.pem" \
	--key "$tmp/server.key" --port 0 >"$tmp/server.log" 2>&1 &
server=$!

port=
i=0
while [ $i -lt 100 ]; do # 10 s
	port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)[[:space:]]*$/\1/p' "$tmp/server.log" | head -n 1)
	[ -n "$port" ] && break
	kill -0 "$server" 2>/dev/null || break
	sleep 0.1
	i=$((i + 1))
done
if [ -z "$port" ]; then
	echo "demo: the server did not start; its output:" >&2
	cat "$tmp/server.log" >&2
	exit 1
fi
echo "server: $(head -n 1 "$tmp/server.log")"

status=0
"$LUA" examples/client.lua --cafile "$tmp/ca.pem" --host localhost --port "$port" || status=$?

kill -TERM "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
server=
sed -e 1d -e "s/^/server: /" "$tmp/server.log"
exit "$status"
