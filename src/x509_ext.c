/* luatls.Certificate, continued: the distinguished name's attributes and
 * the extensions (constraints, usages, AIA, CRL distribution points, SCTs,
 * key ids), as plain Lua values. */
#include <string.h>

#include <gnutls/x509-ext.h>
#include <gnutls/x509.h>

#include "internal.h"

#define OID_SCT "1.3.6.1.4.1.11129.2.4.2"
#define OID_AIA "1.3.6.1.5.5.7.1.1"

#define check_cert luatls_check_crt

/* Pushes the datum's bytes and frees it: [-0, +1] */
static int push_datum(lua_State *L, gnutls_datum_t *d)
{
	lua_pushlstring(L, (const char *)d->data, d->size);
	gnutls_free(d->data);
	d->data = NULL;
	return 1;
}

/* Appends the value at the top to the list t[key], t just below: [-1, +0] */
static void append_to(lua_State *L, const char *key)
{
	lua_getfield(L, -2, key);
	lua_insert(L, -2);
	lua_rawseti(L, -2, (int)lua_rawlen(L, -2) + 1);
	lua_pop(L, 1);
}

/* Pushes a BMPString (UCS-2, big-endian) as UTF-8. */
static void push_bmp(lua_State *L, const unsigned char *p, unsigned n)
{
	luaL_Buffer b;
	unsigned i;
	luaL_buffinit(L, &b);
	for (i = 0; i + 1 < n; i += 2) {
		unsigned c = (unsigned)p[i] << 8 | p[i + 1];
		if (c < 0x80) {
			luaL_addchar(&b, (char)c);
		} else if (c < 0x800) {
			luaL_addchar(&b, (char)(0xc0 | c >> 6));
			luaL_addchar(&b, (char)(0x80 | (c & 0x3f)));
		} else {
			luaL_addchar(&b, (char)(0xe0 | c >> 12));
			luaL_addchar(&b, (char)(0x80 | ((c >> 6) & 0x3f)));
			luaL_addchar(&b, (char)(0x80 | (c & 0x3f)));
		}
	}
	luaL_pushresult(&b);
}

/* Pushes { {oid=, name=, value=}, ... } for a DN, in certificate order
 * (the reverse of the RFC 4514 string). */
static int push_dn_fields(lua_State *L, gnutls_x509_dn_t dn)
{
	int irdn, iava, n = 0;
	lua_newtable(L);
	for (irdn = 0;; irdn++) {
		for (iava = 0;; iava++) {
			gnutls_x509_ava_st ava;
			const char *name;
			if (gnutls_x509_dn_get_rdn_ava(dn, irdn, iava, &ava) < 0)
				break;
			lua_createtable(L, 0, 3);
			while (ava.oid.size > 0 && ava.oid.data[ava.oid.size - 1] == 0)
				ava.oid.size--;
			lua_pushlstring(L, (const char *)ava.oid.data, ava.oid.size);
			name = gnutls_x509_dn_oid_name(lua_tostring(L, -1), 0);
			lua_setfield(L, -2, "oid");
			if (name != NULL) {
				lua_pushstring(L, name);
				lua_setfield(L, -2, "name");
			}
			if (ava.value_tag == 30) /* BMPString */
				push_bmp(L, ava.value.data, ava.value.size);
			else
				lua_pushlstring(L, (const char *)ava.value.data,
						ava.value.size);
			lua_setfield(L, -2, "value");
			lua_rawseti(L, -2, ++n);
		}
		if (iava == 0)
			break;
	}
	return 1;
}

/* cert:subject_fields() -> { {oid=, name=, value=}, ... } */
static int cert_subject_fields(lua_State *L)
{
	gnutls_x509_dn_t dn;
	int r = gnutls_x509_crt_get_subject(check_cert(L, 1), &dn);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "subject");
	return push_dn_fields(L, dn);
}

