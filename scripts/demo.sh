#!/usr/bin/env bash
# `make demo`: starts every SEAL function on loopback with the embedded default configuration
# (SQLite, a fresh development PKI), runs the secured scenario step by step, prints what
# happened, and stops. Usage: scripts/demo.sh PATH/TO/sealguard
set -uo pipefail
SG=${1:?usage: demo.sh PATH/TO/sealguard}
SG=$(cd "$(dirname "$SG")" && pwd)/$(basename "$SG")
STATE=$(mktemp -d /tmp/sealguard-demo.XXXXXX)
PKI=$STATE/pki
PID=""
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
cleanup() {
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID"; fi
	rm -rf "$STATE"
}
trap cleanup EXIT

for port in 9443 9444 9445 9090; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "demo: port $port on 127.0.0.1 is in use (another sealguard running?); stop it first" >&2
		exit 1
	fi
done

bold "1. A fresh development PKI (P-256 CA, server certificate, VAL server certificate, CRL)"
"$SG" --state-dir "$STATE" pki init --val-server v2x-app | sed 's/^/   /'
say "VAL server identity is the certificate's SAN:"
openssl x509 -in "$PKI/val-servers/v2x-app.crt" -noout -ext subjectAltName,extendedKeyUsage,crlDistributionPoints 2>/dev/null | sed 's/^/     /'

bold "2. sealguard serve (embedded default configuration, state in a temp dir)"
"$SG" --state-dir "$STATE" serve --log-level warn >"$STATE/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
	curl -sf http://127.0.0.1:9090/healthz >/dev/null 2>&1 && break
	kill -0 "$PID" 2>/dev/null || { echo "demo: the server did not start:"; cat "$STATE/server.log"; exit 1; }
	sleep 0.1
done
"$SG" --state-dir "$STATE" config check | sed 's/^/   /'

CA=$PKI/ca.crt
VAL=(--cert "$PKI/val-servers/v2x-app.crt" --key "$PKI/val-servers/v2x-app.key")
FAILS=0
step() { # step "what" expected-outcome(ok|refused) command...
	local what=$1 want=$2; shift 2
	if "$@" >"$STATE/out" 2>&1; then got=ok; else got=refused; fi
	if [ "$got" = "$want" ]; then mark="PASS"; else mark="FAIL"; FAILS=$((FAILS + 1)); fi
	printf '   [%s] %-62s -> %s\n' "$mark" "$what" "$got"
	[ "$got" = ok ] && [ -s "$STATE/out" ] && head -c 700 "$STATE/out" | sed 's/^/          /' && echo
	return 0
}

bold "3. SEAL-UU (127.0.0.1:9443): TLS with the server certificate, TS 33.210 profile"
step "HTTP/1.1 GET /healthz" ok curl -sf --cacert "$CA" --http1.1 -w ' (HTTP/%{http_version})' https://localhost:9443/healthz
step "HTTP/2 GET /healthz (ALPN h2)" ok curl -sf --cacert "$CA" --http2 -w ' (HTTP/%{http_version})' https://localhost:9443/healthz
step "TLS 1.1 client" refused sh -c "openssl s_client -connect 127.0.0.1:9443 -tls1_1 -cipher DEFAULT@SECLEVEL=0 </dev/null"
step "TLS 1.2 client offering only a CBC suite" refused sh -c "openssl s_client -connect 127.0.0.1:9443 -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256 </dev/null"

bold "4. SEAL-S (127.0.0.1:9444): mutual TLS, the VAL server identified by its certificate"
step "VAL server v2x-app with its certificate" ok curl -sf --cacert "$CA" "${VAL[@]}" https://localhost:9444/healthz
step "client without a certificate" refused curl -sf --cacert "$CA" https://localhost:9444/healthz
"$SG" --state-dir "$STATE" pki init --dir "$STATE/rogue" --val-server v2x-app >/dev/null
step "certificate from another CA" refused curl -sf --cacert "$CA" --cert "$STATE/rogue/val-servers/v2x-app.crt" --key "$STATE/rogue/val-servers/v2x-app.key" https://localhost:9444/healthz
"$SG" --state-dir "$STATE" pki revoke "$PKI/val-servers/v2x-app.crt" | sed 's/^/   /'
sleep 2
step "v2x-app after its certificate was revoked (CRL reloaded live)" refused curl -sf --cacert "$CA" "${VAL[@]}" https://localhost:9444/healthz

bold "5. Identity management (SIM-S, TS 33.434 Annex A): a VAL user logs in with the SIM-C"
printf 'correct horse battery staple\n' >"$STATE/alice.pw"; chmod 600 "$STATE/alice.pw"
"$SG" --state-dir "$STATE" user add alice --password-file "$STATE/alice.pw" --val-user-id v2x=alice@v2x | sed 's/^/   /'
"$SG" --state-dir "$STATE" client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$STATE/ue-app.secret" | sed 's/^/   /'
sleep 1.2 # the running server picks registry changes up within a second
CACHE=$STATE/tokens.json
step "login: authorization code + PKCE S256, password, ID token validated" ok "$SG" --state-dir "$STATE" login --client-id ue-app --client-secret-file "$STATE/ue-app.secret" --username alice --password-file "$STATE/alice.pw" --token-cache "$CACHE"
"$SG" token show --token-cache "$CACHE" 2>&1 | sed 's/^/   /' | head -40
printf 'wrong\n' >"$STATE/wrong.pw"
step "login with a wrong password" refused "$SG" --state-dir "$STATE" login --client-id ue-app --client-secret-file "$STATE/ue-app.secret" --username alice --password-file "$STATE/wrong.pw" --token-cache "$STATE/t2.json"
step "refresh (rotation: the old refresh token dies)" ok "$SG" token refresh --token-cache "$CACHE"
AT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_token"])' "$CACHE" 2>/dev/null)
step "userinfo with the access token" ok curl -sf --cacert "$CA" -H "Authorization: Bearer $AT" https://localhost:9443/oauth2/userinfo
last=${AT: -1}; [ "$last" = A ] && flip=B || flip=A
step "userinfo with a forged token (signature changed)" refused curl -sf --cacert "$CA" -H "Authorization: Bearer ${AT%?}$flip" https://localhost:9443/oauth2/userinfo

bold "6. Admin listener (127.0.0.1:9090, plain HTTP, loopback only)"
curl -s http://127.0.0.1:9090/metrics | grep -E '^sealguard_(tls_handshakes_total|connections_accepted_total|http_requests_total)' | head -12 | sed 's/^/   /'

bold "7. Graceful stop (SIGTERM)"
kill -TERM "$PID"; wait "$PID"; rc=$?; PID=""
say "server exited with status $rc"
[ "$rc" -eq 0 ] || FAILS=$((FAILS + 1))
echo
if [ "$FAILS" -eq 0 ]; then echo "demo: every step behaved as specified"; else echo "demo: $FAILS step(s) did not behave as specified"; exit 1; fi
