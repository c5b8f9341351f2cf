/* luatls.Certificate: an owned X.509 certificate and the facts a person
 * looks at — names, validity, keys, extensions, fingerprints, pins. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "internal.h"

#define CERT_MT "luatls.Certificate"

typedef struct {
	gnutls_x509_crt_t crt;
} Certificate;

gnutls_x509_crt_t luatls_check_crt(lua_State *L, int i)
{
	Certificate *ce = (Certificate *)luatls_checkudata(L, i, CERT_MT);
	if (ce->crt == NULL)
		luaL_error(L, "certificate is closed");
	return ce->crt;
}

#define check_cert luatls_check_crt

gnutls_x509_crt_t *luatls_new_crt(lua_State *L)
{
	Certificate *ce = (Certificate *)luatls_newobject(L, sizeof *ce, CERT_MT);
	return &ce->crt;
}

int luatls_push_certificate(lua_State *L, const gnutls_datum_t *der)
{
	gnutls_x509_crt_t *crt = luatls_new_crt(L);
	int r = gnutls_x509_crt_init(crt);
	if (r == 0)
		r = gnutls_x509_crt_import(*crt, der, GNUTLS_X509_FMT_DER);
	if (r < 0)
		return luaL_error(L, "cannot copy certificate: %s",
				  gnutls_strerror(r));
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

gnutls_datum_t luatls_checkdatum(lua_State *L, int i)
{
	size_t len;
	gnutls_datum_t d;
	d.data = (unsigned char *)(uintptr_t)luaL_checklstring(L, i, &len);
	d.size = (unsigned)len;
	if (len > 0x7fffffff)
		luaL_argerror(L, i, "data too large");
	return d;
}

void luatls_push_hex(lua_State *L, const unsigned char *p, size_t n)
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

/* Pushes the datum's bytes and frees it: [-0, +1] */
static int push_datum(lua_State *L, gnutls_datum_t *d)
{
	lua_pushlstring(L, (const char *)d->data, d->size);
	gnutls_free(d->data);
	d->data = NULL;
	return 1;
}

/* core.certificate(pem_or_der) -> Certificate | nil, message, code */
static int cert_load(lua_State *L)
{
	gnutls_datum_t d = luatls_checkdatum(L, 1);
	gnutls_x509_crt_t *crt = luatls_new_crt(L);
	int r = gnutls_x509_crt_init(crt);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "certificate");
	r = gnutls_x509_crt_import(*crt, &d,
				   luatls_is_pem(&d) ? GNUTLS_X509_FMT_PEM
						     : GNUTLS_X509_FMT_DER);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot parse certificate");
	return 1;
}

/* core.certificates(pem_or_der) -> { Certificate, ... } in the order given
 * | nil, message, code */
static int cert_load_chain(lua_State *L)
{
	gnutls_datum_t d = luatls_checkdatum(L, 1);
	gnutls_x509_crt_t *list = NULL;
	unsigned i, n = 0;
	int r = gnutls_x509_crt_list_import2(
		&list, &n, &d,
		luatls_is_pem(&d) ? GNUTLS_X509_FMT_PEM : GNUTLS_X509_FMT_DER, 0);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot parse certificates");
	/* each certificate goes into a userdata before anything can raise */
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		gnutls_x509_crt_t *slot;
		if (!lua_checkstack(L, 2))
			break;
		slot = luatls_new_crt(L);
		*slot = list[i];
		list[i] = NULL;
		lua_rawseti(L, -2, (int)i + 1);
	}
	for (; i < n; i++)
		gnutls_x509_crt_deinit(list[i]);
	gnutls_free(list);
	return 1;
}

/* Pushes a DN as its RFC 4514 string ("" when empty). */
static int push_dn(lua_State *L, int r, gnutls_datum_t *d, const char *what)
{
	if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
		lua_pushliteral(L, "");
		return 1;
	}
	if (r < 0)
		return luatls_fail_gnutls(L, r, what);
	return push_datum(L, d);
}

