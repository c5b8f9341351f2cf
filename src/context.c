/* luatls.Context: certificates and keys, trust, priority, ALPN, client-auth
 * mode and the session-ticket key, shared by every session made from it. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CONTEXT_MT "luatls.Context"

/* Default priority: TLS 1.2 minimum, ECDHE and AEAD only (Debian's NORMAL
 * alone still enables TLS 1.0/1.1 and CBC suites). */
#define DEFAULT_PRIORITY                                                   \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:" \
	"+ECDHE-RSA:-CIPHER-ALL:+AES-128-GCM:+CHACHA20-POLY1305:"          \
	"+AES-256-GCM:-MAC-ALL:+AEAD:-GROUP-ALL:+GROUP-X25519:"            \
	"+GROUP-SECP256R1:+GROUP-X448:+GROUP-SECP384R1:+GROUP-SECP521R1:"  \
	"-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:-SIGN-DSA-SHA1:-SIGN-RSA-SHA224:"  \
	"-SIGN-ECDSA-SHA224"

typedef struct {
	luatls_ctx *c;
} Context;

void luatls_ctx_ref(luatls_ctx *c)
{
	c->refs++;
}

void luatls_ctx_unref(luatls_ctx *c)
{
	unsigned i;
	if (--c->refs > 0)
		return;
	if (c->cred != NULL)
		gnutls_certificate_free_credentials(c->cred);
	if (c->prio != NULL)
		gnutls_priority_deinit(c->prio);
	for (i = 0; i < c->nalpn; i++)
		free(c->alpn[i].data);
	free(c->alpn);
	if (c->ticket_key.data != NULL)
		gnutls_memset(c->ticket_key.data, 0, c->ticket_key.size);
	gnutls_free(c->ticket_key.data);
	if (c->antireplay != NULL)
		gnutls_anti_replay_deinit(c->antireplay);
	free(c);
}

luatls_ctx *luatls_check_ctx(lua_State *L, int i)
{
	Context *ctx = (Context *)luatls_checkudata(L, i, CONTEXT_MT);
	if (ctx->c == NULL)
		luaL_error(L, "context is closed");
	return ctx->c;
}

static gnutls_datum_t datum_of(lua_State *L, int i)
{
	size_t len;
	gnutls_datum_t d;
	d.data = (unsigned char *)(uintptr_t)luaL_checklstring(L, i, &len);
	d.size = (unsigned)len;
	return d;
}

static gnutls_x509_crt_fmt_t format_of(const gnutls_datum_t *d)
{
	return luatls_is_pem(d) ? GNUTLS_X509_FMT_PEM : GNUTLS_X509_FMT_DER;
}

/* core.context("client"|"server") -> Context */
static int context_new(lua_State *L)
{
	static const char *const roles[] = {"client", "server", NULL};
	int server = luaL_checkoption(L, 1, NULL, roles);
	Context *ctx = (Context *)luatls_newobject(L, sizeof *ctx, CONTEXT_MT);
	const char *where;
	int r;

	ctx->c = (luatls_ctx *)calloc(1, sizeof *ctx->c);
	if (ctx->c == NULL)
		return luaL_error(L, "out of memory");
	ctx->c->refs = 1;
	ctx->c->server = server;
	ctx->c->client_auth = GNUTLS_CERT_IGNORE;
	r = gnutls_certificate_allocate_credentials(&ctx->c->cred);
	if (r == 0)
		r = gnutls_priority_init2(&ctx->c->prio, DEFAULT_PRIORITY,
					  &where, 0);
	if (r == 0 && server)
		r = gnutls_session_ticket_key_generate(&ctx->c->ticket_key);
	if (r < 0)
		return luaL_error(L, "cannot create context: %s",
				  gnutls_strerror(r));
	/* Certificates are checked in the handshake; flags stay strict. */
	gnutls_certificate_set_verify_flags(ctx->c->cred, 0);
	return 1;
}

/* ctx:add_keypair(cert_data, key_data) -> index | nil, message, code.
 * cert_data may hold a chain (leaf first), PEM or DER; key PEM or DER. */
