/* luatls.Store: a trust store (CAs and CRLs) and chain verification
 * outside a handshake, reporting what GnuTLS found for each certificate
 * and the path it built. */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include <gnutls/x509.h>

#include "internal.h"

#define STORE_MT "luatls.Store"
#define MAX_CHAIN 16
#define MAX_CALLS 64

typedef struct {
	gnutls_x509_trust_list_t list;
	int cas, crls;
} Store;

static Store *check_store(lua_State *L, int i)
{
	Store *st = (Store *)luatls_checkudata(L, i, STORE_MT);
	if (st->list == NULL)
		luaL_error(L, "store is closed");
	return st;
}

/* core.store() -> an empty Store */
static int store_new(lua_State *L)
{
	Store *st = (Store *)luatls_newobject(L, sizeof *st, STORE_MT);
	int r = gnutls_x509_trust_list_init(&st->list, 0);
	if (r < 0) {
		st->list = NULL;
		return luatls_fail_gnutls(L, r, "trust store");
	}
	return 1;
}

static int added(lua_State *L, int *count, int r, const char *what)
{
	if (r < 0)
		return luatls_fail_gnutls(L, r, what);
	*count += r;
	lua_pushinteger(L, r);
	return 1;
}

/* store:add_system() -> number of CAs added | nil, message, code */
static int store_add_system(lua_State *L)
{
	Store *st = check_store(L, 1);
	int r = gnutls_x509_trust_list_add_system_trust(st->list, 0, 0);
	if (r == 0)
		return luatls_fail(L, "GNUTLS_E_FILE_ERROR",
				   "the system trust store holds no CA certificates");
	return added(L, &st->cas, r, "cannot load the system trust store");
}

/* store:add_pem(data) -> number of CAs added (PEM bundle or one DER) */
static int store_add_pem(lua_State *L)
{
	Store *st = check_store(L, 1);
	gnutls_datum_t d = luatls_checkdatum(L, 2);
	int r = gnutls_x509_trust_list_add_trust_mem(
		st->list, &d, NULL,
		luatls_is_pem(&d) ? GNUTLS_X509_FMT_PEM : GNUTLS_X509_FMT_DER,
		GNUTLS_TL_NO_DUPLICATES, 0);
	if (r == 0)
		return luatls_fail(L, "GNUTLS_E_NO_CERTIFICATE_FOUND",
				   "no CA certificate found in the trust data");
	return added(L, &st->cas, r, "cannot load trusted certificates");
}

/* store:add_certificate(cert) -> 1 */
static int store_add_certificate(lua_State *L)
{
	Store *st = check_store(L, 1);
	gnutls_datum_t der;
	int r = gnutls_x509_crt_export2(luatls_check_crt(L, 2),
					GNUTLS_X509_FMT_DER, &der);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "certificate");
	r = gnutls_x509_trust_list_add_trust_mem(st->list, &der, NULL,
						 GNUTLS_X509_FMT_DER,
						 GNUTLS_TL_NO_DUPLICATES, 0);
	gnutls_free(der.data);
	return added(L, &st->cas, r, "cannot add the certificate");
}

/* store:add_dir(path) -> number of CAs added */
static int store_add_dir(lua_State *L)
{
	Store *st = check_store(L, 1);
	const char *path = luaL_checkstring(L, 2);
	DIR *dir = opendir(path);
	int r;
	if (dir == NULL)
		return luatls_fail_errno(L, errno, path);
	closedir(dir);
	r = gnutls_x509_trust_list_add_trust_dir(st->list, path, NULL,
						 GNUTLS_X509_FMT_PEM,
						 GNUTLS_TL_NO_DUPLICATES, 0);
	return added(L, &st->cas, r, "cannot load the CA directory");
}

/* store:add_crl(crl | pem_or_der) -> number of CRLs added */
static int store_add_crl(lua_State *L)
{
	Store *st = check_store(L, 1);
	gnutls_datum_t d, der = {NULL, 0};
	int r;
	if (lua_type(L, 2) == LUA_TSTRING) {
		d = luatls_checkdatum(L, 2);
	} else {
		r = gnutls_x509_crl_export2(luatls_check_crl(L, 2),
					    GNUTLS_X509_FMT_DER, &der);
		if (r < 0)
			return luatls_fail_gnutls(L, r, "CRL");
		d = der;
	}
	r = gnutls_x509_trust_list_add_trust_mem(
		st->list, NULL, &d,
		luatls_is_pem(&d) ? GNUTLS_X509_FMT_PEM : GNUTLS_X509_FMT_DER,
		0, 0);
	gnutls_free(der.data);
	if (r == 0)
		return luatls_fail(L, "GNUTLS_E_BASE64_DECODING_ERROR",
				   "no CRL found in the data");
	return added(L, &st->crls, r, "cannot load the CRL");
}

