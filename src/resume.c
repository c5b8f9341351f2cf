/* Session resumption and TLS 1.3 early data for luatls.Session and
 * luatls.Context: session data out and in, ticket key and lifetime, the
 * TLS 1.2 session-ID store and the anti-replay store, early data.
 *
 * The stores are Lua objects that GnuTLS reaches from inside its own calls
 * (handshake, record I/O). They run under lua_pcall on the state of the
 * Lua call that entered GnuTLS (luatls_resume.L), must not yield, and any
 * error they raise becomes a store failure: the session is then simply not
 * cached, not resumed, or its early data refused. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define CONTEXT_MT "luatls.Context"
#define DEFAULT_LIFETIME 21600 /* GnuTLS's own default, seconds */
#define EARLY_CHUNK 16384

enum { REPLAY_UNCHECKED, REPLAY_FRESH, REPLAY_SEEN, REPLAY_FAILED };

/* One call of a store method, described for store_protected. */
typedef struct {
	const char *store;  /* uservalue field of the Session */
	const char *method; /* "get", "set", "delete" or "add" */
	const gnutls_datum_t *key, *value;
	lua_Integer ttl;    /* passed when >= 0 */
	int want_data;      /* the result is a string, copied to out */
	gnutls_datum_t out;
	int result;         /* the result as a boolean */
} StoreCall;

/* [session, StoreCall] -> store:method(key [, value] [, ttl]); runs under
 * lua_pcall. An error of the store itself is recorded in the Session's
 * uservalue (store_error) and makes the call fail. */
static int store_protected(lua_State *L)
{
	StoreCall *sc = (StoreCall *)lua_touserdata(L, 2);
	int nargs = 1;
	luatls_refs(L, 1);
	lua_getfield(L, -1, sc->store);
	if (lua_isnil(L, -1))
		return luaL_error(L, "no %s store", sc->store);
	lua_getfield(L, -1, sc->method);
	lua_insert(L, -2); /* uv, fn, store */
	lua_pushlstring(L, (const char *)sc->key->data, sc->key->size);
	if (sc->value != NULL) {
		lua_pushlstring(L, (const char *)sc->value->data, sc->value->size);
		nargs++;
	}
	if (sc->ttl >= 0) {
		lua_pushinteger(L, sc->ttl);
		nargs++;
	}
	if (lua_pcall(L, nargs + 1, 1, 0) != 0) {
		lua_pushfstring(L, "%s store: %s", sc->store,
				lua_isstring(L, -1) ? lua_tostring(L, -1) : "error");
		lua_setfield(L, 3, "store_error");
		return luaL_error(L, "store failed");
	}
	if (sc->want_data) {
		size_t n;
		const char *p;
		if (lua_type(L, -1) != LUA_TSTRING)
			return 0;
		p = lua_tolstring(L, -1, &n);
		sc->out.data = (unsigned char *)gnutls_malloc(n ? n : 1);
		if (sc->out.data == NULL)
			return luaL_error(L, "out of memory");
		memcpy(sc->out.data, p, n);
		sc->out.size = (unsigned)n;
	} else {
		sc->result = lua_toboolean(L, -1);
	}
	return 0;
}

/* Calls a store from inside GnuTLS: 0, or -1 when there is no Lua call to
 * run it on or the store failed. */
static int store_call(luatls_resume *rs, StoreCall *sc)
{
	lua_State *L = rs->L;
	int top;
	if (L == NULL || lua_touserdata(L, 1) != rs->self || !lua_checkstack(L, 12))
		return -1;
	top = lua_gettop(L);
	lua_pushcfunction(L, store_protected);
	lua_pushvalue(L, 1);
	lua_pushlightuserdata(L, sc);
	if (lua_pcall(L, 2, 0, 0) != 0) {
		lua_settop(L, top);
		return -1;
	}
	lua_settop(L, top);
	return 0;
}