/* cert:subject() -> RFC 4514 string */
static int cert_subject(lua_State *L)
{
	gnutls_datum_t d;
	int r = gnutls_x509_crt_get_dn3(check_cert(L, 1), &d, 0);
	return push_dn(L, r, &d, "subject");
}

/* cert:issuer() -> RFC 4514 string */
static int cert_issuer(lua_State *L)
{
	gnutls_datum_t d;
	int r = gnutls_x509_crt_get_issuer_dn3(check_cert(L, 1), &d, 0);
	return push_dn(L, r, &d, "issuer");
}

/* cert:version() -> 1, 2 or 3 */
static int cert_version(lua_State *L)
{
	int v = gnutls_x509_crt_get_version(check_cert(L, 1));
	if (v < 0)
		return luatls_fail_gnutls(L, v, "version");
	lua_pushinteger(L, v);
	return 1;
}

/* cert:serial() -> lower-case hex */
static int cert_serial(lua_State *L)
{
	unsigned char buf[64];
	size_t size = sizeof buf;
	int r = gnutls_x509_crt_get_serial(check_cert(L, 1), buf, &size);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "serial");
	luatls_push_hex(L, buf, size);
	return 1;
}

static void append_to(lua_State *L, const char *key)
{
	lua_getfield(L, -2, key);
	lua_insert(L, -2);
	lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
	lua_pop(L, 1);
}

/* Pushes a SAN value of the given type, or nothing: [-0, +0|1] */
static int push_san(lua_State *L, unsigned type, const unsigned char *p,
		    size_t size)
{
	char ip[INET6_ADDRSTRLEN];
	int af;
	switch (type) {
	case GNUTLS_SAN_DNSNAME:
	case GNUTLS_SAN_RFC822NAME:
	case GNUTLS_SAN_URI:
		lua_pushlstring(L, (const char *)p, size);
		return 1;
	case GNUTLS_SAN_IPADDRESS:
		af = size == 4 ? AF_INET : size == 16 ? AF_INET6 : 0;
		if (af && inet_ntop(af, p, ip, sizeof ip) != NULL) {
			lua_pushstring(L, ip);
			return 1;
		}
		return 0;
	default:
		return 0;
	}
}