/* store:info() -> { cas = n, crls = n } */
static int store_info(lua_State *L)
{
	Store *st = check_store(L, 1);
	lua_createtable(L, 0, 2);
	lua_pushinteger(L, st->cas);
	lua_setfield(L, -2, "cas");
	lua_pushinteger(L, st->crls);
	lua_setfield(L, -2, "crls");
	return 1;
}

/* What GnuTLS reports for each step of a verification: the certificate,
 * its issuer (if found), whether a CRL was consulted, and the status. */
typedef struct {
	gnutls_datum_t crt, issuer;
	unsigned status;
	int crl;
} Step;

typedef struct {
	Step steps[MAX_CALLS];
	int n;
} Recorder;

static __thread Recorder *recorder;

static void copy_der(gnutls_x509_crt_t crt, gnutls_datum_t *out)
{
	out->data = NULL;
	out->size = 0;
	if (crt != NULL && gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, out) < 0) {
		out->data = NULL;
		out->size = 0;
	}
}

/* Called by GnuTLS for each certificate it checks; copies, never calls Lua. */
static int record_step(gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer,
		       gnutls_x509_crl_t crl, unsigned status)
{
	Recorder *rec = recorder;
	Step *s;
	if (rec == NULL || rec->n >= MAX_CALLS)
		return 0;
	s = &rec->steps[rec->n++];
	copy_der(crt, &s->crt);
	copy_der(issuer, &s->issuer);
	s->status = status;
	s->crl = crl != NULL;
	return 0;
}

static int same(const gnutls_datum_t *a, const gnutls_datum_t *b)
{
	return a->data != NULL && b->data != NULL && a->size == b->size &&
	       memcmp(a->data, b->data, a->size) == 0;
}

/* Status bits for a certificate (DER) that is not valid at time t. */
static unsigned time_status(const gnutls_datum_t *der, time_t t)
{
	gnutls_x509_crt_t crt;
	unsigned st = 0;
	if (der->data == NULL || gnutls_x509_crt_init(&crt) < 0)
		return 0;
	if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0) {
		if (gnutls_x509_crt_get_activation_time(crt) > t)
			st |= GNUTLS_CERT_NOT_ACTIVATED | GNUTLS_CERT_INVALID;
		if (gnutls_x509_crt_get_expiration_time(crt) < t)
			st |= GNUTLS_CERT_EXPIRED | GNUTLS_CERT_INVALID;
	}
	gnutls_x509_crt_deinit(crt);
	return st;
}

static void push_status(lua_State *L, unsigned status)
{
	lua_createtable(L, 0, 2);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	luatls_push_verify_reasons(L, status);
	lua_setfield(L, -2, "reasons");
}

