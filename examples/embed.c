/*
 * A C host that embeds luatls: it owns a libev loop with a timer of its
 * own, hands the loop to luatls, and runs a Lua script on it. While the
 * script's TLS server and client talk, the host's timer keeps firing.
 *
 *   cc -Iinclude -I/usr/include/lua5.4 examples/embed.c \
 *      build/lua5.4/luatls/core.so -llua5.4 -lev -o embed
 *   LUA_PATH='lua/?.lua;lua/?/init.lua' ./embed script.lua [args...]
 */
#include <stdio.h>

#include <ev.h>
#include <lauxlib.h>
#include <lualib.h>

#include "luatls.h"

static int ticks;

static void tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	ticks++;
}

int main(int argc, char **argv)
{
	struct ev_loop *loop = EV_DEFAULT;
	ev_timer timer;
	lua_State *L;
	int i, status;

	if (argc < 2) {
		fprintf(stderr, "usage: %s script.lua [args...]\n", argv[0]);
		return 2;
	}
	ev_timer_init(&timer, tick, 0.01, 0.01);
	ev_timer_start(loop, &timer);
	ev_unref(loop); /* the host's timer alone does not keep the loop busy */

	L = luaL_newstate();
	luaL_openlibs(L);
	luatls_use_loop(L, loop);
	/* the module is linked in: make `require "luatls.core"` find it */
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	lua_pushcfunction(L, luaopen_luatls_core);
	lua_setfield(L, -2, "luatls.core");
	lua_pop(L, 1);

	lua_newtable(L);
	for (i = 2; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - 1);
	}
	lua_setglobal(L, "arg");
	status = luaL_dofile(L, argv[1]);
	if (status != LUA_OK)
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
	lua_close(L);
	ev_ref(loop);
	ev_timer_stop(loop, &timer);
	printf("host timer fired %s\n", ticks > 0 ? "while luatls ran" : "never");
	return status == LUA_OK && ticks > 0 ? 0 : 1;
}