/* cert:sans() -> { dns = {...}, ip = {...}, email = {...}, uri = {...} } */
static int cert_sans(lua_State *L)
{
	static const char *const keys[] = {"dns", "ip", "email", "uri"};
	gnutls_x509_crt_t crt = check_cert(L, 1);
	unsigned seq, k;
	lua_createtable(L, 0, 4);
	for (k = 0; k < 4; k++) {
		lua_newtable(L);
		lua_setfield(L, -2, keys[k]);
	}
	for (seq = 0;; seq++) {
		unsigned char buf[1024];
		size_t size = sizeof buf;
		unsigned critical;
		int type = gnutls_x509_crt_get_subject_alt_name(crt, seq, buf,
								&size, &critical);
		if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
			continue;
		if (type < 0)
			break;
		if (!push_san(L, (unsigned)type, buf, size))
			continue;
		append_to(L, type == GNUTLS_SAN_DNSNAME	     ? "dns"
			     : type == GNUTLS_SAN_RFC822NAME ? "email"
			     : type == GNUTLS_SAN_URI	     ? "uri"
							     : "ip");
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

static time_t opt_time(lua_State *L, int i)
{
	if (lua_isnoneornil(L, i))
		return time(NULL);
	return (time_t)luaL_checknumber(L, i);
}

/* cert:days_left([now]) -> whole days until not_after (negative once
 * expired) */
static int cert_days_left(lua_State *L)
{
	double left = (double)gnutls_x509_crt_get_expiration_time(check_cert(L, 1)) -
		      (double)opt_time(L, 2);
	lua_pushinteger(L, (lua_Integer)(left >= 0 ? left / 86400
						   : -((-left + 86399) / 86400)));
	return 1;
}

/* cert:valid_at([time]) -> whether not_before <= time <= not_after */
static int cert_valid_at(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	time_t t = opt_time(L, 2);
	lua_pushboolean(L, gnutls_x509_crt_get_activation_time(crt) <= t &&
				   t <= gnutls_x509_crt_get_expiration_time(crt));
	return 1;
}

/* cert:expires_within(seconds) -> whether not_after comes before now +
 * seconds (openssl x509 -checkend) */
static int cert_expires_within(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	double end = (double)time(NULL) + luaL_checknumber(L, 2);
	lua_pushboolean(L, (double)gnutls_x509_crt_get_expiration_time(crt) < end);
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

int luatls_push_spki_pin(lua_State *L, const gnutls_datum_t *spki)
{
	gnutls_datum_t digest, b64;
	unsigned char hash[32];
	int r = gnutls_hash_fast(GNUTLS_DIG_SHA256, spki->data, spki->size, hash);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "sha256");
	digest.data = hash;
	digest.size = sizeof hash;
	r = gnutls_base64_encode2(&digest, &b64);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "base64");
	lua_pushliteral(L, "sha256/");
	push_datum(L, &b64);
	lua_concat(L, 2);
	return 1;
}

/* cert:spki_pin() -> "sha256/<base64>" of the SubjectPublicKeyInfo
 * (RFC 7469), as curl --pinnedpubkey and HPKP write it */
static int cert_spki_pin(lua_State *L)
{
	gnutls_datum_t spki;
	int r = spki_der(check_cert(L, 1), &spki), n;
	if (r < 0)
		return luatls_fail_gnutls(L, r, "public key");
	n = luatls_push_spki_pin(L, &spki);
	gnutls_free(spki.data);
	return n;
}

static const char *pk_name(int pk)
{
	const char *n;
	switch (pk) {
	case GNUTLS_PK_RSA: return "RSA";
	case GNUTLS_PK_RSA_PSS: return "RSA-PSS";
	case GNUTLS_PK_DSA: return "DSA";
	case GNUTLS_PK_ECDSA: return "ECDSA";
	case GNUTLS_PK_EDDSA_ED25519: return "Ed25519";
	case GNUTLS_PK_EDDSA_ED448: return "Ed448";
	default:
		n = gnutls_pk_get_name((gnutls_pk_algorithm_t)pk);
		return n ? n : "unknown";
	}
}

static const char *curve_name(gnutls_ecc_curve_t c)
{
	switch (c) {
	case GNUTLS_ECC_CURVE_SECP192R1: return "P-192";
	case GNUTLS_ECC_CURVE_SECP224R1: return "P-224";
	case GNUTLS_ECC_CURVE_SECP256R1: return "P-256";
	case GNUTLS_ECC_CURVE_SECP384R1: return "P-384";
	case GNUTLS_ECC_CURVE_SECP521R1: return "P-521";
	default: return gnutls_ecc_curve_get_name(c);
	}
}

int luatls_push_pubkey_info(lua_State *L, gnutls_pubkey_t pub)
{
	unsigned bits = 0;
	int pk = gnutls_pubkey_get_pk_algorithm(pub, &bits);
	gnutls_datum_t spki;
	const char *oid;
	int r;
	if (pk < 0)
		return luatls_fail_gnutls(L, pk, "public key");
	lua_createtable(L, 0, 5);
	lua_pushstring(L, pk_name(pk));
	lua_setfield(L, -2, "algorithm");
	lua_pushinteger(L, bits);
	lua_setfield(L, -2, "bits");
	oid = gnutls_pk_get_oid((gnutls_pk_algorithm_t)pk);
	if (oid != NULL) {
		lua_pushstring(L, oid);
		lua_setfield(L, -2, "oid");
	}
	if (pk == GNUTLS_PK_ECDSA) {
		gnutls_ecc_curve_t curve;
		gnutls_datum_t x = {NULL, 0}, y = {NULL, 0};
		if (gnutls_pubkey_export_ecc_raw2(pub, &curve, &x, &y, 0) == 0) {
			gnutls_free(x.data);
			gnutls_free(y.data);
			lua_pushstring(L, curve_name(curve));
			lua_setfield(L, -2, "curve");
		}
	}
	r = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki);
	if (r == 0) {
		r = luatls_push_spki_pin(L, &spki);
		gnutls_free(spki.data);
		if (r == 1)
			lua_setfield(L, -2, "pin");
		else
			lua_pop(L, r);
	}
	return 1;
}