/* TLS 1.2 session-ID cache (servers): gnutls_db_* callbacks. */
static int db_store(void *ptr, gnutls_datum_t key, gnutls_datum_t data)
{
	luatls_resume *rs = (luatls_resume *)ptr;
	StoreCall sc;
	memset(&sc, 0, sizeof sc);
	sc.store = "session_cache";
	sc.method = "set";
	sc.key = &key;
	sc.value = &data;
	sc.ttl = rs->lifetime ? rs->lifetime : DEFAULT_LIFETIME;
	return store_call(rs, &sc) == 0 ? 0 : GNUTLS_E_DB_ERROR;
}

static gnutls_datum_t db_retrieve(void *ptr, gnutls_datum_t key)
{
	luatls_resume *rs = (luatls_resume *)ptr;
	StoreCall sc;
	memset(&sc, 0, sizeof sc);
	sc.store = "session_cache";
	sc.method = "get";
	sc.key = &key;
	sc.ttl = -1;
	sc.want_data = 1;
	if (store_call(rs, &sc) != 0 && sc.out.data != NULL) {
		gnutls_free(sc.out.data);
		sc.out.data = NULL;
		sc.out.size = 0;
	}
	return sc.out;
}

static int db_remove(void *ptr, gnutls_datum_t key)
{
	luatls_resume *rs = (luatls_resume *)ptr;
	StoreCall sc;
	memset(&sc, 0, sizeof sc);
	sc.store = "session_cache";
	sc.method = "delete";
	sc.key = &key;
	sc.ttl = -1;
	return store_call(rs, &sc) == 0 ? 0 : GNUTLS_E_DB_ERROR;
}

/* Anti-replay (servers with early data): the store adds the ClientHello's
 * key unless it is there already. GnuTLS asks only once the ticket's age
 * fits the window; a refusal here refuses the early data, not the session. */
static int antireplay_add(void *ptr, time_t exp_time, const gnutls_datum_t *key,
			  const gnutls_datum_t *data)
{
	luatls_resume *rs = (luatls_resume *)ptr;
	StoreCall sc;
	time_t now = time(NULL);
	(void)data;
	if (rs == NULL)
		return GNUTLS_E_DB_ERROR;
	memset(&sc, 0, sizeof sc);
	sc.store = "anti_replay";
	sc.method = "add";
	sc.key = key;
	sc.ttl = exp_time > now ? (lua_Integer)(exp_time - now) : 1;
	if (store_call(rs, &sc) != 0) {
		rs->replay = REPLAY_FAILED;
		return GNUTLS_E_DB_ERROR;
	}
	rs->replay = sc.result ? REPLAY_FRESH : REPLAY_SEEN;
	return sc.result ? 0 : GNUTLS_E_DB_ENTRY_EXISTS;
}

/* Reads an optional non-negative integer option. */
static lua_Integer opt_count(lua_State *L, int opts, const char *key)
{
	lua_Integer n = 0;
	lua_getfield(L, opts, key);
	if (!lua_isnil(L, -1)) {
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
			luaL_argerror(L, opts, lua_pushfstring(L,
				      "option '%s' must be a non-negative integer", key));
		n = lua_tointeger(L, -1);
	}
	lua_pop(L, 1);
	return n;
}

/* An optional string option as a datum (borrowed; size 0 when absent). */
static gnutls_datum_t opt_datum(lua_State *L, int opts, const char *key)
{
	gnutls_datum_t d = {NULL, 0};
	size_t n;
	lua_getfield(L, opts, key);
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_argerror(L, opts, lua_pushfstring(L,
				      "option '%s' must be a string", key));
		d.data = (unsigned char *)(uintptr_t)lua_tolstring(L, -1, &n);
		d.size = (unsigned)n;
	}
	lua_pop(L, 1); /* the options table keeps the string alive */
	return d;
}

/* How much early data the ticket in session data allows (0: none, or the
 * data does not load). */
