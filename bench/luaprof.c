/* bench/luaprof.c: a bare `lua5.4 SCRIPT ARGS...` linked statically against
 * Debian's liblua5.4.a, which keeps its symbols (the lua5.4 binary is
 * stripped), so that perf can name the interpreter's functions. Used by
 * bench/profile.sh; not part of `make bench`. */
#include <stdio.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int main(int argc, char **argv)
{
	lua_State *L;
	int i;
	if (argc < 2) {
		fprintf(stderr, "usage: luaprof SCRIPT [ARGS...]\n");
		return 2;
	}
	L = luaL_newstate();
	luaL_openlibs(L);
	lua_createtable(L, argc, 1);
	for (i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - 1);
	}
	lua_setglobal(L, "arg");
	if (luaL_loadfile(L, argv[1]) != LUA_OK) {
		fprintf(stderr, "luaprof: %s\n", lua_tostring(L, -1));
		return 1;
	}
	for (i = 2; i < argc; i++)
		lua_pushstring(L, argv[i]);
	if (lua_pcall(L, argc - 2, 0, 0) != LUA_OK) {
		fprintf(stderr, "luaprof: %s\n", lua_tostring(L, -1));
		return 1;
	}
	lua_close(L);
	return 0;
}
