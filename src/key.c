/* luatls.PrivateKey: a private key made here or loaded (PKCS#8, PKCS#1,
 * SEC1, PKCS#12), its public half, and PKCS#8 export. */
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/pkcs12.h>
#include <gnutls/x509.h>

#include "internal.h"

#define KEY_MT "luatls.PrivateKey"

typedef struct {
	gnutls_x509_privkey_t key;
} PrivateKey;

gnutls_x509_privkey_t luatls_check_key(lua_State *L, int i)
{
	PrivateKey *k = (PrivateKey *)luatls_checkudata(L, i, KEY_MT);
	if (k->key == NULL)
		luaL_error(L, "private key is closed");
	return k->key;
}

gnutls_x509_privkey_t *luatls_new_key(lua_State *L)
{
	PrivateKey *k = (PrivateKey *)luatls_newobject(L, sizeof *k, KEY_MT);
	return &k->key;
}

/* core.generate_key("rsa", bits) / ("ecdsa", "P-256"|"P-384"|"P-521") /
 * ("ed25519") / ("ed448") -> PrivateKey | nil, message, code */
static int key_generate(lua_State *L)
{
	static const char *const kinds[] = {"ecdsa", "ed25519", "ed448", "rsa",
					    NULL};
	static const char *const curves[] = {"P-256", "P-384", "P-521", NULL};
	static const gnutls_ecc_curve_t curve_ids[] = {
		GNUTLS_ECC_CURVE_SECP256R1, GNUTLS_ECC_CURVE_SECP384R1,
		GNUTLS_ECC_CURVE_SECP521R1};
	int kind = luaL_checkoption(L, 1, NULL, kinds);
	gnutls_pk_algorithm_t pk = GNUTLS_PK_ECDSA;
	unsigned bits = 0;
	gnutls_x509_privkey_t *key;
	int r;
	switch (kind) {
	case 0:
		bits = GNUTLS_CURVE_TO_BITS(
			curve_ids[luaL_checkoption(L, 2, "P-256", curves)]);
		break;
	case 1:
		pk = GNUTLS_PK_EDDSA_ED25519;
		bits = GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_ED25519);
		break;
	case 2:
		pk = GNUTLS_PK_EDDSA_ED448;
		bits = GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_ED448);
		break;
	default: {
		lua_Integer n = luaL_optinteger(L, 2, 2048);
		luaL_argcheck(L, n >= 1024 && n <= 16384, 2,
			      "RSA key size must be 1024 to 16384 bits");
		pk = GNUTLS_PK_RSA;
		bits = (unsigned)n;
	}
	}
	key = luatls_new_key(L);
	r = gnutls_x509_privkey_init(key);
	if (r == 0)
		r = gnutls_x509_privkey_generate2(*key, pk, bits, 0, NULL, 0);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot generate the key");
	return 1;
}

/* core.load_key(pem_or_der [, password]) -> PrivateKey | nil, message, code */
static int key_load(lua_State *L)
{
	gnutls_datum_t d = luatls_checkdatum(L, 1);
	const char *password = luaL_optstring(L, 2, NULL);
	gnutls_x509_privkey_t *key = luatls_new_key(L);
	int r = gnutls_x509_privkey_init(key);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "private key");
	r = gnutls_x509_privkey_import2(*key, &d,
					luatls_is_pem(&d) ? GNUTLS_X509_FMT_PEM
							  : GNUTLS_X509_FMT_DER,
					password, 0);
	if (r == GNUTLS_E_DECRYPTION_FAILED && password == NULL)
		return luatls_fail(L, "GNUTLS_E_DECRYPTION_FAILED",
				   "the private key is encrypted: pass its password");
	if (r == GNUTLS_E_DECRYPTION_FAILED)
		return luatls_fail(L, "GNUTLS_E_DECRYPTION_FAILED",
				   "cannot decrypt the private key: wrong password?");
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot parse private key");
	return 1;
}

/* Moves crt into a new Certificate at t[n]: [-0, +0] */
static void store_crt(lua_State *L, gnutls_x509_crt_t crt, int n)
{
	gnutls_x509_crt_t *slot = luatls_new_crt(L);
	*slot = crt;
	lua_rawseti(L, -2, n);
}

