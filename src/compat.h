/* Lua 5.1 / LuaJIT / 5.2–5.4 differences, in one place. */
#ifndef LUATLS_COMPAT_H
#define LUATLS_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

/* LuaJIT 2.1 already has part of the 5.2 auxiliary library. */
#if LUA_VERSION_NUM < 502 && !defined(luaL_newlib)
#define LUATLS_LUA51_AUXLIB 1
#endif

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen(L, (i))
#define lua_setuservalue(L, i) lua_setfenv(L, (i))
#define lua_getuservalue(L, i) lua_getfenv(L, (i))
#define lua_absindex(L, i) \
	((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)
#endif

#ifdef LUATLS_LUA51_AUXLIB
#define luaL_setfuncs(L, l, nup) luatls_setfuncs(L, (l), (nup))
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, (l), 0))
#define luaL_setmetatable(L, name) \
	(luaL_getmetatable(L, (name)), lua_setmetatable(L, -2))
void luatls_setfuncs(lua_State *L, const luaL_Reg *l, int nup);
void *luaL_testudata(lua_State *L, int i, const char *name);
#endif

#if LUA_VERSION_NUM < 503
#define lua_isinteger(L, i) luatls_isinteger(L, (i))
int luatls_isinteger(lua_State *L, int i);
#endif

#if LUA_VERSION_NUM >= 504
#define luatls_newuserdata(L, size) lua_newuserdatauv(L, (size), 1)
#else
#define luatls_newuserdata(L, size) lua_newuserdata(L, (size))
#endif

#endif