/* cert:issuer_fields() -> { {oid=, name=, value=}, ... } */
static int cert_issuer_fields(lua_State *L)
{
	gnutls_x509_dn_t dn;
	int r = gnutls_x509_crt_get_issuer(check_cert(L, 1), &dn);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "issuer");
	return push_dn_fields(L, dn);
}

/* cert:basic_constraints() -> { ca = b, path_len = n|nil, critical = b }
 * | nil when the extension is absent */
static int cert_basic_constraints(lua_State *L)
{
	unsigned critical = 0, ca = 0;
	int pathlen = -1;
	int r = gnutls_x509_crt_get_basic_constraints(check_cert(L, 1), &critical,
						      &ca, &pathlen);
	if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
		return 0;
	if (r < 0)
		return luatls_fail_gnutls(L, r, "basic constraints");
	lua_createtable(L, 0, 3);
	lua_pushboolean(L, ca != 0);
	lua_setfield(L, -2, "ca");
	lua_pushboolean(L, critical != 0);
	lua_setfield(L, -2, "critical");
	if (ca && pathlen >= 0) {
		lua_pushinteger(L, pathlen);
		lua_setfield(L, -2, "path_len");
	}
	return 1;
}

const luatls_flagname luatls_key_usages[] = {
	{GNUTLS_KEY_DIGITAL_SIGNATURE, "digital_signature"},
	{GNUTLS_KEY_NON_REPUDIATION, "non_repudiation"},
	{GNUTLS_KEY_KEY_ENCIPHERMENT, "key_encipherment"},
	{GNUTLS_KEY_DATA_ENCIPHERMENT, "data_encipherment"},
	{GNUTLS_KEY_KEY_AGREEMENT, "key_agreement"},
	{GNUTLS_KEY_KEY_CERT_SIGN, "key_cert_sign"},
	{GNUTLS_KEY_CRL_SIGN, "crl_sign"},
	{GNUTLS_KEY_ENCIPHER_ONLY, "encipher_only"},
	{GNUTLS_KEY_DECIPHER_ONLY, "decipher_only"},
	{0, NULL}
};

const luatls_oidname luatls_purposes[] = {
	{GNUTLS_KP_TLS_WWW_SERVER, "server_auth"},
	{GNUTLS_KP_TLS_WWW_CLIENT, "client_auth"},
	{GNUTLS_KP_CODE_SIGNING, "code_signing"},
	{GNUTLS_KP_EMAIL_PROTECTION, "email_protection"},
	{GNUTLS_KP_TIME_STAMPING, "time_stamping"},
	{GNUTLS_KP_OCSP_SIGNING, "ocsp_signing"},
	{GNUTLS_KP_IPSEC_IKE, "ipsec_ike"},
	{GNUTLS_KP_ANY, "any"},
	{NULL, NULL}
};

/* cert:key_usage() -> { "digital_signature", ... }, critical | nil */
static int cert_key_usage(lua_State *L)
{
	unsigned usage = 0, critical = 0;
	int i, n = 0;
	int r = gnutls_x509_crt_get_key_usage(check_cert(L, 1), &usage, &critical);
	if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
		return 0;
	if (r < 0)
		return luatls_fail_gnutls(L, r, "key usage");
	lua_newtable(L);
	for (i = 0; luatls_key_usages[i].name != NULL; i++)
		if (usage & luatls_key_usages[i].flag) {
			lua_pushstring(L, luatls_key_usages[i].name);
			lua_rawseti(L, -2, ++n);
		}
	lua_pushboolean(L, critical != 0);
	return 2;
}

/* cert:extended_key_usage() -> { {oid=, name=}, ... }, critical | nil */
static int cert_extended_key_usage(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	unsigned critical = 0;
	int idx, n = 0;
	lua_newtable(L);
	for (idx = 0;; idx++) {
		char oid[128];
		size_t size = sizeof oid;
		int i, r = gnutls_x509_crt_get_key_purpose_oid(
			crt, (unsigned)idx, oid, &size, &critical);
		if (r == GNUTLS_E_SHORT_MEMORY_BUFFER)
			continue;
		if (r < 0)
			break;
		lua_createtable(L, 0, 2);
		lua_pushstring(L, oid);
		lua_setfield(L, -2, "oid");
		for (i = 0; luatls_purposes[i].oid != NULL; i++)
			if (strcmp(oid, luatls_purposes[i].oid) == 0) {
				lua_pushstring(L, luatls_purposes[i].name);
				lua_setfield(L, -2, "name");
			}
		lua_rawseti(L, -2, ++n);
	}
	if (n == 0)
		return 0;
	lua_pushboolean(L, critical != 0);
	return 2;
}