/* Pushes the result table from the recorded steps. */
static void push_result(lua_State *L, Recorder *rec, gnutls_datum_t *chain,
			int n, unsigned status)
{
	unsigned per[MAX_CHAIN];
	const gnutls_datum_t *path[MAX_CHAIN + 1];
	const unsigned leaf_bits = GNUTLS_CERT_UNEXPECTED_OWNER |
				   GNUTLS_CERT_PURPOSE_MISMATCH;
	gnutls_datum_t text;
	int i, j, npath = 1;
	memset(per, 0, sizeof per);
	for (j = 0; j < rec->n; j++)
		for (i = 0; i < n; i++)
			if (same(&rec->steps[j].crt, &chain[i]))
				per[i] |= rec->steps[j].status & status;
	per[0] |= status & leaf_bits;
	/* the path GnuTLS built: from the leaf, each step's issuer */
	path[0] = &chain[0];
	while (npath <= MAX_CHAIN) {
		const gnutls_datum_t *next = NULL;
		for (j = 0; j < rec->n && next == NULL; j++)
			if (rec->steps[j].issuer.data != NULL &&
			    same(&rec->steps[j].crt, path[npath - 1]))
				next = &rec->steps[j].issuer;
		if (next == NULL)
			break;
		path[npath++] = next;
		if (same(next, path[npath - 2]))
			break;
	}
	if (npath > 1 && same(path[npath - 1], path[npath - 2]))
		npath--;

	lua_createtable(L, 0, 6);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	luatls_push_verify_reasons(L, status);
	lua_setfield(L, -2, "reasons");
	if (gnutls_certificate_verification_status_print(
		    status, GNUTLS_CRT_X509, &text, 0) == 0) {
		lua_pushlstring(L, (const char *)text.data, text.size);
		gnutls_free(text.data);
		lua_setfield(L, -2, "text");
	}
	lua_createtable(L, n, 0);
	for (i = 0; i < n; i++) {
		push_status(L, per[i] & ~(unsigned)GNUTLS_CERT_INVALID);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "certificates");
	lua_createtable(L, npath, 0);
	for (i = 0; i < npath; i++) {
		luatls_push_certificate(L, path[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "path");
	lua_createtable(L, rec->n, 0);
	for (j = 0; j < rec->n; j++) {
		push_status(L, rec->steps[j].status);
		luatls_push_certificate(L, &rec->steps[j].crt);
		lua_setfield(L, -2, "certificate");
		if (rec->steps[j].issuer.data != NULL) {
			luatls_push_certificate(L, &rec->steps[j].issuer);
			lua_setfield(L, -2, "issuer");
		}
		lua_pushboolean(L, rec->steps[j].crl);
		lua_setfield(L, -2, "crl");
		lua_rawseti(L, -2, j + 1);
	}
	lua_setfield(L, -2, "steps");
}

/* store:raw_verify({cert, ...}, hostname|nil, purpose_oid|nil, time|nil)
 * -> { status, reasons, text, certificates = {{status, reasons}, ...},
 *      path = {Certificate, ...}, steps = {...} } | nil, message, code */
static int store_verify(lua_State *L)
{
	Store *st = check_store(L, 1);
	const char *hostname = luaL_optstring(L, 3, NULL);
	const char *purpose = luaL_optstring(L, 4, NULL);
	int at = !lua_isnoneornil(L, 5);
	time_t t = at ? (time_t)luaL_checknumber(L, 5) : 0;
	gnutls_x509_crt_t crts[MAX_CHAIN];
	gnutls_datum_t ders[MAX_CHAIN];
	gnutls_typed_vdata_st data[2];
	unsigned elements = 0, status = 0, flags = 0;
	Recorder rec;
	int i, j, n, r;
	luaL_checktype(L, 2, LUA_TTABLE);
	n = (int)lua_rawlen(L, 2);
	luaL_argcheck(L, n >= 1, 2, "the chain is empty");
	luaL_argcheck(L, n <= MAX_CHAIN, 2, "the chain has more than 16 certificates");
	for (i = 0; i < n; i++) {
		lua_rawgeti(L, 2, i + 1);
		crts[i] = luatls_check_crt(L, -1);
		lua_pop(L, 1); /* the chain table keeps it alive */
	}
	if (hostname != NULL) {
		data[elements].type = GNUTLS_DT_DNS_HOSTNAME;
		data[elements].data = (unsigned char *)(uintptr_t)hostname;
		data[elements++].size = 0;
	}
	if (purpose != NULL) {
		data[elements].type = GNUTLS_DT_KEY_PURPOSE_OID;
		data[elements].data = (unsigned char *)(uintptr_t)purpose;
		data[elements++].size = 0;
	}
	if (at)
		flags |= GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
			 GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS;
	rec.n = 0;
	recorder = &rec;
	r = gnutls_x509_trust_list_verify_crt2(st->list, crts, (unsigned)n, data,
					       elements, flags, &status,
					       record_step);
	recorder = NULL;
	for (i = 0; i < n; i++)
		copy_der(crts[i], &ders[i]);
	if (at && r == 0)
		for (j = 0; j < rec.n; j++) {
			unsigned ts = time_status(&rec.steps[j].crt, t) |
				      time_status(&rec.steps[j].issuer, t);
			rec.steps[j].status |= ts;
			status |= ts;
		}
	if (r == 0)
		push_result(L, &rec, ders, n, status);
	for (j = 0; j < rec.n; j++) {
		gnutls_free(rec.steps[j].crt.data);
		gnutls_free(rec.steps[j].issuer.data);
	}
	for (i = 0; i < n; i++)
		gnutls_free(ders[i].data);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot verify the chain");
	return 1;
}

static int store_tostring(lua_State *L)
{
	Store *st = (Store *)luatls_checkudata(L, 1, STORE_MT);
	if (st->list == NULL)
		lua_pushfstring(L, "luatls.Store (closed): %p", (void *)st);
	else
		lua_pushfstring(L, "luatls.Store: %d CAs, %d CRLs", st->cas,
				st->crls);
	return 1;
}

static int store_close(lua_State *L)
{
	Store *st = (Store *)luatls_checkudata(L, 1, STORE_MT);
	if (st->list != NULL) {
		gnutls_x509_trust_list_deinit(st->list, 1);
		st->list = NULL;
	}
	return 0;
}

static const luaL_Reg store_methods[] = {
	{"add_certificate", store_add_certificate},
	{"add_crl", store_add_crl},
	{"add_dir", store_add_dir},
	{"add_pem", store_add_pem},
	{"add_system", store_add_system},
	{"close", store_close},
	{"info", store_info},
	{"raw_verify", store_verify},
	{NULL, NULL}
};

static const luaL_Reg store_meta[] = {
	{"__close", store_close},
	{"__gc", store_close},
	{"__tostring", store_tostring},
	{NULL, NULL}
};

static const luaL_Reg store_functions[] = {
	{"store", store_new},
	{NULL, NULL}
};

void luatls_open_store(lua_State *L)
{
	luatls_newclass(L, STORE_MT, store_methods, store_meta);
	luaL_setfuncs(L, store_functions, 0);
}
