/* luatls.Certificate: an owned X.509 certificate and the facts a person
 * looks at — names, validity, keys, fingerprints, pins. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "internal.h"

#define CERT_MT "luatls.Certificate"
#define MAX_CHAIN 64

typedef struct {
	gnutls_x509_crt_t crt;
} Certificate;

static gnutls_x509_crt_t check_cert(lua_State *L, int i)
{
	Certificate *ce = (Certificate *)luaL_checkudata(L, i, CERT_MT);
	if (ce->crt == NULL)
		luaL_error(L, "certificate is closed");
	return ce->crt;
}

/* Wraps crt (ownership moves to Lua): [-0, +1] */
static void push_crt(lua_State *L, gnutls_x509_crt_t crt)
{
	Certificate *ce = (Certificate *)luatls_newobject(L, sizeof *ce, CERT_MT);
	ce->crt = crt;
}

int luatls_push_certificate(lua_State *L, const gnutls_datum_t *der)
{
	Certificate *ce = (Certificate *)luatls_newobject(L, sizeof *ce, CERT_MT);
	int r = gnutls_x509_crt_init(&ce->crt);
	if (r == 0)
		r = gnutls_x509_crt_import(ce->crt, der, GNUTLS_X509_FMT_DER);
	if (r < 0) {
		if (ce->crt != NULL)
			gnutls_x509_crt_deinit(ce->crt);
		ce->crt = NULL;
		return luaL_error(L, "cannot copy certificate: %s",
				  gnutls_strerror(r));
	}
	return 1;
}

static const struct {
	unsigned flag;
	const char *name;
} reasons[] = {
	{GNUTLS_CERT_REVOKED, "revoked"},
	{GNUTLS_CERT_SIGNER_NOT_FOUND, "signer-not-found"},
	{GNUTLS_CERT_SIGNER_NOT_CA, "signer-not-ca"},
	{GNUTLS_CERT_INSECURE_ALGORITHM, "insecure-algorithm"},
	{GNUTLS_CERT_NOT_ACTIVATED, "not-activated"},
	{GNUTLS_CERT_EXPIRED, "expired"},
	{GNUTLS_CERT_SIGNATURE_FAILURE, "signature-failure"},
	{GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED, "revocation-data-superseded"},
	{GNUTLS_CERT_UNEXPECTED_OWNER, "hostname-mismatch"},
	{GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE, "revocation-data-in-future"},
	{GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE, "signer-constraints-failure"},
	{GNUTLS_CERT_MISMATCH, "mismatch"},
	{GNUTLS_CERT_PURPOSE_MISMATCH, "purpose-mismatch"},
	{GNUTLS_CERT_MISSING_OCSP_STATUS, "missing-ocsp-status"},
	{GNUTLS_CERT_INVALID_OCSP_STATUS, "invalid-ocsp-status"},
	{GNUTLS_CERT_UNKNOWN_CRIT_EXTENSIONS, "unknown-critical-extensions"},
};

void luatls_push_verify_reasons(lua_State *L, unsigned status)
{
	size_t i;
	int n = 0;
	lua_newtable(L);
	for (i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
		if (status & reasons[i].flag) {
			lua_pushstring(L, reasons[i].name);
			lua_rawseti(L, -2, ++n);
		}
	if (n == 0 && (status & GNUTLS_CERT_INVALID)) {
		lua_pushstring(L, "invalid");
		lua_rawseti(L, -2, 1);
	}
}

static gnutls_datum_t datum_arg(lua_State *L, int i)
{
	size_t len;
	gnutls_datum_t d;
	d.data = (unsigned char *)(uintptr_t)luaL_checklstring(L, i, &len);
	d.size = (unsigned)len;
	return d;
}

/* core.certificate(pem_or_der) -> Certificate | nil, message, code */
static int cert_load(lua_State *L)
{
	gnutls_datum_t d = datum_arg(L, 1);
	gnutls_x509_crt_t crt;
	int r = gnutls_x509_crt_init(&crt);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "certificate");
	r = gnutls_x509_crt_import(crt, &d,
				   luatls_is_pem(&d) ? GNUTLS_X509_FMT_PEM
						     : GNUTLS_X509_FMT_DER);
	if (r < 0) {
		gnutls_x509_crt_deinit(crt);
		return luatls_fail_gnutls(L, r, "cannot parse certificate");
	}
	push_crt(L, crt);
	return 1;
}