/* cert:public_key() -> { algorithm, bits, curve, oid, pin } */
static int cert_public_key(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	gnutls_pubkey_t pub;
	int r = gnutls_pubkey_init(&pub), n;
	if (r < 0)
		return luatls_fail_gnutls(L, r, "public key");
	r = gnutls_pubkey_import_x509(pub, crt, 0);
	n = r < 0 ? luatls_fail_gnutls(L, r, "public key")
		  : luatls_push_pubkey_info(L, pub);
	gnutls_pubkey_deinit(pub);
	return n;
}

/* cert:key() -> algorithm name (GnuTLS's), bits */
static int cert_key(lua_State *L)
{
	unsigned bits = 0;
	int alg = gnutls_x509_crt_get_pk_algorithm(check_cert(L, 1), &bits);
	const char *name = gnutls_pk_get_name((gnutls_pk_algorithm_t)alg);
	lua_pushstring(L, name ? name : "unknown");
	lua_pushinteger(L, bits);
	return 2;
}

/* cert:signature_algorithm() -> name, oid, hash ("ECDSA-SHA256",
 * "1.2.840.10045.4.3.2", "SHA256") */
static int cert_signature_algorithm(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	int sig = gnutls_x509_crt_get_signature_algorithm(crt);
	char oid[128];
	size_t size = sizeof oid;
	const char *name = gnutls_sign_get_name((gnutls_sign_algorithm_t)sig);
	const char *hash = gnutls_digest_get_name(
		gnutls_sign_get_hash_algorithm((gnutls_sign_algorithm_t)sig));
	if (gnutls_x509_crt_get_signature_oid(crt, oid, &size) < 0)
		oid[0] = 0;
	lua_pushstring(L, name ? name : oid[0] ? oid : "unknown");
	lua_pushstring(L, oid);
	if (hash != NULL)
		lua_pushstring(L, hash);
	else
		lua_pushnil(L);
	return 3;
}

/* cert:fingerprint(["sha256"|"sha1"|"sha384"|"sha512"]) -> lower-case hex */
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
	luatls_push_hex(L, buf, size);
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

/* cert:text() -> the report `certtool -i` prints */
static int cert_text(lua_State *L)
{
	gnutls_datum_t d;
	int r = gnutls_x509_crt_print(check_cert(L, 1), GNUTLS_CRT_PRINT_FULL, &d);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "print");
	return push_datum(L, &d);
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

/* cert:signed_by(other) -> whether other's key verifies this certificate's
 * signature (names and signature, no dates or constraints) */
static int cert_signed_by(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1), issuer = check_cert(L, 2);
	unsigned status = 0;
	int r = gnutls_x509_crt_verify(
		crt, &issuer, 1,
		GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
			GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS |
			GNUTLS_VERIFY_ALLOW_BROKEN |
			GNUTLS_VERIFY_DISABLE_CA_SIGN,
		&status);
	lua_pushboolean(L, r == 0 && !(status & (GNUTLS_CERT_SIGNATURE_FAILURE |
						  GNUTLS_CERT_SIGNER_NOT_FOUND)));
	return 1;
}

/* Both open and DER-equal; closed certificates compare by identity. */
static int cert_eq(lua_State *L)
{
	Certificate *a = (Certificate *)luatls_checkudata(L, 1, CERT_MT);
	Certificate *b = (Certificate *)luatls_checkudata(L, 2, CERT_MT);
	if (a->crt == NULL || b->crt == NULL)
		lua_pushboolean(L, a == b);
	else
		lua_pushboolean(L, gnutls_x509_crt_equals(a->crt, b->crt) != 0);
	return 1;
}

