#!/bin/sh
# Usage: spec/pki.sh DIR
#
# Makes a throwaway test PKI in DIR with certtool (gnutls-bin), so nothing in
# the repository expires. Keys are unencrypted PKCS#8 PEM (GnuTLS and OpenSSL
# both read them); ECDSA P-256 unless the name says rsa.
#
#   ca.{key,pem}              root CA
#   int.{key,pem}             intermediate CA (signed by ca, pathlen 0)
#   server.*                  localhost, 127.0.0.1, ::1; TLS server   (by int)
#   server-rsa.*              the same with an RSA 2048 key           (by int)
#   client.*                  CN=client.example.test; TLS client      (by int)
#   expired.*                 localhost, valid 2020-01-01..2021-01-01 (by int)
#   notyet.*                  localhost, valid from now + 5 years     (by int)
#   wronghost.*               other.example.test only                 (by int)
#   selfsigned.{key,pem}      self-signed localhost leaf
#   other-ca.{key,pem}        an unrelated root CA
#   untrusted.*               localhost leaf signed by other-ca
#
# Each leaf NAME has NAME.key, NAME.pem and NAME-chain.pem (leaf + its issuer,
# except for selfsigned; int-chain.pem is int + ca). Templates stay in DIR.
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
mkdir -p "$dir"
cd "$dir"

# key NAME [rsa]: NAME.key, unencrypted PKCS#8 (--pkcs8 --password='' means no
# encryption; without --password certtool would prompt for one).
key() {
	if [ "${2:-}" = rsa ]; then set -- "$1" --key-type=rsa --bits=2048
	else set -- "$1" --key-type=ecdsa --curve=secp256r1
	fi
	name=$1; shift
	certtool --generate-privkey "$@" --pkcs8 --password='' --no-text \
		--outfile "$name.key" </dev/null 2>/dev/null
}

# cert NAME ISSUER: NAME.pem from NAME.tmpl, signed by ISSUER ("self" for
# self-signed), plus NAME-chain.pem = NAME.pem + ISSUER.pem.
cert() {
	if [ "$2" = self ]; then
		certtool --generate-self-signed --load-privkey "$1.key" \
			--template "$1.tmpl" --no-text --outfile "$1.pem" 2>/dev/null
	else
		certtool --generate-certificate --load-privkey "$1.key" \
			--load-ca-privkey "$2.key" --load-ca-certificate "$2.pem" \
			--template "$1.tmpl" --no-text --outfile "$1.pem" 2>/dev/null
		cat "$1.pem" "$2.pem" >"$1-chain.pem"
	fi
}

# ca NAME CN ISSUER [PATHLEN]
ca() {
	key "$1"
	cat >"$1.tmpl" <<-EOF
		organization = "luatls test"
		cn = "$2"
		expiration_days = 3650
		ca
		${4:+path_len = $4}
		cert_signing_key
		crl_signing_key
	EOF
	cert "$1" "$3"
}

# leaf NAME ISSUER PURPOSE [KEYTYPE] -- template lines on stdin
leaf() {
	key "$1" "${4:-}"
	{
		echo 'organization = "luatls test"'
		cat
		echo "$3"
		echo signing_key
		[ "${4:-}" = rsa ] && echo encryption_key
		true
	} >"$1.tmpl"
	cert "$1" "$2"
}

localhost='cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
ip_address = "::1"'

ca ca "luatls test root CA" self
ca int "luatls test intermediate CA" ca 0
ca other-ca "luatls unrelated root CA" self

printf '%s\nexpiration_days = 365\n' "$localhost" | leaf server int tls_www_server
printf '%s\nexpiration_days = 365\n' "$localhost" | leaf server-rsa int tls_www_server rsa
printf '%s\nexpiration_days = 365\n' "$localhost" | leaf untrusted other-ca tls_www_server
printf '%s\nexpiration_days = 365\n' "$localhost" | leaf selfsigned self tls_www_server
printf '%s\n%s\n%s\n' "$localhost" 'activation_date = "2020-01-01 00:00:00 UTC"' \
	'expiration_date = "2021-01-01 00:00:00 UTC"' | leaf expired int tls_www_server
printf '%s\n%s\n%s\n' "$localhost" 'activation_date = "now + 5 years"' \
	'expiration_date = "now + 6 years"' | leaf notyet int tls_www_server
leaf wronghost int tls_www_server <<-'EOF'
	cn = "other.example.test"
	dns_name = "other.example.test"
	expiration_days = 365
EOF
leaf client int tls_www_client <<-'EOF'
	cn = "client.example.test"
	dns_name = "client.example.test"
	expiration_days = 365
EOF
