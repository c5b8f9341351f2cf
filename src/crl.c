/* luatls.CRL: an owned certificate revocation list — who issued it, when,
 * and which serial numbers it revokes. */
#include <string.h>
#include <time.h>

#include <gnutls/x509.h>

#include "internal.h"

#define CRL_MT "luatls.CRL"

typedef struct {
	gnutls_x509_crl_t crl;
} CRL;

gnutls_x509_crl_t luatls_check_crl(lua_State *L, int i)
{
	CRL *c = (CRL *)luatls_checkudata(L, i, CRL_MT);
	if (c->crl == NULL)
		luaL_error(L, "CRL is closed");
	return c->crl;
}

gnutls_x509_crl_t *luatls_new_crl(lua_State *L)
{
	CRL *c = (CRL *)luatls_newobject(L, sizeof *c, CRL_MT);
	return &c->crl;
}

/* core.load_crl(pem_or_der) -> CRL | nil, message, code */
static int crl_load(lua_State *L)
{
	gnutls_datum_t d = luatls_checkdatum(L, 1);
	gnutls_x509_crl_t *crl = luatls_new_crl(L);
	int r = gnutls_x509_crl_init(crl);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "CRL");
	r = gnutls_x509_crl_import(*crl, &d,
				   luatls_is_pem(&d) ? GNUTLS_X509_FMT_PEM
						     : GNUTLS_X509_FMT_DER);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot parse CRL");
	return 1;
}

/* crl:issuer() -> RFC 4514 string */
static int crl_issuer(lua_State *L)
{
	gnutls_datum_t d;
	int r = gnutls_x509_crl_get_issuer_dn3(luatls_check_crl(L, 1), &d, 0);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "issuer");
	lua_pushlstring(L, (const char *)d.data, d.size);
	gnutls_free(d.data);
	return 1;
}

/* crl:this_update() / crl:next_update() -> Unix time (next_update nil
 * when absent) */
static int crl_this_update(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)gnutls_x509_crl_get_this_update(
				   luatls_check_crl(L, 1)));
	return 1;
}

static int crl_next_update(lua_State *L)
{
	time_t t = gnutls_x509_crl_get_next_update(luatls_check_crl(L, 1));
	if (t == (time_t)-1)
		return 0;
	lua_pushinteger(L, (lua_Integer)t);
	return 1;
}

/* crl:number() -> hex | nil */
static int crl_number(lua_State *L)
{
	unsigned char buf[64];
	size_t size = sizeof buf;
	unsigned critical;
	if (gnutls_x509_crl_get_number(luatls_check_crl(L, 1), buf, &size,
				       &critical) < 0)
		return 0;
	luatls_push_hex(L, buf, size);
	return 1;
}

