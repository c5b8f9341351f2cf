#!/usr/bin/env bash
# Usage: .ci/busted-tap.sh LUA MODDIR TAPFILE [busted args...]
#
# Runs the busted suite under interpreter LUA (lua5.4, lua5.1, luajit, ...) with
# luatls.core taken from MODDIR/luatls/core.so and the Lua modules from lua/,
# and tees busted's TAP output to TAPFILE. When busted fails without reporting
# a failed test (a crash, a spec file that does not load), a "not ok" line
# saying so is added, so that the failure is counted. A run that takes longer
# than BUSTED_TIMEOUT seconds (default 900) is stopped, with what it started.
set -uo pipefail

[ $# -ge 3 ] || { echo "usage: $0 LUA MODDIR TAPFILE [busted args...]" >&2; exit 2; }
lua=$1 moddir=$2 tap=$3
shift 3
root=$(cd "$(dirname "$0")/.." && pwd)
case $lua in */*) lua=$(cd "$(dirname "$lua")" && pwd)/$(basename "$lua") ;; esac
case $moddir in /*) ;; *) moddir=$root/$moddir ;; esac
case $tap in /*) ;; *) tap=$PWD/$tap ;; esac
cd "$root" || exit 1

# This checkout first; the trailing ";;" keeps the default paths (busted, cjson,
# socket). Lua 5.3/5.4 read LUA_PATH_5_x in preference to LUA_PATH.
lpath="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
cpath="$moddir/?.so;;"
export LUA_PATH=$lpath LUA_PATH_5_3=$lpath LUA_PATH_5_4=$lpath
export LUA_CPATH=$cpath LUA_CPATH_5_3=$cpath LUA_CPATH_5_4=$cpath
export LUATLS_LUA=$lua   # for specs that start another interpreter

echo "# $lua: busted $*"
limit=${BUSTED_TIMEOUT:-900}
timeout --kill-after=10 "$limit" "$lua" "${BUSTED:-/usr/bin/busted}" -o TAP "$@" | tee "$tap"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
	echo "not ok - $lua: busted stopped after $limit s" | tee -a "$tap"
elif [ "$status" -ne 0 ] && ! grep -q '^not ok ' "$tap"; then
	echo "not ok - $lua: busted exited with status $status" | tee -a "$tap"
fi
exit 0