/* core.certificates(pem) -> { Certificate, ... } | nil, message, code */
static int cert_load_chain(lua_State *L)
{
	gnutls_datum_t d = datum_arg(L, 1);
	gnutls_x509_crt_t *list = NULL;
	unsigned i, n = 0;
	int r = gnutls_x509_crt_list_import2(
		&list, &n, &d,
		luatls_is_pem(&d) ? GNUTLS_X509_FMT_PEM : GNUTLS_X509_FMT_DER, 0);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot parse certificates");
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		push_crt(L, list[i]);
		lua_rawseti(L, -2, (int)i + 1);
	}
	gnutls_free(list);
	return 1;
}

static int push_datum(lua_State *L, gnutls_datum_t *d)
{
	lua_pushlstring(L, (const char *)d->data, d->size);
	gnutls_free(d->data);
	return 1;
}

static void push_hex(lua_State *L, const unsigned char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	luaL_Buffer b;
	size_t i;
	luaL_buffinit(L, &b);
	for (i = 0; i < n; i++) {
		luaL_addchar(&b, digits[p[i] >> 4]);
		luaL_addchar(&b, digits[p[i] & 15]);
	}
	luaL_pushresult(&b);
}

/* cert:subject() -> RFC 4514 string */
static int cert_subject(lua_State *L)
{
	gnutls_datum_t d;
	int r = gnutls_x509_crt_get_dn3(check_cert(L, 1), &d, 0);
	if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
		lua_pushliteral(L, "");
		return 1;
	}
	if (r < 0)
		return luatls_fail_gnutls(L, r, "subject");
	return push_datum(L, &d);
}

/* cert:issuer() -> RFC 4514 string */
static int cert_issuer(lua_State *L)
{
	gnutls_datum_t d;
	int r = gnutls_x509_crt_get_issuer_dn3(check_cert(L, 1), &d, 0);
	if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
		lua_pushliteral(L, "");
		return 1;
	}
	if (r < 0)
		return luatls_fail_gnutls(L, r, "issuer");
	return push_datum(L, &d);
}

/* cert:serial() -> lower-case hex */
static int cert_serial(lua_State *L)
{
	unsigned char buf[64];
	size_t size = sizeof buf;
	int r = gnutls_x509_crt_get_serial(check_cert(L, 1), buf, &size);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "serial");
	push_hex(L, buf, size);
	return 1;
}

static void append_to(lua_State *L, const char *key)
{
	lua_getfield(L, -2, key);
	lua_insert(L, -2);
	lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
	lua_pop(L, 1);
}

/* cert:sans() -> { dns = {...}, ip = {...}, email = {...}, uri = {...} } */
static int cert_sans(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	unsigned seq;
	lua_createtable(L, 0, 4);
	lua_newtable(L);
	lua_setfield(L, -2, "dns");
	lua_newtable(L);
	lua_setfield(L, -2, "ip");
	lua_newtable(L);
	lua_setfield(L, -2, "email");
	lua_newtable(L);
	lua_setfield(L, -2, "uri");
	for (seq = 0;; seq++) {
		char buf[1024];
		size_t size = sizeof buf - 1;
		unsigned critical;
		int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, buf,
								&size, &critical);
		if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			break;
		if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
			continue;
		if (type < 0)
			break;
		switch (type) {
		case GNUTLS_SAN_DNSNAME:
			lua_pushlstring(L, buf, size);
			append_to(L, "dns");
			break;
		case GNUTLS_SAN_RFC822NAME:
			lua_pushlstring(L, buf, size);
			append_to(L, "email");
			break;
		case GNUTLS_SAN_URI:
			lua_pushlstring(L, buf, size);
			append_to(L, "uri");
			break;
		case GNUTLS_SAN_IPADDRESS: {
			char ip[INET6_ADDRSTRLEN];
			int af = size == 4 ? AF_INET : size == 16 ? AF_INET6 : 0;
			if (af && inet_ntop(af, buf, ip, sizeof ip) != NULL) {
				lua_pushstring(L, ip);
				append_to(L, "ip");
			}
			break;
		}
		default:
			break;
		}
	}
	return 1;
}