/* core.load_pkcs12(data [, password]) -> { key = PrivateKey, chain = {...},
 * extra = {...} } | nil, message, code */
static int key_load_pkcs12(lua_State *L)
{
	gnutls_datum_t d = luatls_checkdatum(L, 1);
	const char *password = luaL_optstring(L, 2, NULL);
	gnutls_pkcs12_t p12;
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t *chain = NULL, *extra = NULL;
	gnutls_x509_crl_t crl = NULL;
	unsigned nchain = 0, nextra = 0, i;
	gnutls_x509_privkey_t *keyslot;
	int r;
	lua_createtable(L, 0, 3);
	keyslot = luatls_new_key(L);
	r = gnutls_pkcs12_init(&p12);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "PKCS#12");
	r = gnutls_pkcs12_import(p12, &d,
				 luatls_is_pem(&d) ? GNUTLS_X509_FMT_PEM
						   : GNUTLS_X509_FMT_DER,
				 0);
	if (r < 0) {
		gnutls_pkcs12_deinit(p12);
		return luatls_fail_gnutls(L, r, "cannot parse PKCS#12 data");
	}
	r = gnutls_pkcs12_verify_mac(p12, password);
	if (r == GNUTLS_E_MAC_VERIFY_FAILED) {
		gnutls_pkcs12_deinit(p12);
		return luatls_fail(L, "GNUTLS_E_MAC_VERIFY_FAILED",
				   "cannot open the PKCS#12 data: wrong password");
	}
	r = gnutls_pkcs12_simple_parse(p12, password, &key, &chain, &nchain,
				       &extra, &nextra, &crl,
				       GNUTLS_PKCS12_SP_INCLUDE_SELF_SIGNED);
	gnutls_pkcs12_deinit(p12);
	if (crl != NULL)
		gnutls_x509_crl_deinit(crl);
	if (r < 0)
		return r == GNUTLS_E_DECRYPTION_FAILED
			       ? luatls_fail(L, "GNUTLS_E_DECRYPTION_FAILED",
					     "cannot decrypt the PKCS#12 data: wrong password?")
			       : luatls_fail_gnutls(L, r, "cannot read PKCS#12 data");
	*keyslot = key;
	if (key != NULL)
		lua_setfield(L, -2, "key");
	else
		lua_pop(L, 1);
	lua_createtable(L, (int)nchain, 0);
	for (i = 0; i < nchain; i++)
		store_crt(L, chain[i], (int)i + 1);
	lua_setfield(L, -2, "chain");
	lua_createtable(L, (int)nextra, 0);
	for (i = 0; i < nextra; i++)
		store_crt(L, extra[i], (int)i + 1);
	lua_setfield(L, -2, "extra");
	gnutls_free(chain);
	gnutls_free(extra);
	return 1;
}

/* The public half of key in a new gnutls_pubkey_t. */
static int key_pubkey(gnutls_x509_privkey_t key, gnutls_pubkey_t *pub)
{
	gnutls_privkey_t pk;
	int r = gnutls_privkey_init(&pk);
	if (r < 0)
		return r;
	r = gnutls_privkey_import_x509(pk, key, 0);
	if (r == 0)
		r = gnutls_pubkey_init(pub);
	if (r == 0) {
		r = gnutls_pubkey_import_privkey(*pub, pk, 0, 0);
		if (r < 0)
			gnutls_pubkey_deinit(*pub);
	}
	gnutls_privkey_deinit(pk);
	return r;
}

/* key:public_key() -> { algorithm, bits, curve, oid, pin } */
static int key_public_key(lua_State *L)
{
	gnutls_pubkey_t pub;
	int r = key_pubkey(luatls_check_key(L, 1), &pub), n;
	if (r < 0)
		return luatls_fail_gnutls(L, r, "public key");
	n = luatls_push_pubkey_info(L, pub);
	gnutls_pubkey_deinit(pub);
	return n;
}

/* key:spki_pin() -> "sha256/<base64>" of the public key */
static int key_spki_pin(lua_State *L)
{
	gnutls_pubkey_t pub;
	gnutls_datum_t spki;
	int r = key_pubkey(luatls_check_key(L, 1), &pub), n;
	if (r < 0)
		return luatls_fail_gnutls(L, r, "public key");
	r = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki);
	gnutls_pubkey_deinit(pub);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "public key");
	n = luatls_push_spki_pin(L, &spki);
	gnutls_free(spki.data);
	return n;
}

