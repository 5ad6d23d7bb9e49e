#!/usr/bin/env bash
# `sealguard pki` checked by the independent openssl tool: the certificates carry the TS 33.310
# §6.1.3a fields (SAN identity, EKU, CRL distribution point), chains verify with the CRL, and
# `pki revoke` makes `openssl verify -crl_check` fail with "revoked".
set -euo pipefail

SG_BIN=${SG_BIN:?SG_BIN must name the sealguard binary}
T=$(mktemp -d /tmp/sg-pki-it.XXXXXX)
trap 'rm -rf "$T"' EXIT
P=$T/pki
PASSED=0
FAILED=0

ok() { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
not_ok() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
# check NAME CMD...: the command must succeed.
check() {
	local name=$1; shift
	if "$@" >"$T/out" 2>&1; then ok "$name"; else not_ok "$name"; sed 's/^/     | /' "$T/out" | tail -10; fi
}
# refuse NAME CMD...: the command must fail.
refuse() {
	local name=$1; shift
	if "$@" >"$T/out" 2>&1; then not_ok "$name (was accepted)"; sed 's/^/     | /' "$T/out" | tail -10; else ok "$name"; fi
}
# match NAME REGEX TEXT: TEXT with its lines joined by single spaces must match REGEX.
match() {
	local flat
	flat=$(printf '%s' "$3" | tr '\n' ' ' | tr -s ' ')
	if printf '%s' "$flat" | grep -Eq -- "$2"; then ok "$1"; else not_ok "$1: '$2' not in: $(printf '%s' "$flat" | head -c 600)"; fi
}
verify() { # verify CERT [PURPOSE]
	openssl verify -CAfile "$P/ca.crt" -crl_check -CRLfile "$P/crl.pem" ${2:+-purpose "$2"} "$1"
}
ext() { openssl x509 -in "$1" -noout -ext subjectAltName,extendedKeyUsage,crlDistributionPoints,keyUsage,basicConstraints; }

# --- init ---
check "pki init --val-server v2x-app --seal-server gm-1" "$SG_BIN" pki init --dir "$P" --val-server v2x-app --seal-server gm-1
out=$(cat "$T/out")
match "init reports what it created" "created +$P/val-servers/v2x-app.key" "$out"
match "init names the VAL server identity" "DNS:v2x-app" "$out"
check "ca.key is mode 0600" test "$(stat -c %a "$P/ca.key")" = 600
check "PKI directory is mode 0700" test "$(stat -c %a "$P")" = 700

# --- the CA ---
ca=$(openssl x509 -in "$P/ca.crt" -noout -text)
match "CA is CA:TRUE (critical)" 'Basic Constraints: critical CA:TRUE' "$ca"
match "CA keyUsage is keyCertSign + cRLSign (critical)" 'Key Usage: critical Certificate Sign, CRL Sign' "$ca"
match "CA key is P-256" 'NIST CURVE: P-256' "$ca"
match "CA subject" 'Subject: CN ?= ?sealguard development CA' "$ca"

# --- the leaves, by openssl ---
check "openssl verify -crl_check: server.crt (sslserver)" verify "$P/server.crt" sslserver
check "openssl verify -crl_check: v2x-app.crt (sslclient)" verify "$P/val-servers/v2x-app.crt" sslclient
check "openssl verify -crl_check: gm-1.crt (sslserver)" verify "$P/seal-servers/gm-1.crt" sslserver
refuse "a VAL server certificate is not a TLS server certificate" verify "$P/val-servers/v2x-app.crt" sslserver

s=$(ext "$P/server.crt")
match "server.crt SAN is DNS:localhost, IP:127.0.0.1" 'DNS:localhost, IP Address:127.0.0.1' "$s"
match "server.crt EKU is serverAuth + clientAuth" 'TLS Web Server Authentication, TLS Web Client Authentication' "$s"
match "server.crt has the CRL distribution point" 'URI:http://127.0.0.1:9090/pki/ca.crl' "$s"
match "server.crt keyUsage is digitalSignature (critical)" 'X509v3 Key Usage: critical Digital Signature X509v3' "$s"
match "server.crt is CA:FALSE" 'CA:FALSE' "$s"
v=$(ext "$P/val-servers/v2x-app.crt")
match "VAL server SAN is DNS:v2x-app" 'Subject Alternative Name: DNS:v2x-app X509v3' "$v"
match "VAL server EKU is clientAuth only" 'Extended Key Usage: TLS Web Client Authentication X509v3' "$v"
match "VAL server has the CRL distribution point" 'URI:http://127.0.0.1:9090/pki/ca.crl' "$v"
g=$(ext "$P/seal-servers/gm-1.crt")
match "SEAL server SAN is DNS:gm-1" 'DNS:gm-1' "$g"
match "SEAL server EKU is serverAuth + clientAuth" 'TLS Web Server Authentication, TLS Web Client Authentication' "$g"
t=$(openssl x509 -in "$P/val-servers/v2x-app.crt" -noout -text)
match "leaf is X.509v3" 'Version: 3 \(0x2\)' "$t"
match "leaf is signed with ecdsa-with-SHA256" 'Signature Algorithm: ecdsa-with-SHA256' "$t"
match "leaf key is P-256" 'NIST CURVE: P-256' "$t"
match "leaf has an authority key identifier" 'Authority Key Identifier' "$t"
crl=$(openssl crl -in "$P/crl.pem" -noout -text)
match "the CRL is v2 with a CRL number" 'Version 2 .*X509v3 CRL Number: 1 ' "$crl"
match "the CRL starts empty" 'No Revoked Certificates' "$crl"
check "the CRL is signed by the CA" openssl crl -in "$P/crl.pem" -noout -CAfile "$P/ca.crt"

# --- re-run: keeps the CA, adds a certificate ---
sum=$(sha256sum "$P/ca.key")
check "pki init again with one more VAL server" "$SG_BIN" pki init --dir "$P" --val-server v2x-app --val-server other --crl-uri http://crl.example/ca.crl
out=$(cat "$T/out")
match "re-run keeps the CA key" "kept +$P/ca.key" "$out"
match "re-run creates the new certificate" "created +$P/val-servers/other.crt" "$out"
check "ca.key bytes unchanged" test "$sum" = "$(sha256sum "$P/ca.key")"
match "new certificate uses --crl-uri" 'URI:http://crl.example/ca.crl' "$(ext "$P/val-servers/other.crt")"
check "openssl verify -crl_check: other.crt" verify "$P/val-servers/other.crt" sslclient

# --- bad input ---
set +e
out=$("$SG_BIN" pki init --dir "$P" --val-server ../evil 2>&1); rc=$?
set -e
check "a name with '..' is refused with exit 1" test "$rc" = 1
match "the refusal says why" 'sealguard: .*invalid name' "$out"
check "nothing was written outside DIR" test ! -e "$T/evil.crt"
set +e
"$SG_BIN" pki bogus >/dev/null 2>&1; rc=$?
set -e
check "unknown pki command is a usage error (2)" test "$rc" = 2
check "pki --help" "$SG_BIN" pki --help
match "pki init --help explains the SAN identity" 'DNS:v2x-app' "$("$SG_BIN" pki init --help)"

# --- revoke ---
check "pki revoke v2x-app.crt" "$SG_BIN" pki revoke "$P/val-servers/v2x-app.crt" --dir "$P"
set +e
out=$(verify "$P/val-servers/v2x-app.crt" sslclient 2>&1); rc=$?
set -e
check "openssl verify now fails" test "$rc" != 0
match "openssl says revoked" 'revoked' "$out"
check "the other certificates still verify" verify "$P/server.crt" sslserver
match "pki list shows the revocation" 'val-server +v2x-app +[0-9T:Z-]+ +[0-9]{4}-' "$("$SG_BIN" pki list --dir "$P")"
check "revoking twice is fine" "$SG_BIN" pki revoke "$P/val-servers/v2x-app.crt" --dir "$P"
match "and says so" 'already revoked' "$(cat "$T/out")"
"$SG_BIN" pki init --dir "$T/other" >/dev/null
refuse "revoking another CA's certificate fails" "$SG_BIN" pki revoke "$T/other/server.crt" --dir "$P"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
