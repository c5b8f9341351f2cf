/* luatls.core: module entry point, shared helpers and failure triples. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../include/luatls.h"
#include "internal.h"

#define HOST_LOOP_KEY "luatls.hostloop"

int luatls_fail(lua_State *L, const char *code, const char *fmt, ...)
{
	va_list ap;
	lua_pushnil(L);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	lua_pushstring(L, code);
	return 3;
}

int luatls_fail_gnutls(lua_State *L, int err, const char *what)
{
	const char *name = gnutls_strerror_name(err);
	return luatls_fail(L, name ? name : "GNUTLS_E_UNKNOWN", "%s: %s", what,
			   gnutls_strerror(err));
}

/* Errno names for the codes a socket user meets; others get "errno:N". */
static const char *errno_name(int err)
{
	switch (err) {
	case ECONNREFUSED: return "ECONNREFUSED";
	case ECONNRESET: return "ECONNRESET";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EHOSTUNREACH: return "EHOSTUNREACH";
	case ENETUNREACH: return "ENETUNREACH";
	case EADDRINUSE: return "EADDRINUSE";
	case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
	case EACCES: return "EACCES";
	case EPIPE: return "EPIPE";
	case EMFILE: return "EMFILE";
	case ENFILE: return "ENFILE";
	case EINVAL: return "EINVAL";
	case ENOENT: return "ENOENT";
	case ENOTCONN: return "ENOTCONN";
	default: return NULL;
	}
}

int luatls_fail_errno(lua_State *L, int err, const char *what)
{
	const char *name = errno_name(err);
	if (name != NULL)
		return luatls_fail(L, name, "%s: %s", what, strerror(err));
	lua_pushnil(L);
	lua_pushfstring(L, "%s: %s", what, strerror(err));
	lua_pushfstring(L, "errno:%d", err);
	return 3;
}

int luatls_wouldblock(lua_State *L, int writing)
{
	lua_pushnil(L);
	if (writing) {
		lua_pushliteral(L, "would block (write)");
		lua_pushliteral(L, "wantwrite");
	} else {
		lua_pushliteral(L, "would block (read)");
		lua_pushliteral(L, "wantread");
	}
	return 3;
}

/* An object's references (the Lua values it keeps alive) live in a table
 * in its uservalue, made on the first luatls_setref: most objects keep
 * none, and an idle connection should not pay for three empty tables.
 * Lua 5.1 gives every userdata an environment table; the shared, never
 * written NOREFS_KEY table stands for "none yet" there. */
#define NOREFS_KEY "luatls.norefs"

/* Pushes the metatable of class name, found by the address of its name
 * (see luatls_newclass): no Lua string is made of the name, as
 * luaL_getmetatable would on every call. [-0, +1] */
static void push_class(lua_State *L, const char *name)
{
	lua_pushlightuserdata(L, (void *)(uintptr_t)name);
	lua_rawget(L, LUA_REGISTRYINDEX);
	if (lua_isnil(L, -1)) { /* another copy of the name's string */
		lua_pop(L, 1);
		luaL_getmetatable(L, name);
	}
}

/* The methods and metamethods of a class carry it (see luatls_newclass):
 * upvalue 1 is its metatable, upvalue 2 the address of its name. When the
 * running function is one of them, the class in question is compared
 * with the upvalue, which spares the registry look-up; any other
 * function, or another class, takes that look-up. */
void *luatls_checkudata(lua_State *L, int i, const char *name)
{
	void *p = lua_touserdata(L, i);
	if (p != NULL && lua_getmetatable(L, i)) {
		int same;
		if (lua_touserdata(L, lua_upvalueindex(2)) ==
		    (void *)(uintptr_t)name) {
			same = lua_rawequal(L, -1, lua_upvalueindex(1));
			lua_pop(L, 1);
		} else {
			push_class(L, name);
			same = lua_rawequal(L, -1, -2);
			lua_pop(L, 2);
		}
		if (same)
			return p;
	}
	return luaL_checkudata(L, i, name); /* raises the usual error */
}

void *luatls_newobject(lua_State *L, size_t size, const char *mt)
{
	void *p = luatls_newuserdata(L, size);
	memset(p, 0, size);
	push_class(L, mt);
	lua_setmetatable(L, -2);
#if LUA_VERSION_NUM < 502
	lua_getfield(L, LUA_REGISTRYINDEX, NOREFS_KEY);
	lua_setuservalue(L, -2);
#endif
	return p;
}

