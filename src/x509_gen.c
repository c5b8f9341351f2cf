/* Making certificates and CRLs: self-signed or signed by a CA key, for
 * tests, examples and small internal PKIs. The Lua layer (x509.issue,
 * x509.issue_crl) checks and completes the options; this file signs. */
#include <arpa/inet.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "internal.h"

/* Field key of the options table at i as a string, or NULL. */
static const char *opt_string(lua_State *L, int i, const char *key, size_t *len)
{
	const char *s = NULL;
	lua_getfield(L, i, key);
	if (lua_type(L, -1) == LUA_TSTRING)
		s = lua_tolstring(L, -1, len);
	else if (!lua_isnil(L, -1))
		luaL_error(L, "option '%s' must be a string", key);
	lua_pop(L, 1); /* the options table keeps it alive */
	return s;
}

static lua_Integer opt_integer(lua_State *L, int i, const char *key,
			       lua_Integer def)
{
	lua_Integer v = def;
	lua_getfield(L, i, key);
	if (!lua_isnil(L, -1)) {
		if (!lua_isnumber(L, -1))
			luaL_error(L, "option '%s' must be a number", key);
		v = (lua_Integer)lua_tonumber(L, -1);
	}
	lua_pop(L, 1);
	return v;
}

/* Calls fn for each string of the list field key: [-0, +0] */
typedef int (*each_fn)(lua_State *L, void *obj, const char *s, size_t len);

static int each_string(lua_State *L, int i, const char *key, void *obj,
		       each_fn fn)
{
	int k, n, r = 0;
	lua_getfield(L, i, key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1))
		luaL_error(L, "option '%s' must be a list of strings", key);
	n = (int)lua_rawlen(L, -1);
	for (k = 1; k <= n && r >= 0; k++) {
		size_t len;
		const char *s;
		lua_rawgeti(L, -1, k);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "option '%s' must be a list of strings", key);
		s = lua_tolstring(L, -1, &len);
		r = fn(L, obj, s, len);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return r;
}

static int add_dns(lua_State *L, void *crt, const char *s, size_t len)
{
	(void)L;
	return gnutls_x509_crt_set_subject_alt_name(
		(gnutls_x509_crt_t)crt, GNUTLS_SAN_DNSNAME, s, (unsigned)len,
		GNUTLS_FSAN_APPEND);
}

static int add_email(lua_State *L, void *crt, const char *s, size_t len)
{
	(void)L;
	return gnutls_x509_crt_set_subject_alt_name(
		(gnutls_x509_crt_t)crt, GNUTLS_SAN_RFC822NAME, s, (unsigned)len,
		GNUTLS_FSAN_APPEND);
}

static int add_uri(lua_State *L, void *crt, const char *s, size_t len)
{
	(void)L;
	return gnutls_x509_crt_set_subject_alt_name(
		(gnutls_x509_crt_t)crt, GNUTLS_SAN_URI, s, (unsigned)len,
		GNUTLS_FSAN_APPEND);
}

static int add_ip(lua_State *L, void *crt, const char *s, size_t len)
{
	unsigned char buf[16];
	unsigned size = 4;
	(void)len;
	if (inet_pton(AF_INET, s, buf) != 1) {
		size = 16;
		if (inet_pton(AF_INET6, s, buf) != 1)
			luaL_error(L, "'%s' is not an IP address", s);
	}
	return gnutls_x509_crt_set_subject_alt_name(
		(gnutls_x509_crt_t)crt, GNUTLS_SAN_IPADDRESS, buf, size,
		GNUTLS_FSAN_APPEND);
}

static int add_crl_dp(lua_State *L, void *crt, const char *s, size_t len)
{
	(void)L;
	return gnutls_x509_crt_set_crl_dist_points2(
		(gnutls_x509_crt_t)crt, GNUTLS_SAN_URI, s, (unsigned)len, 0);
}