/* key:public_pem() -> the SubjectPublicKeyInfo as PEM ("PUBLIC KEY") */
static int key_public_pem(lua_State *L)
{
	gnutls_pubkey_t pub;
	gnutls_datum_t d;
	int r = key_pubkey(luatls_check_key(L, 1), &pub);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "public key");
	r = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_PEM, &d);
	gnutls_pubkey_deinit(pub);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "public key");
	lua_pushlstring(L, (const char *)d.data, d.size);
	gnutls_free(d.data);
	return 1;
}

static int export_as(lua_State *L, gnutls_x509_crt_fmt_t fmt)
{
	gnutls_x509_privkey_t key = luatls_check_key(L, 1);
	const char *password = luaL_optstring(L, 2, NULL);
	gnutls_datum_t d;
	int r = gnutls_x509_privkey_export2_pkcs8(
		key, fmt, password,
		password ? GNUTLS_PKCS_PBES2_AES_256 : GNUTLS_PKCS_PLAIN, &d);
	if (r < 0)
		return luatls_fail_gnutls(L, r, "cannot export the private key");
	lua_pushlstring(L, (const char *)d.data, d.size);
	gnutls_free(d.data);
	return 1;
}

/* key:pem([password]) -> PKCS#8 PEM (encrypted with AES-256 when a
 * password is given) */
static int key_pem(lua_State *L)
{
	return export_as(L, GNUTLS_X509_FMT_PEM);
}

/* key:der([password]) -> PKCS#8 DER */
static int key_der(lua_State *L)
{
	return export_as(L, GNUTLS_X509_FMT_DER);
}

/* key:matches(cert) -> whether cert carries this key's public half */
static int key_matches(lua_State *L)
{
	gnutls_x509_privkey_t key = luatls_check_key(L, 1);
	gnutls_x509_crt_t crt = luatls_check_crt(L, 2);
	unsigned char a[64], b[64];
	size_t na = sizeof a, nb = sizeof b;
	int ok = gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, a,
						&na) == 0 &&
		 gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, b,
					    &nb) == 0 &&
		 na == nb && memcmp(a, b, na) == 0;
	lua_pushboolean(L, ok);
	return 1;
}

/* "luatls.PrivateKey: ECDSA P-256" */
static int key_tostring(lua_State *L)
{
	PrivateKey *k = (PrivateKey *)luatls_checkudata(L, 1, KEY_MT);
	if (k->key == NULL) {
		lua_pushfstring(L, "luatls.PrivateKey (closed): %p", (void *)k);
		return 1;
	}
	if (key_public_key(L) != 1) {
		lua_pushliteral(L, "luatls.PrivateKey");
		return 1;
	}
	lua_getfield(L, -1, "algorithm");
	lua_getfield(L, -2, "curve");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_getfield(L, -2, "bits");
	}
	lua_pushfstring(L, "luatls.PrivateKey: %s %s", lua_tostring(L, -2),
			lua_tostring(L, -1));
	return 1;
}

static int key_close(lua_State *L)
{
	PrivateKey *k = (PrivateKey *)luatls_checkudata(L, 1, KEY_MT);
	if (k->key != NULL) {
		gnutls_x509_privkey_deinit(k->key);
		k->key = NULL;
	}
	return 0;
}

static const luaL_Reg key_methods[] = {
	{"close", key_close},
	{"der", key_der},
	{"matches", key_matches},
	{"pem", key_pem},
	{"public_key", key_public_key},
	{"public_pem", key_public_pem},
	{"spki_pin", key_spki_pin},
	{NULL, NULL}
};

static const luaL_Reg key_meta[] = {
	{"__close", key_close},
	{"__gc", key_close},
	{"__tostring", key_tostring},
	{NULL, NULL}
};

static const luaL_Reg key_functions[] = {
	{"generate_key", key_generate},
	{"load_key", key_load},
	{"load_pkcs12", key_load_pkcs12},
	{NULL, NULL}
};

void luatls_open_key(lua_State *L)
{
	luatls_newclass(L, KEY_MT, key_methods, key_meta);
	luaL_setfuncs(L, key_functions, 0);
}