/* Fetches the value of an extension by OID: 1 found, 0 absent, < 0 error. */
static int ext_value(gnutls_x509_crt_t crt, const char *oid, gnutls_datum_t *d,
		     unsigned *critical)
{
	int r = gnutls_x509_crt_get_extension_by_oid2(crt, oid, 0, d, critical);
	if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
		return 0;
	return r < 0 ? r : 1;
}

static int datum_is(const gnutls_datum_t *d, const char *s)
{
	size_t n = strlen(s);
	return (d->size == n || (d->size == n + 1 && d->data[n] == 0)) &&
	       memcmp(d->data, s, n) == 0;
}

/* cert:authority_info_access() -> { ocsp = {urls}, ca_issuers = {urls} }
 * | nil when absent */
static int cert_authority_info_access(lua_State *L)
{
	gnutls_datum_t ext = {NULL, 0};
	gnutls_x509_aia_t aia;
	unsigned critical, seq;
	int r = ext_value(check_cert(L, 1), OID_AIA, &ext, &critical);
	if (r <= 0)
		return r == 0 ? 0 : luatls_fail_gnutls(L, r, "authority info access");
	lua_createtable(L, 0, 2);
	lua_newtable(L);
	lua_setfield(L, -2, "ocsp");
	lua_newtable(L);
	lua_setfield(L, -2, "ca_issuers");
	r = gnutls_x509_aia_init(&aia);
	if (r < 0) {
		gnutls_free(ext.data);
		return 1;
	}
	r = gnutls_x509_ext_import_aia(&ext, aia, 0);
	gnutls_free(ext.data);
	for (seq = 0; r == 0; seq++) {
		gnutls_datum_t oid, san;
		unsigned type;
		if (gnutls_x509_aia_get(aia, seq, &oid, &type, &san) < 0)
			break;
		if (type != GNUTLS_SAN_URI)
			continue;
		lua_pushlstring(L, (const char *)san.data, san.size);
		if (datum_is(&oid, GNUTLS_OID_AD_OCSP))
			append_to(L, "ocsp");
		else if (datum_is(&oid, GNUTLS_OID_AD_CAISSUERS))
			append_to(L, "ca_issuers");
		else
			lua_pop(L, 1);
	}
	gnutls_x509_aia_deinit(aia);
	return 1;
}

/* cert:crl_distribution_points() -> { url, ... } (empty when absent) */
static int cert_crl_distribution_points(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	unsigned seq, reasons_, critical;
	int n = 0;
	lua_newtable(L);
	for (seq = 0;; seq++) {
		unsigned char buf[1024];
		size_t size = sizeof buf;
		int type = gnutls_x509_crt_get_crl_dist_points(
			crt, seq, buf, &size, &reasons_, &critical);
		if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
			continue;
		if (type < 0)
			break;
		if (type == GNUTLS_SAN_URI) {
			lua_pushlstring(L, (const char *)buf, size);
			lua_rawseti(L, -2, ++n);
		}
	}
	return 1;
}

/* cert:scts() -> { {version=, log_id=hex, timestamp=, signature_algorithm=},
 * ... } from the embedded SCT list (empty when absent) */