/* cert:not_before() / cert:not_after() -> Unix time */
static int cert_not_before(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)gnutls_x509_crt_get_activation_time(
				   check_cert(L, 1)));
	return 1;
}

static int cert_not_after(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)gnutls_x509_crt_get_expiration_time(
				   check_cert(L, 1)));
	return 1;
}

static int spki_der(gnutls_x509_crt_t crt, gnutls_datum_t *out)
{
	gnutls_pubkey_t pub;
	int r = gnutls_pubkey_init(&pub);
	if (r < 0)
		return r;
	r = gnutls_pubkey_import_x509(pub, crt, 0);
	if (r == 0)
		r = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, out);
	gnutls_pubkey_deinit(pub);
	return r;
}

/* cert:spki_pin() -> "sha256/<base64>" of the SubjectPublicKeyInfo
 * (RFC 7469), as curl --pinnedpubkey and HPKP write it */
static int cert_spki_pin(lua_State *L)
{
	gnutls_datum_t spki, digest, b64;
	unsigned char hash[32];
	int r = spki_der(check_cert(L, 1), &spki);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "public key");
	r = gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, hash);
	gnutls_free(spki.data);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "sha256");
	digest.data = hash;
	digest.size = sizeof hash;
	r = gnutls_base64_encode2(&digest, &b64);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "base64");
	lua_pushliteral(L, "sha256/");
	lua_pushlstring(L, (const char *)b64.data, b64.size);
	gnutls_free(b64.data);
	lua_concat(L, 2);
	return 1;
}

/* cert:fingerprint(["sha256"|"sha1"|"sha512"]) -> lower-case hex */
static int cert_fingerprint(lua_State *L)
{
	static const char *const names[] = {"sha256", "sha1", "sha384",
					    "sha512", NULL};
	static const gnutls_digest_algorithm_t algs[] = {
		GNUTLS_DIG_SHA256, GNUTLS_DIG_SHA1, GNUTLS_DIG_SHA384,
		GNUTLS_DIG_SHA512};
	gnutls_x509_crt_t crt = check_cert(L, 1);
	int alg = luaL_checkoption(L, 2, "sha256", names);
	unsigned char buf[64];
	size_t size = sizeof buf;
	int r = gnutls_x509_crt_get_fingerprint(crt, algs[alg], buf, &size);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "fingerprint");
	push_hex(L, buf, size);
	return 1;
}

static int export_as(lua_State *L, gnutls_x509_crt_fmt_t fmt)
{
	gnutls_datum_t d;
	int r = gnutls_x509_crt_export2(check_cert(L, 1), fmt, &d);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "export");
	return push_datum(L, &d);
}

/* cert:pem() -> PEM text */
static int cert_pem(lua_State *L)
{
	return export_as(L, GNUTLS_X509_FMT_PEM);
}

/* cert:der() -> DER bytes */
static int cert_der(lua_State *L)
{
	return export_as(L, GNUTLS_X509_FMT_DER);
}

/* cert:check_hostname(name) -> boolean, with RFC 6125 wildcard rules and
 * IP addresses matched against IP SANs */