static size_t early_limit(const gnutls_datum_t *data)
{
	gnutls_session_t t;
	size_t max = 0;
	if (gnutls_init(&t, GNUTLS_CLIENT) < 0)
		return 0;
	if (gnutls_session_set_data(t, data->data, data->size) == 0)
		max = gnutls_record_get_max_early_data_size(t);
	gnutls_deinit(t);
	return max;
}

unsigned luatls_resume_flags(lua_State *L, int opts, int server)
{
	unsigned flags = 0;
	if (!luatls_optfield_boolean(L, opts, "resumption", 1))
		flags |= GNUTLS_NO_TICKETS;
	if (server) {
		if (opt_count(L, opts, "early_data") > 0)
			flags |= GNUTLS_ENABLE_EARLY_DATA;
	} else if (!(flags & GNUTLS_NO_TICKETS)) {
		gnutls_datum_t data = opt_datum(L, opts, "session");
		gnutls_datum_t early = opt_datum(L, opts, "early_data");
		if (data.size > 0 && early.size > 0 &&
		    early.size <= early_limit(&data))
			flags |= GNUTLS_ENABLE_EARLY_DATA;
	}
	return flags;
}

/* Keeps the store at opts[key] in the uservalue of obj; 1 if there is one. */
static int keep_store(lua_State *L, int opts, int obj, const char *key)
{
	int t;
	lua_getfield(L, opts, key);
	t = lua_type(L, -1);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t != LUA_TTABLE && t != LUA_TUSERDATA)
		luaL_argerror(L, opts, lua_pushfstring(L,
			      "option '%s' must be a store (a table or object)", key));
	luatls_setref(L, obj, key);
	return 1;
}

/* Keeps the first reason a client's early data was not sent (formatted,
 * on the heap: most sessions never need one). */