void luatls_refs(lua_State *L, int obj)
{
	int none;
	obj = lua_absindex(L, obj);
	lua_getuservalue(L, obj);
#if LUA_VERSION_NUM < 502
	lua_getfield(L, LUA_REGISTRYINDEX, NOREFS_KEY);
	none = lua_rawequal(L, -1, -2);
	lua_pop(L, 1);
#else
	none = !lua_istable(L, -1);
#endif
	if (none) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setuservalue(L, obj);
	}
}

void luatls_setref(lua_State *L, int obj, const char *key)
{
	obj = lua_absindex(L, obj);
	luatls_refs(L, obj);
	lua_insert(L, -2);
	lua_setfield(L, -2, key);
	lua_pop(L, 1);
}

void luatls_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
		     const luaL_Reg *meta)
{
	luaL_newmetatable(L, name);
	lua_pushlightuserdata(L, (void *)(uintptr_t)name); /* see push_class */
	lua_pushvalue(L, -2);
	lua_rawset(L, LUA_REGISTRYINDEX);
	/* each function knows its class: see luatls_checkudata */
	lua_pushvalue(L, -1);
	lua_pushlightuserdata(L, (void *)(uintptr_t)name);
	luaL_setfuncs(L, meta, 2);
	lua_newtable(L);
	lua_pushvalue(L, -2);
	lua_pushlightuserdata(L, (void *)(uintptr_t)name);
	luaL_setfuncs(L, methods, 2);
	lua_setfield(L, -2, "__index");
	lua_pushstring(L, name);
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
}

void luatls_checkoptions(lua_State *L, int i, const char *const allowed[])
{
	i = lua_absindex(L, i);
	luaL_checktype(L, i, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, i)) {
		int j, ok = 0;
		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING) {
			const char *k = lua_tostring(L, -1);
			for (j = 0; !ok && allowed[j] != NULL; j++)
				ok = strcmp(k, allowed[j]) == 0;
			if (!ok)
				luaL_argerror(L, i, lua_pushfstring(L,
					      "unknown option '%s'", k));
		} else {
			luaL_argerror(L, i, "option names must be strings");
		}
	}
}

const char *luatls_optfield_string(lua_State *L, int i, const char *key)
{
	const char *s;
	lua_getfield(L, i, key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return NULL;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_argerror(L, i, lua_pushfstring(L, "option '%s' must be a string", key));
	s = lua_tostring(L, -1);
	lua_pop(L, 1); /* the options table keeps the string alive */
	return s;
}

int luatls_optfield_boolean(lua_State *L, int i, const char *key, int def)
{
	int b = def;
	lua_getfield(L, i, key);
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TBOOLEAN)
			luaL_argerror(L, i, lua_pushfstring(L, "option '%s' must be a boolean", key));
		b = lua_toboolean(L, -1);
	}
	lua_pop(L, 1);
	return b;
}

int luatls_is_pem(const gnutls_datum_t *d)
{
	static const char marker[] = "-----BEGIN";
	size_t i, m = sizeof marker - 1;
	for (i = 0; i + m <= d->size; i++)
		if (d->data[i] == '-' && memcmp(d->data + i, marker, m) == 0)
			return 1;
	return 0;
}

struct ev_loop *luatls_host_loop(lua_State *L)
{
	struct ev_loop *loop;
	lua_getfield(L, LUA_REGISTRYINDEX, HOST_LOOP_KEY);
	loop = (struct ev_loop *)lua_touserdata(L, -1);
	lua_pop(L, 1);
	return loop;
}

LUATLS_EXPORT void luatls_use_loop(lua_State *L, struct ev_loop *loop)
{
	lua_pushlightuserdata(L, loop);
	lua_setfield(L, LUA_REGISTRYINDEX, HOST_LOOP_KEY);
}

/* core.strerror(code) -> the GnuTLS description of an error name or number */
static int core_strerror(lua_State *L)
{
	int err;
	if (lua_type(L, 1) == LUA_TNUMBER) {
		err = (int)luaL_checkinteger(L, 1);
	} else {
		const char *name = luaL_checkstring(L, 1);
		for (err = -1; err > -500; err--) {
			const char *n = gnutls_strerror_name(err);
			if (n != NULL && strcmp(n, name) == 0)
				break;
		}
		if (err == -500) {
			lua_pushnil(L);
			return 1;
		}
	}
	lua_pushstring(L, gnutls_strerror(err));
	return 1;
}