static int cert_check_hostname(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	const char *name = luaL_checkstring(L, 2);
	lua_pushboolean(L, gnutls_x509_crt_check_hostname2(crt, name, 0) != 0);
	return 1;
}

/* cert:is_ca() -> boolean */
static int cert_is_ca(lua_State *L)
{
	unsigned critical;
	int r = gnutls_x509_crt_get_basic_constraints(check_cert(L, 1), &critical,
						      NULL, NULL);
	lua_pushboolean(L, r > 0);
	return 1;
}

/* cert:self_signed() -> boolean: subject equals issuer and the key signs it */
static int cert_self_signed(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	lua_pushboolean(L, gnutls_x509_crt_check_issuer(crt, crt) != 0);
	return 1;
}

/* cert:issued(other) -> whether other's issuer name is this subject */
static int cert_issued(lua_State *L)
{
	gnutls_x509_crt_t issuer = check_cert(L, 1), crt = check_cert(L, 2);
	lua_pushboolean(L, gnutls_x509_crt_check_issuer(crt, issuer) != 0);
	return 1;
}

/* cert:key() -> algorithm name, bits */
static int cert_key(lua_State *L)
{
	unsigned bits = 0;
	int alg = gnutls_x509_crt_get_pk_algorithm(check_cert(L, 1), &bits);
	const char *name = gnutls_pk_get_name((gnutls_pk_algorithm_t)alg);
	lua_pushstring(L, name ? name : "unknown");
	lua_pushinteger(L, bits);
	return 2;
}

static int cert_eq(lua_State *L)
{
	gnutls_x509_crt_t a = check_cert(L, 1), b = check_cert(L, 2);
	lua_pushboolean(L, gnutls_x509_crt_equals(a, b) != 0);
	return 1;
}

static int cert_tostring(lua_State *L)
{
	Certificate *ce = (Certificate *)luaL_checkudata(L, 1, CERT_MT);
	gnutls_datum_t d;
	if (ce->crt == NULL) {
		lua_pushfstring(L, "luatls.Certificate (closed): %p", (void *)ce);
		return 1;
	}
	if (gnutls_x509_crt_get_dn3(ce->crt, &d, 0) < 0) {
		lua_pushliteral(L, "luatls.Certificate");
		return 1;
	}
	lua_pushfstring(L, "luatls.Certificate (%s)", (const char *)d.data);
	gnutls_free(d.data);
	return 1;
}

static int cert_close(lua_State *L)
{
	Certificate *ce = (Certificate *)luaL_checkudata(L, 1, CERT_MT);
	if (ce->crt != NULL) {
		gnutls_x509_crt_deinit(ce->crt);
		ce->crt = NULL;
	}
	return 0;
}

static const luaL_Reg cert_methods[] = {
	{"check_hostname", cert_check_hostname},
	{"close", cert_close},
	{"der", cert_der},
	{"fingerprint", cert_fingerprint},
	{"is_ca", cert_is_ca},
	{"issued", cert_issued},
	{"issuer", cert_issuer},
	{"key", cert_key},
	{"not_after", cert_not_after},
	{"not_before", cert_not_before},
	{"pem", cert_pem},
	{"sans", cert_sans},
	{"self_signed", cert_self_signed},
	{"serial", cert_serial},
	{"spki_pin", cert_spki_pin},
	{"subject", cert_subject},
	{NULL, NULL}
};

static const luaL_Reg cert_meta[] = {
	{"__close", cert_close},
	{"__eq", cert_eq},
	{"__gc", cert_close},
	{"__tostring", cert_tostring},
	{NULL, NULL}
};

static const luaL_Reg x509_functions[] = {
	{"certificate", cert_load},
	{"certificates", cert_load_chain},
	{NULL, NULL}
};

void luatls_open_x509(lua_State *L)
{
	luatls_newclass(L, CERT_MT, cert_methods, cert_meta);
	luaL_setfuncs(L, x509_functions, 0);
}