static void set_note(luatls_resume *rs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_note(luatls_resume *rs, const char *fmt, ...)
{
	char buf[200];
	va_list ap;
	if (rs->note != NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	rs->note = (char *)malloc(strlen(buf) + 1);
	if (rs->note != NULL)
		strcpy(rs->note, buf);
}

void luatls_resume_free(luatls_resume *rs)
{
	free(rs->note);
	rs->note = NULL;
}

/* Clients: the session to resume and the early data to send with it. A
 * session that does not load, or early data its ticket does not allow,
 * is not an error: the handshake goes on without, and info() says why. */
static int client_setup(lua_State *L, int opts, gnutls_session_t s,
			luatls_resume *rs)
{
	gnutls_datum_t data = opt_datum(L, opts, "session");
	gnutls_datum_t early = opt_datum(L, opts, "early_data");
	size_t max = 0;
	int r;
	if (data.size > 0 && !rs->no_resumption) {
		r = gnutls_session_set_data(s, data.data, data.size);
		if (r < 0)
			set_note(rs,
				 "the session data could not be used: %s",
				 gnutls_strerror(r));
		else
			max = gnutls_record_get_max_early_data_size(s);
	}
	if (early.size == 0)
		return 0;
	if (rs->no_resumption)
		set_note(rs, "early data needs resumption, "
			 "which the policy turns off");
	else if (data.size == 0)
		set_note(rs, "there is no session to "
			 "resume, and early data needs one");
	else if (rs->note != NULL)
		;
	else if (max == 0)
		set_note(rs, "the session's ticket allows "
			 "no early data");
	else if (early.size > max)
		set_note(rs, "%u bytes of early data are "
			 "more than the %u bytes the server accepts (the limit in "
			 "its ticket)", early.size, (unsigned)max);
	else {
		/* GnuTLS queues them for the first flight and returns 0 */
		r = (int)gnutls_record_send_early_data(s, early.data, early.size);
		if (r < 0)
			set_note(rs, "early data: %s",
				 gnutls_strerror(r));
		else
			rs->early_sent = early.size;
	}
	return 0;
}

int luatls_resume_setup(lua_State *L, int opts, int obj, gnutls_session_t s,
			luatls_resume *rs, luatls_ctx *c)
{
	lua_Integer early;
	int r = 0;
	opts = lua_absindex(L, opts);
	obj = lua_absindex(L, obj);
	rs->self = lua_touserdata(L, obj);
	rs->server = c->server;
	rs->no_resumption = !luatls_optfield_boolean(L, opts, "resumption", 1);
	rs->lifetime = (unsigned)opt_count(L, opts, "ticket_lifetime");
	if (!c->server)
		return client_setup(L, opts, s, rs);
	early = opt_count(L, opts, "early_data");
	if (rs->no_resumption) {
		if (early > 0)
			luaL_argerror(L, opts, "early data needs resumption");
		return 0;
	}
	/* The lifetime first: GnuTLS derives the ticket key rotation
	 * period from it when tickets are enabled. */
	if (rs->lifetime > 0)
		gnutls_db_set_cache_expiration(s, (int)rs->lifetime);
	r = gnutls_session_ticket_enable_server(s, &c->ticket_key);
	if (r < 0)
		return r;
	if (keep_store(L, opts, obj, "session_cache")) {
		gnutls_db_set_ptr(s, rs);
		gnutls_db_set_store_function(s, db_store);
		gnutls_db_set_retrieve_function(s, db_retrieve);
		gnutls_db_set_remove_function(s, db_remove);
		rs->cache = 1;
	}
	if (early > 0) {
		lua_Integer window = opt_count(L, opts, "replay_window");
		if (!keep_store(L, opts, obj, "anti_replay"))
			luaL_argerror(L, opts, "early data needs an anti_replay store");
		if (c->antireplay == NULL) {
			r = gnutls_anti_replay_init(&c->antireplay);
			if (r < 0)
				return r;
			gnutls_anti_replay_set_add_function(c->antireplay,
							    antireplay_add);
		}
		if (window > 0)
			gnutls_anti_replay_set_window(c->antireplay,
						      (unsigned)(window * 1000));
		gnutls_anti_replay_enable(s, c->antireplay);
		r = gnutls_record_set_max_early_data_size(s, (size_t)early);
		if (r < 0)
			return r;
		rs->ar = c->antireplay;
		rs->early_max = (unsigned)early;
	}
	return 0;
}

void luatls_resume_enter(lua_State *L, luatls_resume *rs)
{
	rs->L = L;
	/* the context's anti-replay object is shared: point it at the
	 * session whose handshake runs now */
	if (rs->ar != NULL)
		gnutls_anti_replay_set_ptr(rs->ar, rs);
}

void luatls_resume_leave(luatls_resume *rs)
{
	rs->L = NULL;
	if (rs->ar != NULL)
		gnutls_anti_replay_set_ptr(rs->ar, NULL);
}

static void set_string(lua_State *L, const char *key, const char *value)
{
	lua_pushstring(L, value);
	lua_setfield(L, -2, key);
}

/* Why a server did not take the early data a client offered. */
static const char *server_refusal(gnutls_session_t s, luatls_resume *rs)
{
	if (rs->early_max == 0)
		return "early data is not allowed here (policy early_data = \"deny\")";
	if (!gnutls_session_is_resumed(s))
		return "the session was not resumed (unknown, expired or foreign ticket)";
	switch (rs->replay) {
	case REPLAY_SEEN:
		return "replay: the anti-replay store has seen this ClientHello before";
	case REPLAY_FAILED:
		return "the anti-replay store failed, so early data was refused";
	default:
		return "the ticket is older than the anti-replay window (or its "
		       "age does not match), so its early data may be a replay";
	}
}

/* Whether early data was accepted ("accepted"), offered or asked for and
 * refused ("rejected"), or not involved ("none"); *reason says why not. */
static const char *early_status(gnutls_session_t s, luatls_resume *rs,
				const char **reason)
{
	unsigned flags = gnutls_session_get_flags(s);
	*reason = NULL;
	if (rs->server) {
		if (flags & GNUTLS_SFLAGS_EARLY_DATA)
			return "accepted";
		if (!rs->early_offered)
			return "none";
		*reason = server_refusal(s, rs);
		return "rejected";
	}
	if (rs->early_sent == 0) {
		*reason = rs->note;
		return "none";
	}
	if (flags & GNUTLS_SFLAGS_EARLY_DATA)
		return "accepted";
	*reason = gnutls_session_is_resumed(s)
			  ? "the server did not accept the early data"
			  : "the server did not resume the session";
	return "rejected";
}

void luatls_resume_info(lua_State *L, gnutls_session_t s, luatls_resume *rs)
{
	const char *reason, *status = early_status(s, rs, &reason);
	set_string(L, "early_data", status);
	if (reason != NULL)
		set_string(L, "early_data_reason", reason);
	if (rs->server && rs->early_max > 0) {
		lua_pushinteger(L, rs->early_max);
		lua_setfield(L, -2, "early_data_max");
	}
}

/* sess:early_status() -> "accepted" | "rejected" | "none", reason: also
 * during the handshake (a server knows once the ClientHello is in). */
static int session_early_status(lua_State *L)
{
	luatls_resume *rs;
	int open;
	gnutls_session_t s = luatls_check_session(L, 1, &rs, &open);
	const char *reason, *status = early_status(s, rs, &reason);
	lua_pushstring(L, status);
	if (reason == NULL)
		return 1;
	lua_pushstring(L, reason);
	return 2;
}

/* sess:session_data() -> string | nil, message, code: what resumes this
 * session later (secret: it holds the resumption key). Under TLS 1.3 a
 * client has it only once a ticket arrived, which takes a read. */
static int session_data(lua_State *L)
{
	luatls_resume *rs;
	int open, r;
	gnutls_session_t s = luatls_check_session(L, 1, &rs, &open);
	gnutls_datum_t d;
	if (rs->server)
		return luaL_error(L, "session_data: clients only (servers keep "
				  "sessions in tickets and the session cache)");
	if (!open)
		return luatls_fail(L, "handshake", "session data: the handshake is not done");
	if (rs->no_resumption)
		return luatls_fail(L, "resumption", "session data: resumption is off "
				   "(policy resumption = false)");
	if (gnutls_protocol_get_version(s) == GNUTLS_TLS1_3 &&
	    !(gnutls_session_get_flags(s) & GNUTLS_SFLAGS_SESSION_TICKET))
		return luatls_fail(L, "no_ticket",
				   "session data: no session ticket has arrived yet; "
				   "under TLS 1.3 the server sends it after the "
				   "handshake, so read from the connection first");
	r = gnutls_session_get_data2(s, &d);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "session data");
	lua_pushlstring(L, (const char *)d.data, d.size);
	gnutls_free(d.data);
	return 1;
}

/* sess:hello_info() -> { alpn, server_name, resumed }: what a server knows
 * once the ClientHello is in, also during the handshake */
static int session_hello_info(lua_State *L)
{
	luatls_resume *rs;
	int open;
	gnutls_session_t s = luatls_check_session(L, 1, &rs, &open);
	gnutls_datum_t alpn;
	char name[256];
	size_t len = sizeof name;
	unsigned type;
	lua_createtable(L, 0, 3);
	if (gnutls_alpn_get_selected_protocol(s, &alpn) == 0) {
		lua_pushlstring(L, (const char *)alpn.data, alpn.size);
		lua_setfield(L, -2, "alpn");
	}
	if (rs->server && gnutls_server_name_get(s, name, &len, &type, 0) == 0 &&
	    type == GNUTLS_NAME_DNS) {
		lua_pushlstring(L, name, len);
		lua_setfield(L, -2, "server_name");
	}
	lua_pushboolean(L, gnutls_session_is_resumed(s));
	lua_setfield(L, -2, "resumed");
	return 1;
}

/* sess:early_data() -> the early data read since the last call ("" when
 * none has arrived yet), or nil when this server session takes none;
 * works during the handshake. */
static int session_early_data(lua_State *L)
{
	luatls_resume *rs;
	int open;
	gnutls_session_t s = luatls_check_session(L, 1, &rs, &open);
	luaL_Buffer b;
	char buf[EARLY_CHUNK];
	ssize_t n;
	if (!rs->server || !(gnutls_session_get_flags(s) & GNUTLS_SFLAGS_EARLY_DATA)) {
		lua_pushnil(L);
		return 1;
	}
	luaL_buffinit(L, &b);
	for (;;) {
		n = gnutls_record_recv_early_data(s, buf, sizeof buf);
		if (n <= 0)
			break;
		luaL_addlstring(&b, buf, (size_t)n);
		rs->early_received += (size_t)n;
	}
	luaL_pushresult(&b);
	return 1;
}

/* ctx:ticket_key(key) -> true | nil, message, code (servers): the 64-byte
 * master key sessions encrypt their tickets with; servers sharing it
 * resume each other's sessions. */
static int context_ticket_key(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	gnutls_datum_t d = luatls_checkdatum(L, 2), copy;
	if (!c->server)
		return luaL_error(L, "ticket_key: servers only");
	if (d.size != 64)
		return luatls_fail(L, "ticket_key", "a ticket key is 64 bytes, "
				   "this one is %u (make one with luatls.new_ticket_key)",
				   d.size);
	copy.data = (unsigned char *)gnutls_malloc(d.size);
	if (copy.data == NULL)
		return luaL_error(L, "out of memory");
	memcpy(copy.data, d.data, d.size);
	copy.size = d.size;
	if (c->ticket_key.data != NULL) {
		gnutls_memset(c->ticket_key.data, 0, c->ticket_key.size);
		gnutls_free(c->ticket_key.data);
	}
	c->ticket_key = copy;
	lua_pushboolean(L, 1);
	return 1;
}

/* core.new_ticket_key() -> 64 random bytes */
static int core_new_ticket_key(lua_State *L)
{
	gnutls_datum_t k;
	int r = gnutls_session_ticket_key_generate(&k);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "ticket key");
	lua_pushlstring(L, (const char *)k.data, k.size);
	gnutls_memset(k.data, 0, k.size);
	gnutls_free(k.data);
	return 1;
}