/* crl:revoked() -> { {serial = hex, time = t}, ... } */
static int crl_revoked(lua_State *L)
{
	gnutls_x509_crl_t crl = luatls_check_crl(L, 1);
	int i, n = gnutls_x509_crl_get_crt_count(crl);
	lua_createtable(L, n > 0 ? n : 0, 0);
	for (i = 0; i < n; i++) {
		unsigned char serial[64];
		size_t size = sizeof serial;
		time_t t;
		if (gnutls_x509_crl_get_crt_serial(crl, (unsigned)i, serial,
						   &size, &t) < 0)
			break;
		lua_createtable(L, 0, 2);
		luatls_push_hex(L, serial, size);
		lua_setfield(L, -2, "serial");
		lua_pushinteger(L, (lua_Integer)t);
		lua_setfield(L, -2, "time");
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* crl:is_revoked(cert) -> whether the CRL lists cert's serial (the caller
 * checks that the CRL comes from cert's issuer) */
static int crl_is_revoked(lua_State *L)
{
	gnutls_x509_crl_t crl = luatls_check_crl(L, 1);
	gnutls_x509_crt_t crt = luatls_check_crt(L, 2);
	unsigned char want[64];
	size_t wsize = sizeof want;
	int i, n = gnutls_x509_crl_get_crt_count(crl);
	if (gnutls_x509_crt_get_serial(crt, want, &wsize) < 0)
		n = 0;
	for (i = 0; i < n; i++) {
		unsigned char serial[64];
		size_t size = sizeof serial;
		time_t t;
		if (gnutls_x509_crl_get_crt_serial(crl, (unsigned)i, serial,
						   &size, &t) == 0 &&
		    size == wsize && memcmp(serial, want, size) == 0) {
			lua_pushboolean(L, 1);
			lua_pushinteger(L, (lua_Integer)t);
			return 2;
		}
	}
	lua_pushboolean(L, 0);
	return 1;
}

/* crl:signed_by(cert) -> whether cert issued this CRL and its signature
 * verifies */
static int crl_signed_by(lua_State *L)
{
	gnutls_x509_crl_t crl = luatls_check_crl(L, 1);
	gnutls_x509_crt_t crt = luatls_check_crt(L, 2);
	unsigned status = 0;
	int r = gnutls_x509_crl_verify(crl, &crt, 1,
				       GNUTLS_VERIFY_DISABLE_TIME_CHECKS, &status);
	lua_pushboolean(L, r == 0 && status == 0);
	return 1;
}

static int export_as(lua_State *L, gnutls_x509_crt_fmt_t fmt)
{
	gnutls_datum_t d;
	int r = gnutls_x509_crl_export2(luatls_check_crl(L, 1), fmt, &d);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "export");
	lua_pushlstring(L, (const char *)d.data, d.size);
	gnutls_free(d.data);
	return 1;
}

/* crl:pem() / crl:der() */
static int crl_pem(lua_State *L)
{
	return export_as(L, GNUTLS_X509_FMT_PEM);
}

static int crl_der(lua_State *L)
{
	return export_as(L, GNUTLS_X509_FMT_DER);
}

/* "luatls.CRL: ISSUER (N revoked, next update 2025-01-01)" */
static int crl_tostring(lua_State *L)
{
	CRL *c = (CRL *)luatls_checkudata(L, 1, CRL_MT);
	gnutls_datum_t d;
	char next[16] = "none";
	struct tm tm;
	time_t t;
	if (c->crl == NULL) {
		lua_pushfstring(L, "luatls.CRL (closed): %p", (void *)c);
		return 1;
	}
	t = gnutls_x509_crl_get_next_update(c->crl);
	if (t != (time_t)-1 && gmtime_r(&t, &tm) != NULL)
		strftime(next, sizeof next, "%Y-%m-%d", &tm);
	if (gnutls_x509_crl_get_issuer_dn3(c->crl, &d, 0) < 0) {
		d.data = NULL;
		d.size = 0;
	}
	lua_pushliteral(L, "luatls.CRL: ");
	lua_pushlstring(L, d.data ? (const char *)d.data : "?", d.data ? d.size : 1);
	gnutls_free(d.data);
	lua_pushfstring(L, " (%d revoked, next update %s)",
			gnutls_x509_crl_get_crt_count(c->crl), next);
	lua_concat(L, 3);
	return 1;
}

static int crl_close(lua_State *L)
{
	CRL *c = (CRL *)luatls_checkudata(L, 1, CRL_MT);
	if (c->crl != NULL) {
		gnutls_x509_crl_deinit(c->crl);
		c->crl = NULL;
	}
	return 0;
}

static const luaL_Reg crl_methods[] = {
	{"close", crl_close},
	{"der", crl_der},
	{"is_revoked", crl_is_revoked},
	{"issuer", crl_issuer},
	{"next_update", crl_next_update},
	{"number", crl_number},
	{"pem", crl_pem},
	{"revoked", crl_revoked},
	{"signed_by", crl_signed_by},
	{"this_update", crl_this_update},
	{NULL, NULL}
};

static const luaL_Reg crl_meta[] = {
	{"__close", crl_close},
	{"__gc", crl_close},
	{"__tostring", crl_tostring},
	{NULL, NULL}
};

static const luaL_Reg crl_functions[] = {
	{"load_crl", crl_load},
	{NULL, NULL}
};

void luatls_open_crl(lua_State *L)
{
	luatls_newclass(L, CRL_MT, crl_methods, crl_meta);
	luaL_setfuncs(L, crl_functions, 0);
}