static int add_aia(gnutls_x509_crt_t crt, int what, const char *s, size_t len)
{
	gnutls_datum_t d;
	d.data = (unsigned char *)(uintptr_t)s;
	d.size = (unsigned)len;
	return gnutls_x509_crt_set_authority_info_access(crt, what, &d);
}

static int add_ocsp(lua_State *L, void *crt, const char *s, size_t len)
{
	(void)L;
	return add_aia((gnutls_x509_crt_t)crt, GNUTLS_IA_OCSP_URI, s, len);
}

static int add_ca_issuers(lua_State *L, void *crt, const char *s, size_t len)
{
	(void)L;
	return add_aia((gnutls_x509_crt_t)crt, GNUTLS_IA_CAISSUERS_URI, s, len);
}

static int add_purpose(lua_State *L, void *crt, const char *s, size_t len)
{
	int i;
	(void)len;
	for (i = 0; luatls_purposes[i].name != NULL; i++)
		if (strcmp(s, luatls_purposes[i].name) == 0) {
			s = luatls_purposes[i].oid;
			break;
		}
	if (luatls_purposes[i].name == NULL && strspn(s, "0123456789.") != len)
		luaL_error(L, "unknown extended key usage '%s'", s);
	return gnutls_x509_crt_set_key_purpose_oid((gnutls_x509_crt_t)crt, s, 0);
}

static int add_usage(lua_State *L, void *bits, const char *s, size_t len)
{
	int i;
	(void)len;
	for (i = 0; luatls_key_usages[i].name != NULL; i++)
		if (strcmp(s, luatls_key_usages[i].name) == 0) {
			*(unsigned *)bits |= luatls_key_usages[i].flag;
			return 0;
		}
	return luaL_error(L, "unknown key usage '%s'", s);
}