/* core.alert_name(number) -> "bad_certificate"-style name, description;
 * or nil for an unknown alert */
static int core_alert_name(lua_State *L)
{
	gnutls_alert_description_t a =
		(gnutls_alert_description_t)luaL_checkinteger(L, 1);
	const char *n = gnutls_alert_get_strname(a);
	luaL_Buffer b;
	if (n == NULL) {
		lua_pushnil(L);
		return 1;
	}
	if (strncmp(n, "GNUTLS_A_", 9) == 0)
		n += 9;
	luaL_buffinit(L, &b);
	for (; *n != '\0'; n++)
		luaL_addchar(&b, (char)(*n >= 'A' && *n <= 'Z' ? *n - 'A' + 'a' : *n));
	luaL_pushresult(&b);
	lua_pushstring(L, gnutls_alert_get_name(a));
	return 2;
}

int luatls_priority_init(lua_State *L, const char *s, gnutls_priority_t *p)
{
	const char *where = NULL;
	int r = gnutls_priority_init2(p, s, &where, 0);
	if (r == 0)
		return 0;
	*p = NULL;
	if (r == GNUTLS_E_INVALID_REQUEST && where != NULL)
		return luatls_fail(L, "GNUTLS_E_INVALID_REQUEST",
				   "invalid priority string at '%s'", where);
	return luatls_fail_gnutls(L, r, "priority");
}

/* core.check_priority(string) -> true | nil, message, code */
static int core_check_priority(lua_State *L)
{
	gnutls_priority_t p;
	if (luatls_priority_init(L, luaL_checkstring(L, 1), &p))
		return 3;
	gnutls_priority_deinit(p);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.split_line(s, from) -> line, rest | nil: s up to its first "\n" at
 * or after byte from (1-based), without the "\n" and a "\r" before it,
 * and what follows it ("" when nothing does); nil when there is no "\n"
 * from there on. The stream's receive("*l"): one call where find, byte
 * and two subs would be four. */
static int core_split_line(lua_State *L)
{
	size_t len, last;
	const char *s = luaL_checklstring(L, 1, &len);
	lua_Integer from = 1;
	const char *nl;
	if (!lua_isnoneornil(L, 2)) {
		luaL_argcheck(L, lua_isinteger(L, 2), 2, "position must be an integer");
		from = lua_tointeger(L, 2);
		luaL_argcheck(L, from >= 1, 2, "position must be 1 or more");
	}
	if ((size_t)from > len ||
	    (nl = (const char *)memchr(s + from - 1, '\n', len - (size_t)from + 1)) == NULL) {
		lua_pushnil(L);
		return 1;
	}
	last = (size_t)(nl - s); /* the line's length with a "\r" */
	lua_pushlstring(L, s, last > 0 && s[last - 1] == '\r' ? last - 1 : last);
	lua_pushlstring(L, nl + 1, len - last - 1);
	return 2;
}

static const luaL_Reg core_functions[] = {
	{"alert_name", core_alert_name},
	{"check_priority", core_check_priority},
	{"split_line", core_split_line},
	{"strerror", core_strerror},
	{NULL, NULL}
};

LUATLS_EXPORT int luaopen_luatls_core(lua_State *L)
{
	if (gnutls_check_version("3.7.0") == NULL)
		return luaL_error(L, "luatls needs GnuTLS 3.7 or later, found %s",
				  gnutls_check_version(NULL));
#if LUA_VERSION_NUM < 502
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, NOREFS_KEY);
#endif
	luaL_newlib(L, core_functions);
	luatls_open_context(L);
	luatls_open_session(L);
	luatls_open_socket(L);
	luatls_open_loop(L);
	luatls_open_acceptor(L);
	luatls_open_x509(L);
	luatls_open_key(L);
	luatls_open_crl(L);
	luatls_open_store(L);
	luatls_open_x509_gen(L);
	luatls_open_policy(L);
	luatls_open_resume(L);
	lua_pushstring(L, LUATLS_VERSION);
	lua_setfield(L, -2, "version");
	lua_pushstring(L, gnutls_check_version(NULL));
	lua_setfield(L, -2, "gnutls_version");
	return 1;
}
