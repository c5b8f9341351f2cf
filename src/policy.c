/* Facts behind luatls.policy, read from GnuTLS: the cipher suites and
 * groups it knows, what a priority string really enables (versions,
 * suites, groups, signature algorithms), and the trusted CA that issued a
 * chain's last certificate. The decisions are made in Lua. */
#include <string.h>

#include <gnutls/x509.h>

#include "internal.h"

/* Pushes "TLS1.2"-style names as GnuTLS spells them, or nil: [-0, +1] */
static void push_name(lua_State *L, const char *name)
{
	if (name != NULL)
		lua_pushstring(L, name);
	else
		lua_pushnil(L);
}

/* Pushes { id, name, kx, cipher, mac, min_version } of the suite at idx in
 * GnuTLS's table, or nothing when idx is past its end: [-0, +1|0] */
static int push_suite(lua_State *L, size_t idx)
{
	unsigned char id[2];
	gnutls_kx_algorithm_t kx;
	gnutls_cipher_algorithm_t cipher;
	gnutls_mac_algorithm_t mac;
	gnutls_protocol_t min;
	const char *name = gnutls_cipher_suite_info(idx, id, &kx, &cipher, &mac,
						    &min);
	if (name == NULL)
		return 0;
	lua_createtable(L, 0, 6);
	lua_pushinteger(L, (lua_Integer)(id[0] << 8 | id[1]));
	lua_setfield(L, -2, "id");
	lua_pushstring(L, name);
	lua_setfield(L, -2, "name");
	push_name(L, kx != GNUTLS_KX_UNKNOWN ? gnutls_kx_get_name(kx) : NULL);
	lua_setfield(L, -2, "kx");
	push_name(L, gnutls_cipher_get_name(cipher));
	lua_setfield(L, -2, "cipher");
	push_name(L, gnutls_mac_get_name(mac));
	lua_setfield(L, -2, "mac");
	push_name(L, gnutls_protocol_get_name(min));
	lua_setfield(L, -2, "min_version");
	return 1;
}

/* core.cipher_suites() -> every suite GnuTLS knows, in its table's order */
static int policy_cipher_suites(lua_State *L)
{
	size_t i;
	lua_newtable(L);
	for (i = 0; push_suite(L, i); i++)
		lua_rawseti(L, -2, (int)i + 1);
	return 1;
}

/* core.groups() -> the names of every key-exchange group GnuTLS knows */
static int policy_groups(lua_State *L)
{
	const gnutls_group_t *g = gnutls_group_list();
	int n = 0;
	lua_newtable(L);
	for (; g != NULL && *g != 0; g++) {
		push_name(L, gnutls_group_get_name(*g));
		lua_rawseti(L, -2, ++n);
	}
	return 1;
}

typedef const char *(*namer)(unsigned);

static const char *protocol_name(unsigned v) { return gnutls_protocol_get_name((gnutls_protocol_t)v); }
static const char *kx_name(unsigned v) { return gnutls_kx_get_name((gnutls_kx_algorithm_t)v); }
static const char *cipher_name(unsigned v) { return gnutls_cipher_get_name((gnutls_cipher_algorithm_t)v); }
static const char *mac_name(unsigned v) { return gnutls_mac_get_name((gnutls_mac_algorithm_t)v); }
static const char *group_name(unsigned v) { return gnutls_group_get_name((gnutls_group_t)v); }
static const char *sign_name(unsigned v) { return gnutls_sign_get_name((gnutls_sign_algorithm_t)v); }

/* Sets field key of the table at the top to the names of a priority list
 * (n < 0: an empty list). */
static void set_names(lua_State *L, const char *key, int n,
		      const unsigned *list, namer name)
{
	int i, k = 0;
	lua_createtable(L, n > 0 ? n : 0, 0);
	for (i = 0; i < n; i++) {
		const char *s = name(list[i]);
		if (s != NULL) {
			lua_pushstring(L, s);
			lua_rawseti(L, -2, ++k);
		}
	}
	lua_setfield(L, -2, key);
}

/* core.priority_info(string) -> { versions, suites = { suite, ... },
 * kx, ciphers, macs, groups, signatures } as GnuTLS reads the string, in
 * its order of preference | nil, message, code */
static int policy_priority_info(lua_State *L)
{
	const unsigned *list;
	gnutls_priority_t p;
	int i, n, r;
	if (luatls_priority_init(L, luaL_checkstring(L, 1), &p))
		return 3;
	lua_createtable(L, 0, 7);
	n = gnutls_priority_protocol_list(p, &list);
	set_names(L, "versions", n, list, protocol_name);
	n = gnutls_priority_kx_list(p, &list);
	set_names(L, "kx", n, list, kx_name);
	n = gnutls_priority_cipher_list(p, &list);
	set_names(L, "ciphers", n, list, cipher_name);
	n = gnutls_priority_mac_list(p, &list);
	set_names(L, "macs", n, list, mac_name);
	n = gnutls_priority_group_list(p, &list);
	set_names(L, "groups", n, list, group_name);
	n = gnutls_priority_sign_list(p, &list);
	set_names(L, "signatures", n, list, sign_name);
	lua_newtable(L);
	for (i = 0, n = 0;; i++) {
		unsigned idx;
		r = gnutls_priority_get_cipher_suite_index(p, (unsigned)i, &idx);
		if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (r == 0 && push_suite(L, idx))
			lua_rawseti(L, -2, ++n);
	}
	lua_setfield(L, -2, "suites");
	gnutls_priority_deinit(p);
	return 1;
}

/* core.trusted_issuer(ctx, cert) -> the trusted CA of the context that
 * issued cert, as a Certificate, or nil */
static int policy_trusted_issuer(lua_State *L)
{
	luatls_ctx *c = luatls_check_ctx(L, 1);
	gnutls_x509_crt_t crt = luatls_check_crt(L, 2), issuer = NULL;
	gnutls_x509_trust_list_t tl = NULL;
	gnutls_datum_t der = {NULL, 0};
	int r;
	gnutls_certificate_get_trust_list(c->cred, &tl);
	if (tl == NULL ||
	    gnutls_x509_trust_list_get_issuer(tl, crt, &issuer,
					      GNUTLS_TL_GET_COPY) < 0 ||
	    issuer == NULL) {
		lua_pushnil(L);
		return 1;
	}
	r = gnutls_x509_crt_export2(issuer, GNUTLS_X509_FMT_DER, &der);
	gnutls_x509_crt_deinit(issuer);
	if (r < 0) {
		lua_pushnil(L);
		return 1;
	}
	/* a Lua string holds the DER, so an error below cannot leak it */
	lua_pushlstring(L, (const char *)der.data, der.size);
	gnutls_free(der.data);
	der.data = (unsigned char *)(uintptr_t)lua_tolstring(L, -1, NULL);
	return luatls_push_certificate(L, &der);
}

static const luaL_Reg policy_functions[] = {
	{"cipher_suites", policy_cipher_suites},
	{"groups", policy_groups},
	{"priority_info", policy_priority_info},
	{"trusted_issuer", policy_trusted_issuer},
	{NULL, NULL}
};

void luatls_open_policy(lua_State *L)
{
	luaL_setfuncs(L, policy_functions, 0);
}
