/*
 * luatls: the C API for host applications.
 *
 * A host that already runs a libev loop opens the module into its own
 * lua_State and hands the loop over, so that luatls's scheduler waits on the
 * host's loop instead of creating its own:
 *
 *     luaL_requiref(L, "luatls.core", luaopen_luatls_core, 0);
 *     luatls_use_loop(L, EV_DEFAULT);
 *
 * and then `require "luatls"` from Lua as usual.
 */
#ifndef LUATLS_H
#define LUATLS_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ev_loop;

#define LUATLS_VERSION "0.1.0"

/* Opens the C core; pushes the module table. */
int luaopen_luatls_core(lua_State *L);

/* Makes every luatls loop created in L from now on use the host's libev
 * loop. The host keeps ownership: luatls never destroys it. */
void luatls_use_loop(lua_State *L, struct ev_loop *loop);

#ifdef __cplusplus
}
#endif

#endif