static int context_add_keypair(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	gnutls_datum_t cert = datum_of(L, 2), key = datum_of(L, 3);
	int r = gnutls_certificate_set_x509_key_mem2(
		c->cred, &cert, &key, format_of(&cert), NULL, 0);
	if (r < 0) {
		if (r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
			return luatls_fail(L, "GNUTLS_E_CERTIFICATE_KEY_MISMATCH",
					   "the private key does not belong to "
					   "the certificate");
		return luatls_fail_gnutls(L, r, "cannot load certificate and key");
	}
	c->keypairs++;
	lua_pushinteger(L, r + 1);
	return 1;
}

static int trust_result(lua_State *L, luatls_ctx *c, int r, const char *what)
{
	if (r < 0)
		return luatls_fail_gnutls(L, r, what);
	c->trusted += r;
	lua_pushinteger(L, r);
	return 1;
}

/* ctx:trust_system() -> number of CAs | nil, message, code */
static int context_trust_system(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	return trust_result(L, c, gnutls_certificate_set_x509_system_trust(c->cred),
			    "cannot load the system trust store");
}

/* ctx:trust_pem(data) -> number of CAs | nil, message, code */
static int context_trust_pem(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	gnutls_datum_t d = datum_of(L, 2);
	int r = gnutls_certificate_set_x509_trust_mem(c->cred, &d, format_of(&d));
	if (r == 0)
		return luatls_fail(L, "GNUTLS_E_NO_CERTIFICATE_FOUND",
				   "no CA certificate found in the trust data");
	return trust_result(L, c, r, "cannot load trusted certificates");
}

/* ctx:trust_dir(path) -> number of CAs | nil, message, code */
static int context_trust_dir(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	const char *path = luaL_checkstring(L, 2);
	int r = gnutls_certificate_set_x509_trust_dir(c->cred, path,
						      GNUTLS_X509_FMT_PEM);
	if (r == 0)
		return luatls_fail(L, "GNUTLS_E_NO_CERTIFICATE_FOUND",
				   "no CA certificate found in directory %s",
				   path);
	return trust_result(L, c, r, "cannot load the CA directory");
}

/* ctx:crl_pem(data) -> number of CRLs | nil, message, code */
static int context_crl_pem(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	gnutls_datum_t d = datum_of(L, 2);
	int r = gnutls_certificate_set_x509_crl_mem(c->cred, &d, format_of(&d));
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot load CRL");
	lua_pushinteger(L, r);
	return 1;
}

/* ctx:priority(string) -> true | nil, message, code */
static int context_priority(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	gnutls_priority_t p;
	if (luatls_priority_init(L, luaL_checkstring(L, 2), &p))
		return 3;
	gnutls_priority_deinit(c->prio);
	c->prio = p;
	lua_pushboolean(L, 1);
	return 1;
}

/* ctx:alpn({ "h2", "http/1.1" }) sets the protocols offered/accepted */
static int context_alpn(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	unsigned i, n;
	gnutls_datum_t *list;
	luaL_checktype(L, 2, LUA_TTABLE);
	n = (unsigned)lua_rawlen(L, 2);
	for (i = 1; i <= n; i++) {
		size_t len;
		lua_rawgeti(L, 2, (int)i);
		if (lua_type(L, -1) != LUA_TSTRING)
			return luaL_argerror(L, 2, "ALPN protocols must be strings");
		lua_tolstring(L, -1, &len);
		if (len == 0 || len > 255)
			return luaL_argerror(L, 2, "an ALPN protocol is 1 to 255 bytes");
		lua_pop(L, 1);
	}
	list = (gnutls_datum_t *)calloc(n ? n : 1, sizeof *list);
	if (list == NULL)
		return luaL_error(L, "out of memory");
	for (i = 0; i < n; i++) {
		size_t len;
		const char *s;
		lua_rawgeti(L, 2, (int)i + 1);
		s = lua_tolstring(L, -1, &len);
		list[i].data = (unsigned char *)malloc(len);
		if (list[i].data != NULL)
			memcpy(list[i].data, s, len);
		list[i].size = (unsigned)len;
		lua_pop(L, 1);
	}
	for (i = 0; i < c->nalpn; i++)
		free(c->alpn[i].data);
	free(c->alpn);
	c->alpn = list;
	c->nalpn = n;
	for (i = 0; i < n; i++)
		if (list[i].data == NULL)
			return luaL_error(L, "out of memory");
	return 0;
}

/* ctx:client_auth("none"|"request"|"require") — servers only */
static int context_client_auth(lua_State *L)
{
	static const char *const modes[] = {"none", "request", "require", NULL};
	static const gnutls_certificate_request_t values[] = {
		GNUTLS_CERT_IGNORE, GNUTLS_CERT_REQUEST, GNUTLS_CERT_REQUIRE};
	luatls_ctx *c = luatls_check_ctx(L, 1);
	c->client_auth = values[luaL_checkoption(L, 2, NULL, modes)];
	return 0;
}

/* ctx:info() -> { role, keypairs, trusted, alpn } */
static int context_info(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	unsigned i;
	lua_createtable(L, 0, 4);
	lua_pushstring(L, c->server ? "server" : "client");
	lua_setfield(L, -2, "role");
	lua_pushinteger(L, c->keypairs);
	lua_setfield(L, -2, "keypairs");
	lua_pushinteger(L, c->trusted);
	lua_setfield(L, -2, "trusted");
	lua_createtable(L, (int)c->nalpn, 0);
	for (i = 0; i < c->nalpn; i++) {
		lua_pushlstring(L, (const char *)c->alpn[i].data, c->alpn[i].size);
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "alpn");
	return 1;
}

/* ctx:close(): drops this object's reference; sessions keep theirs. */
static int context_close(lua_State *L)
{
	Context *ctx = (Context *)luatls_checkudata(L, 1, CONTEXT_MT);
	if (ctx->c != NULL) {
		luatls_ctx_unref(ctx->c);
		ctx->c = NULL;
	}
	return 0;
}

static int context_tostring(lua_State *L)
{
	Context *ctx = (Context *)luatls_checkudata(L, 1, CONTEXT_MT);
	if (ctx->c == NULL)
		lua_pushfstring(L, "luatls.Context (closed): %p", (void *)ctx);
	else
		lua_pushfstring(L, "luatls.Context (%s, %d keypairs): %p",
				ctx->c->server ? "server" : "client",
				ctx->c->keypairs, (void *)ctx);
	return 1;
}

static const luaL_Reg context_methods[] = {
	{"add_keypair", context_add_keypair},
	{"alpn", context_alpn},
	{"client_auth", context_client_auth},
	{"close", context_close},
	{"crl_pem", context_crl_pem},
	{"info", context_info},
	{"priority", context_priority},
	{"trust_dir", context_trust_dir},
	{"trust_pem", context_trust_pem},
	{"trust_system", context_trust_system},
	{NULL, NULL}
};

static const luaL_Reg context_meta[] = {
	{"__close", context_close},
	{"__gc", context_close},
	{"__tostring", context_tostring},
	{NULL, NULL}
};

void luatls_open_context(lua_State *L)
{
	luatls_newclass(L, CONTEXT_MT, context_methods, context_meta);
	lua_pushcfunction(L, context_new);
	lua_setfield(L, -2, "context");
	lua_pushstring(L, DEFAULT_PRIORITY);
	lua_setfield(L, -2, "default_priority");
}
