/* Shims for the functions Lua 5.1 and LuaJIT lack; see compat.h. */
#include "compat.h"

#ifdef LUATLS_LUA51_AUXLIB
void luatls_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
	luaL_checkstack(L, nup, "too many upvalues");
	for (; l->name != NULL; l++) {
		int i;
		for (i = 0; i < nup; i++)
			lua_pushvalue(L, -nup);
		lua_pushcclosure(L, l->func, nup);
		lua_setfield(L, -(nup + 2), l->name);
	}
	lua_pop(L, nup);
}

void *luaL_testudata(lua_State *L, int i, const char *name)
{
	void *p = lua_touserdata(L, i);
	if (p == NULL || !lua_getmetatable(L, i))
		return NULL;
	luaL_getmetatable(L, name);
	if (!lua_rawequal(L, -1, -2))
		p = NULL;
	lua_pop(L, 2);
	return p;
}
#else
typedef int luatls_compat_unused;
#endif

#if LUA_VERSION_NUM < 503
int luatls_isinteger(lua_State *L, int i)
{
	lua_Number n;
	if (lua_type(L, i) != LUA_TNUMBER)
		return 0;
	n = lua_tonumber(L, i);
	return n == (lua_Number)(lua_Integer)n;
}
#endif