/* Adds opts.extensions = { {oid=, value=DER, critical=b}, ... } */
static int add_extensions(lua_State *L, int i, gnutls_x509_crt_t crt)
{
	int k, n, r = 0;
	lua_getfield(L, i, "extensions");
	if (!lua_istable(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	n = (int)lua_rawlen(L, -1);
	for (k = 1; k <= n && r >= 0; k++) {
		const char *oid, *value;
		size_t len = 0;
		int critical;
		lua_rawgeti(L, -1, k);
		if (!lua_istable(L, -1))
			luaL_error(L, "extensions[%d] must be a table", k);
		oid = opt_string(L, -1, "oid", NULL);
		value = opt_string(L, -1, "value", &len);
		if (oid == NULL || value == NULL)
			luaL_error(L, "extensions[%d] needs oid and value", k);
		lua_getfield(L, -1, "critical");
		critical = lua_toboolean(L, -1);
		lua_pop(L, 1);
		r = gnutls_x509_crt_set_extension_by_oid(crt, oid, value, len,
							 (unsigned)critical);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return r;
}

static gnutls_digest_algorithm_t opt_digest(lua_State *L, int i)
{
	const char *name = opt_string(L, i, "hash", NULL);
	gnutls_digest_algorithm_t dig;
	if (name == NULL)
		return GNUTLS_DIG_UNKNOWN;
	dig = gnutls_digest_get_id(name);
	if (dig == GNUTLS_DIG_UNKNOWN)
		luaL_error(L, "unknown hash '%s'", name);
	return dig;
}

/* Signs with key (borrowed), as issuer. */
static int sign_crt(gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer,
		    gnutls_x509_privkey_t key, gnutls_digest_algorithm_t dig)
{
	gnutls_privkey_t pk;
	int r = gnutls_privkey_init(&pk);
	if (r < 0)
		return r;
	r = gnutls_privkey_import_x509(pk, key, 0);
	if (r == 0)
		r = gnutls_x509_crt_privkey_sign(crt, issuer, pk, dig, 0);
	gnutls_privkey_deinit(pk);
	return r;
}

static int sign_crl(gnutls_x509_crl_t crl, gnutls_x509_crt_t issuer,
		    gnutls_x509_privkey_t key, gnutls_digest_algorithm_t dig)
{
	gnutls_privkey_t pk;
	int r = gnutls_privkey_init(&pk);
	if (r < 0)
		return r;
	r = gnutls_privkey_import_x509(pk, key, 0);
	if (r == 0)
		r = gnutls_x509_crl_privkey_sign(crl, issuer, pk, dig, 0);
	gnutls_privkey_deinit(pk);
	return r;
}

/* A freshly signed certificate keeps stale parsed fields (names, SANs) in
 * GnuTLS; a round trip through DER gives an object like a loaded one. */
static int reload_crt(gnutls_x509_crt_t *crt)
{
	gnutls_datum_t der;
	int r = gnutls_x509_crt_export2(*crt, GNUTLS_X509_FMT_DER, &der);
	if (r < 0)
		return r;
	gnutls_x509_crt_deinit(*crt);
	*crt = NULL;
	r = gnutls_x509_crt_init(crt);
	if (r == 0)
		r = gnutls_x509_crt_import(*crt, &der, GNUTLS_X509_FMT_DER);
	gnutls_free(der.data);
	return r;
}

static int reload_crl(gnutls_x509_crl_t *crl)
{
	gnutls_datum_t der;
	int r = gnutls_x509_crl_export2(*crl, GNUTLS_X509_FMT_DER, &der);
	if (r < 0)
		return r;
	gnutls_x509_crl_deinit(*crl);
	*crl = NULL;
	r = gnutls_x509_crl_init(crl);
	if (r == 0)
		r = gnutls_x509_crl_import(*crl, &der, GNUTLS_X509_FMT_DER);
	gnutls_free(der.data);
	return r;
}

static gnutls_x509_crt_t opt_crt(lua_State *L, int i, const char *key)
{
	gnutls_x509_crt_t crt = NULL;
	lua_getfield(L, i, key);
	if (!lua_isnil(L, -1))
		crt = luatls_check_crt(L, -1);
	lua_pop(L, 1);
	return crt;
}

static gnutls_x509_privkey_t opt_key(lua_State *L, int i, const char *key)
{
	gnutls_x509_privkey_t k = NULL;
	lua_getfield(L, i, key);
	if (!lua_isnil(L, -1))
		k = luatls_check_key(L, -1);
	lua_pop(L, 1);
	return k;
}

/* Sets the names, validity and key of a new certificate. */
static int set_basics(lua_State *L, gnutls_x509_crt_t crt,
		      gnutls_x509_privkey_t key, const char **where)
{
	size_t len = 0;
	const char *subject = opt_string(L, 1, "subject", NULL);
	const char *serial = opt_string(L, 1, "serial", &len);
	int r = gnutls_x509_crt_set_version(crt, 3);
	if (r == 0 && subject != NULL && subject[0] != 0) {
		*where = "subject";
		r = gnutls_x509_crt_set_dn(crt, subject, NULL);
	}
	if (r == 0 && serial != NULL) {
		*where = "serial";
		r = gnutls_x509_crt_set_serial(crt, serial, len);
	}
	if (r == 0) {
		*where = "validity";
		r = gnutls_x509_crt_set_activation_time(
			crt, (time_t)opt_integer(L, 1, "not_before", 0));
	}
	if (r == 0)
		r = gnutls_x509_crt_set_expiration_time(
			crt, (time_t)opt_integer(L, 1, "not_after", 0));
	if (r == 0) {
		*where = "key";
		r = gnutls_x509_crt_set_key(crt, key);
	}
	return r;
}

/* Sets the extensions the options ask for. */
static int set_extensions(lua_State *L, gnutls_x509_crt_t crt,
			  gnutls_x509_crt_t issuer, const char **where)
{
	unsigned usage = 0;
	unsigned char id[64];
	size_t size = sizeof id;
	int r = 0, ca;
	lua_getfield(L, 1, "ca");
	ca = lua_toboolean(L, -1);
	lua_pop(L, 1);
	*where = "basic constraints";
	r = gnutls_x509_crt_set_basic_constraints(
		crt, (unsigned)ca, ca ? (int)opt_integer(L, 1, "path_len", -1) : -1);
	lua_getfield(L, 1, "key_usage");
	if (r == 0 && !lua_isnil(L, -1)) {
		lua_pop(L, 1);
		*where = "key usage";
		each_string(L, 1, "key_usage", &usage, add_usage);
		r = gnutls_x509_crt_set_key_usage(crt, usage);
	} else {
		lua_pop(L, 1);
	}
	*where = "extended key usage";
	if (r == 0)
		r = each_string(L, 1, "extended_key_usage", crt, add_purpose);
	*where = "subject alternative names";
	if (r == 0)
		r = each_string(L, 1, "dns", crt, add_dns);
	if (r == 0)
		r = each_string(L, 1, "ip", crt, add_ip);
	if (r == 0)
		r = each_string(L, 1, "email", crt, add_email);
	if (r == 0)
		r = each_string(L, 1, "uri", crt, add_uri);
	*where = "CRL distribution points";
	if (r == 0)
		r = each_string(L, 1, "crl_distribution_points", crt, add_crl_dp);
	*where = "authority information access";
	if (r == 0)
		r = each_string(L, 1, "ocsp", crt, add_ocsp);
	if (r == 0)
		r = each_string(L, 1, "ca_issuers", crt, add_ca_issuers);
	*where = "key identifiers";
	if (r == 0)
		r = gnutls_x509_crt_get_key_id(crt, 0, id, &size);
	if (r == 0)
		r = gnutls_x509_crt_set_subject_key_id(crt, id, size);
	if (r == 0 && issuer != NULL) {
		unsigned critical;
		size = sizeof id;
		if (gnutls_x509_crt_get_subject_key_id(issuer, id, &size,
						       &critical) < 0) {
			size = sizeof id;
			r = gnutls_x509_crt_get_key_id(issuer, 0, id, &size);
		}
		if (r == 0)
			r = gnutls_x509_crt_set_authority_key_id(crt, id, size);
	}
	*where = "extensions";
	if (r == 0)
		r = add_extensions(L, 1, crt);
	return r;
}

/* core.issue{ key=, subject=, serial=bytes, not_before=, not_after=, ca=,
 * path_len=, key_usage={names}, extended_key_usage={names|oids}, dns=,
 * ip=, email=, uri=, crl_distribution_points=, ocsp=, ca_issuers=,
 * extensions=, issuer=Certificate, issuer_key=PrivateKey, hash= }
 * -> Certificate | nil, message, code */
static int gen_issue(lua_State *L)
{
	gnutls_x509_privkey_t key, signer;
	gnutls_x509_crt_t issuer, *crt;
	gnutls_digest_algorithm_t dig;
	const char *where = "certificate";
	int r;
	luaL_checktype(L, 1, LUA_TTABLE);
	key = opt_key(L, 1, "key");
	luaL_argcheck(L, key != NULL, 1, "option 'key' is required");
	issuer = opt_crt(L, 1, "issuer");
	signer = opt_key(L, 1, "issuer_key");
	luaL_argcheck(L, (issuer == NULL) == (signer == NULL), 1,
		      "options 'issuer' and 'issuer_key' go together");
	dig = opt_digest(L, 1);
	lua_settop(L, 1);
	crt = luatls_new_crt(L);
	r = gnutls_x509_crt_init(crt);
	if (r == 0)
		r = set_basics(L, *crt, key, &where);
	if (r == 0)
		r = set_extensions(L, *crt, issuer, &where);
	if (r == 0) {
		where = "signature";
		r = sign_crt(*crt, issuer ? issuer : *crt, signer ? signer : key,
			     dig);
	}
	if (r == 0)
		r = reload_crt(crt);
	if (r < 0)
		return luatls_fail_gnutls(L, r, where);
	return 1;
}

/* core.issue_crl{ issuer=, issuer_key=, revoked = {{serial=bytes, time=},
 * ...}, this_update=, next_update=, number=bytes, hash= }
 * -> CRL | nil, message, code */
static int gen_issue_crl(lua_State *L)
{
	gnutls_x509_crt_t issuer;
	gnutls_x509_privkey_t signer;
	gnutls_x509_crl_t *crl;
	gnutls_digest_algorithm_t dig;
	const char *number, *where = "CRL";
	size_t nlen = 0, size;
	unsigned char id[64];
	unsigned critical;
	int r, k, n;
	luaL_checktype(L, 1, LUA_TTABLE);
	issuer = opt_crt(L, 1, "issuer");
	signer = opt_key(L, 1, "issuer_key");
	luaL_argcheck(L, issuer != NULL && signer != NULL, 1,
		      "options 'issuer' and 'issuer_key' are required");
	dig = opt_digest(L, 1);
	number = opt_string(L, 1, "number", &nlen);
	lua_settop(L, 1);
	crl = luatls_new_crl(L);
	r = gnutls_x509_crl_init(crl);
	if (r == 0)
		r = gnutls_x509_crl_set_version(*crl, 2);
	if (r == 0)
		r = gnutls_x509_crl_set_this_update(
			*crl, (time_t)opt_integer(L, 1, "this_update", 0));
	if (r == 0)
		r = gnutls_x509_crl_set_next_update(
			*crl, (time_t)opt_integer(L, 1, "next_update", 0));
	lua_getfield(L, 1, "revoked");
	n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
	for (k = 1; k <= n && r == 0; k++) {
		const char *serial;
		size_t len = 0;
		lua_rawgeti(L, -1, k);
		if (!lua_istable(L, -1))
			luaL_error(L, "revoked[%d] must be a table", k);
		serial = opt_string(L, -1, "serial", &len);
		if (serial == NULL)
			luaL_error(L, "revoked[%d] needs a serial", k);
		where = "revoked serial";
		r = gnutls_x509_crl_set_crt_serial(
			*crl, serial, len, (time_t)opt_integer(L, -1, "time", 0));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	size = sizeof id;
	if (r == 0) {
		where = "authority key id";
		if (gnutls_x509_crt_get_subject_key_id(issuer, id, &size,
						       &critical) < 0) {
			size = sizeof id;
			r = gnutls_x509_crt_get_key_id(issuer, 0, id, &size);
		}
		if (r == 0)
			r = gnutls_x509_crl_set_authority_key_id(*crl, id, size);
	}
	if (r == 0 && number != NULL) {
		where = "CRL number";
		r = gnutls_x509_crl_set_number(*crl, number, nlen);
	}
	if (r == 0) {
		where = "signature";
		r = sign_crl(*crl, issuer, signer, dig);
	}
	if (r == 0)
		r = reload_crl(crl);
	if (r < 0)
		return luatls_fail_gnutls(L, r, where);
	return 1;
}

/* core.random_bytes(n) -> n random bytes (serial numbers) */
static int gen_random_bytes(lua_State *L)
{
	unsigned char buf[64];
	lua_Integer n = luaL_checkinteger(L, 1);
	int r;
	luaL_argcheck(L, n > 0 && n <= (lua_Integer)sizeof buf, 1, "1 to 64 bytes");
	r = gnutls_rnd(GNUTLS_RND_NONCE, buf, (size_t)n);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "random");
	lua_pushlstring(L, (const char *)buf, (size_t)n);
	return 1;
}

static const luaL_Reg gen_functions[] = {
	{"issue", gen_issue},
	{"issue_crl", gen_issue_crl},
	{"random_bytes", gen_random_bytes},
	{NULL, NULL}
};

void luatls_open_x509_gen(lua_State *L)
{
	luaL_setfuncs(L, gen_functions, 0);
}