/* Adds the datum's text to the buffer and frees it. */
static void add_datum(luaL_Buffer *b, int r, gnutls_datum_t *d)
{
	if (r < 0) {
		luaL_addstring(b, "?");
		return;
	}
	luaL_addlstring(b, (const char *)d->data, d->size);
	gnutls_free(d->data);
}

static void add_date(luaL_Buffer *b, time_t t)
{
	char s[16] = "?";
	struct tm tm;
	if (t != (time_t)-1 && gmtime_r(&t, &tm) != NULL)
		strftime(s, sizeof s, "%Y-%m-%d", &tm);
	luaL_addstring(b, s);
}

/* "luatls.Certificate: SUBJECT (issuer ISSUER; ECDSA P-256; valid
 * 2025-01-01 to 2026-01-01)" */
static int cert_tostring(lua_State *L)
{
	Certificate *ce = (Certificate *)luatls_checkudata(L, 1, CERT_MT);
	gnutls_datum_t d, x, y;
	gnutls_ecc_curve_t curve;
	unsigned bits = 0;
	int pk;
	luaL_Buffer b;
	if (ce->crt == NULL) {
		lua_pushfstring(L, "luatls.Certificate (closed): %p", (void *)ce);
		return 1;
	}
	luaL_buffinit(L, &b);
	luaL_addstring(&b, "luatls.Certificate: ");
	add_datum(&b, gnutls_x509_crt_get_dn3(ce->crt, &d, 0), &d);
	luaL_addstring(&b, " (issuer ");
	add_datum(&b, gnutls_x509_crt_get_issuer_dn3(ce->crt, &d, 0), &d);
	luaL_addstring(&b, "; ");
	pk = gnutls_x509_crt_get_pk_algorithm(ce->crt, &bits);
	luaL_addstring(&b, pk_name(pk));
	luaL_addchar(&b, ' ');
	if (pk == GNUTLS_PK_ECDSA &&
	    gnutls_x509_crt_get_pk_ecc_raw(ce->crt, &curve, &x, &y) == 0) {
		gnutls_free(x.data);
		gnutls_free(y.data);
		luaL_addstring(&b, curve_name(curve));
	} else {
		lua_pushinteger(L, bits);
		luaL_addvalue(&b);
	}
	luaL_addstring(&b, "; valid ");
	add_date(&b, gnutls_x509_crt_get_activation_time(ce->crt));
	luaL_addstring(&b, " to ");
	add_date(&b, gnutls_x509_crt_get_expiration_time(ce->crt));
	luaL_addchar(&b, ')');
	luaL_pushresult(&b);
	return 1;
}

static int cert_close(lua_State *L)
{
	Certificate *ce = (Certificate *)luatls_checkudata(L, 1, CERT_MT);
	if (ce->crt != NULL) {
		gnutls_x509_crt_deinit(ce->crt);
		ce->crt = NULL;
	}
	return 0;
}

static const luaL_Reg cert_methods[] = {
	{"check_hostname", cert_check_hostname},
	{"close", cert_close},
	{"days_left", cert_days_left},
	{"der", cert_der},
	{"expires_within", cert_expires_within},
	{"fingerprint", cert_fingerprint},
	{"is_ca", cert_is_ca},
	{"issued", cert_issued},
	{"issuer", cert_issuer},
	{"key", cert_key},
	{"not_after", cert_not_after},
	{"not_before", cert_not_before},
	{"pem", cert_pem},
	{"public_key", cert_public_key},
	{"sans", cert_sans},
	{"self_signed", cert_self_signed},
	{"serial", cert_serial},
	{"signature_algorithm", cert_signature_algorithm},
	{"signed_by", cert_signed_by},
	{"spki_pin", cert_spki_pin},
	{"subject", cert_subject},
	{"text", cert_text},
	{"valid_at", cert_valid_at},
	{"version", cert_version},
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
	luaL_getmetatable(L, CERT_MT);
	lua_getfield(L, -1, "__index");
	luaL_setfuncs(L, luatls_cert_ext_methods, 0);
	lua_pop(L, 2);
	luaL_setfuncs(L, x509_functions, 0);
}