static int cert_scts(lua_State *L)
{
	gnutls_datum_t ext = {NULL, 0};
	gnutls_x509_ct_scts_t scts;
	unsigned critical, idx;
	int r = ext_value(check_cert(L, 1), OID_SCT, &ext, &critical);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "SCT list");
	lua_newtable(L);
	if (r == 0)
		return 1;
	r = gnutls_x509_ext_ct_scts_init(&scts);
	if (r < 0) {
		gnutls_free(ext.data);
		return luatls_fail_gnutls(L, r, "SCT list");
	}
	r = gnutls_x509_ext_ct_import_scts(&ext, scts, 0);
	gnutls_free(ext.data);
	for (idx = 0; r == 0; idx++) {
		unsigned version;
		time_t ts;
		gnutls_datum_t logid, sig;
		gnutls_sign_algorithm_t alg;
		const char *name;
		if (gnutls_x509_ct_sct_get_version(scts, idx, &version) < 0 ||
		    gnutls_x509_ct_sct_get(scts, idx, &ts, &logid, &alg, &sig) < 0)
			break;
		lua_createtable(L, 0, 4);
		lua_pushinteger(L, version);
		lua_setfield(L, -2, "version");
		lua_pushinteger(L, (lua_Integer)ts);
		lua_setfield(L, -2, "timestamp");
		luatls_push_hex(L, logid.data, logid.size);
		lua_setfield(L, -2, "log_id");
		name = gnutls_sign_get_name(alg);
		lua_pushstring(L, name ? name : "unknown");
		lua_setfield(L, -2, "signature_algorithm");
		gnutls_free(logid.data);
		gnutls_free(sig.data);
		lua_rawseti(L, -2, (int)idx + 1);
	}
	gnutls_x509_ext_ct_scts_deinit(scts);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot parse the SCT list");
	return 1;
}

/* cert:subject_key_id() / cert:authority_key_id() -> hex | nil */
static int cert_subject_key_id(lua_State *L)
{
	unsigned char buf[128];
	size_t size = sizeof buf;
	unsigned critical;
	if (gnutls_x509_crt_get_subject_key_id(check_cert(L, 1), buf, &size,
					       &critical) < 0)
		return 0;
	luatls_push_hex(L, buf, size);
	return 1;
}

static int cert_authority_key_id(lua_State *L)
{
	unsigned char buf[128];
	size_t size = sizeof buf;
	unsigned critical;
	if (gnutls_x509_crt_get_authority_key_id(check_cert(L, 1), buf, &size,
						 &critical) < 0)
		return 0;
	luatls_push_hex(L, buf, size);
	return 1;
}

/* cert:extensions() -> { {oid=, critical=, value=DER}, ... } */
static int cert_extensions(lua_State *L)
{
	gnutls_x509_crt_t crt = check_cert(L, 1);
	unsigned idx;
	lua_newtable(L);
	for (idx = 0;; idx++) {
		char oid[128];
		size_t size = sizeof oid;
		unsigned critical;
		gnutls_datum_t d;
		if (gnutls_x509_crt_get_extension_info(crt, idx, oid, &size,
						       &critical) < 0)
			break;
		lua_createtable(L, 0, 3);
		lua_pushstring(L, oid);
		lua_setfield(L, -2, "oid");
		lua_pushboolean(L, critical != 0);
		lua_setfield(L, -2, "critical");
		if (gnutls_x509_crt_get_extension_data2(crt, idx, &d) == 0) {
			push_datum(L, &d);
			lua_setfield(L, -2, "value");
		}
		lua_rawseti(L, -2, (int)idx + 1);
	}
	return 1;
}

const luaL_Reg luatls_cert_ext_methods[] = {
	{"authority_info_access", cert_authority_info_access},
	{"authority_key_id", cert_authority_key_id},
	{"basic_constraints", cert_basic_constraints},
	{"crl_distribution_points", cert_crl_distribution_points},
	{"extended_key_usage", cert_extended_key_usage},
	{"extensions", cert_extensions},
	{"issuer_fields", cert_issuer_fields},
	{"key_usage", cert_key_usage},
	{"scts", cert_scts},
	{"subject_fields", cert_subject_fields},
	{"subject_key_id", cert_subject_key_id},
	{NULL, NULL}
};