/* core.session_times(data) -> expires, created (Unix times) of session
 * data, or nil when the data is not session data */
static int core_session_times(lua_State *L)
{
	gnutls_datum_t d = luatls_checkdatum(L, 1);
	time_t t = gnutls_db_check_entry_expire_time(&d);
	if (t <= 0) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushinteger(L, (lua_Integer)t);
	lua_pushinteger(L, (lua_Integer)gnutls_db_check_entry_time(&d));
	return 2;
}

static const luaL_Reg session_methods[] = {
	{"early_data", session_early_data},
	{"early_status", session_early_status},
	{"hello_info", session_hello_info},
	{"session_data", session_data},
	{NULL, NULL}
};

static const luaL_Reg context_methods[] = {
	{"ticket_key", context_ticket_key},
	{NULL, NULL}
};

static const luaL_Reg functions[] = {
	{"new_ticket_key", core_new_ticket_key},
	{"session_times", core_session_times},
	{NULL, NULL}
};

static void add_methods(lua_State *L, const char *mt, const luaL_Reg *l)
{
	luaL_getmetatable(L, mt);
	lua_getfield(L, -1, "__index");
	luaL_setfuncs(L, l, 0);
	lua_pop(L, 2);
}

/* After luatls_open_context and luatls_open_session. */
void luatls_open_resume(lua_State *L)
{
	add_methods(L, "luatls.Session", session_methods);
	add_methods(L, CONTEXT_MT, context_methods);
	luaL_setfuncs(L, functions, 0);
}
