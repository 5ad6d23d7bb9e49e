#!/usr/bin/env bash
# `make demo`: starts every SEAL function on loopback with the embedded default configuration
# (SQLite, a fresh development PKI), runs the secured scenario step by step, prints what
# happened, and stops. Section 8 also crashes the server (SIGKILL) to show that the SEALDD-S
# state survives, and starts a second, SEALDD-only server to relocate a flow to over SEALDD-E.
# Usage: scripts/demo.sh PATH/TO/sealguard
set -uo pipefail
SG=${1:?usage: demo.sh PATH/TO/sealguard}
SG=$(cd "$(dirname "$SG")" && pwd)/$(basename "$SG")
STATE=$(mktemp -d /tmp/sealguard-demo.XXXXXX)
PKI=$STATE/pki
PID=""
. "$(dirname "$0")/lib/wait-ready.sh"
. "$(dirname "$0")/lib/python.sh"
sg_debian_python "$STATE/bin"
B_PID=""    # the second SEALDD server (section 8)
ECHO_PID="" # dd-app's data endpoint (section 8)
RECV_PID="" # a SEALDD client waiting on a flow (section 8)
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
cleanup() {
	for p in $RECV_PID $ECHO_PID $B_PID; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID"; fi
	rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP # so that the EXIT trap stops every process started here

for port in 9443 9444 9445 9446 9450 9090 9543 9544 9545 9546 9091; do
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

bold "6. Group management over SEAL-S and SEAL-UU: one policy engine in front of every service"
"$SG" --state-dir "$STATE" pki init --val-server fleet-app >/dev/null
"$SG" --state-dir "$STATE" valserver add fleet-app --identity DNS:fleet-app --val-service v2x | sed 's/^/   /'
"$SG" --state-dir "$STATE" user add bob --password-file "$STATE/alice.pw" >/dev/null
sleep 1.2
printf '{"valGroupId":"fleet-north","grpDesc":"north fleet","members":[{"valUserId":"alice@v2x"}],"valServiceIds":["v2x"]}' >"$STATE/group.json"
step "fleet-app creates a group with alice as member (mutual TLS + bound token)" ok "$SG" --state-dir "$STATE" call POST https://localhost:9444/ss-gm/v1/group-documents --body "$STATE/group.json" --name fleet-app
GID=$(sed -n 's|^Location: .*/group-documents/||p' "$STATE/out" | tr -d '\r')
"$SG" --state-dir "$STATE" valserver token --name fleet-app 2>/dev/null | grep -E '"(client_id|scope|cnf|x5t#S256)"' | sed 's/^/        /'
AT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_token"])' "$CACHE")
step "alice reads her group over SEAL-UU with her token" ok curl -sf --cacert "$CA" -H "Authorization: Bearer $AT" https://localhost:9443/ss-gm/v1/group-documents
BCACHE=$STATE/bob.json
"$SG" --state-dir "$STATE" login --client-id ue-app --client-secret-file "$STATE/ue-app.secret" --username bob --password-file "$STATE/alice.pw" --token-cache "$BCACHE" >/dev/null 2>&1
BT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_token"])' "$BCACHE")
step "bob (not a member) reads alice's group" refused curl -sf --cacert "$CA" -H "Authorization: Bearer $BT" "https://localhost:9443/ss-gm/v1/group-documents/$GID"
step "a request without a token" refused curl -sf --cacert "$CA" https://localhost:9443/ss-gm/v1/group-documents
step "alice's UE token used on SEAL-S with fleet-app's certificate" refused curl -sf --cacert "$CA" --cert "$PKI/val-servers/fleet-app.crt" --key "$PKI/val-servers/fleet-app.key" -H "Authorization: Bearer $AT" https://localhost:9444/ss-gm/v1/group-documents
step "a UE trying to write a group over SEAL-UU" refused curl -sf --cacert "$CA" -H "Authorization: Bearer $AT" -H 'Content-Type: application/json' --data-binary @"$STATE/group.json" https://localhost:9443/ss-gm/v1/group-documents

bold "7. Key management (SKM-S, TS 33.434 §5.3/§5.8): a VAL server provisions a key for alice, her SKM-C decrypts it"
"$SG" --state-dir "$STATE" pki init --val-server kms-app >/dev/null
"$SG" --state-dir "$STATE" valserver add kms-app --identity DNS:kms-app --val-service v2x --key-provisioning | sed 's/^/   /'
sleep 1.2
KCACHE=$STATE/km-tokens.json
step "alice logs in for key management (scope seal:km)" ok "$SG" --state-dir "$STATE" login --client-id ue-app --client-secret-file "$STATE/ue-app.secret" --username alice --password-file "$STATE/alice.pw" --token-cache "$KCACHE" --scope "openid seal:km"
step "alice's SKM-C registers its P-256 public key (KM-UU)" ok "$SG" --state-dir "$STATE" key register --token-cache "$KCACHE"
step "kms-app's SKM-C registers its public key (KM-S, mutual TLS)" ok "$SG" --state-dir "$STATE" key register --name kms-app
head -c 32 /dev/urandom >"$STATE/demo.key"
step "kms-app provisions a key for alice@v2x (ss-kpp, token with SKeyProv)" ok "$SG" --state-dir "$STATE" key provision --name kms-app --val-service v2x --user alice@v2x --payload-id demo-key --key-file "$STATE/demo.key"
"$SG" --state-dir "$STATE" key get --token-cache "$KCACHE" --val-service v2x >"$STATE/kget" 2>&1
step "alice's SKM-C: SEAL KM Request, JWE (ECDH-ES + A256GCM) decrypted locally" ok cat "$STATE/kget"
KB64U=$(python3 -c 'import base64,sys;print(base64.urlsafe_b64encode(open(sys.argv[1],"rb").read()).decode().rstrip("="))' "$STATE/demo.key")
step "... the decrypted key is the one kms-app provisioned" ok grep -qF "key=$KB64U" "$STATE/kget"
KAT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_token"])' "$KCACHE")
curl -s --cacert "$CA" -H "Authorization: Bearer $KAT" -H 'Content-Type: application/json' -d '{"valServiceId":"v2x"}' https://localhost:9443/km/v1/key-requests >"$STATE/kraw"
say "on the wire (KM-UU), keyInfo is a JWE: $(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["keyRecords"][0]["keyInfo"][:90])' "$STATE/kraw")..."
step "the raw KM-UU response contains the key" refused grep -qF "$KB64U" "$STATE/kraw"
step "alice asking for bob's keys (another VAL user)" refused curl -sf --cacert "$CA" -H "Authorization: Bearer $KAT" -H 'Content-Type: application/json' -d '{"valServiceId":"v2x","valTgtUe":{"valUserId":"bob@v2x"}}' https://localhost:9443/km/v1/key-requests
step "KM request without a token" refused curl -sf --cacert "$CA" -H 'Content-Type: application/json' -d '{"valServiceId":"v2x"}' https://localhost:9443/km/v1/key-requests
scan_km() {
	python3 - "$STATE/demo.key" "$@" <<'PY'
import sys, base64
k = open(sys.argv[1], "rb").read()
forms = [k, base64.b64encode(k), base64.b64encode(k).rstrip(b"="),
         base64.urlsafe_b64encode(k).rstrip(b"="), k.hex().encode(), k.hex().upper().encode()]
hit = [f for f in sys.argv[2:] if any(x in open(f, "rb").read() for x in forms)]
print("key bytes found in:", *hit) if hit else print(
    "no form of the key (raw, base64, base64url, hex) in:", *sys.argv[2:])
sys.exit(1 if hit else 0)
PY
}
KMFILES=("$STATE/sealguard.db" "$STATE/server.log")
[ -f "$STATE/sealguard.db-wal" ] && KMFILES+=("$STATE/sealguard.db-wal")
step "the database, its WAL and the server log hold no plaintext key" ok scan_km "${KMFILES[@]}"

bold "8. SEALDD (TS 23.433, TS 29.548; TS 33.434 Rel-18): VAL data through the SEALDD server"
# the VAL server's data endpoint is a TLS server: a certificate with serverAuth + clientAuth, SAN DNS:dd-app
"$SG" --state-dir "$STATE" pki init --seal-server dd-app >/dev/null
"$SG" --state-dir "$STATE" valserver add dd-app --identity DNS:dd-app --val-service v2x-dd | sed 's/^/   /'
sleep 1.2 # the running server follows the registry
DDV=(--name dd-app --cert "$PKI/seal-servers/dd-app.crt" --key "$PKI/seal-servers/dd-app.key")
"$SG" --state-dir "$STATE" dd echo-server --bind 127.0.0.1:9450 --cert "$PKI/seal-servers/dd-app.crt" --key "$PKI/seal-servers/dd-app.key" 2>"$STATE/echo.log" &
ECHO_PID=$!
printf '{"valServiceId":"v2x-dd","valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":9450}}' >"$STATE/transreq.json"
step "VAL server dd-app: request-trans over SEALDD-S (mTLS + bound token)" ok "$SG" --state-dir "$STATE" call POST https://localhost:9444/sdd-trans/v1/regular/request-trans "${DDV[@]}" --body "$STATE/transreq.json"
printf '{"valServerConnInfo":{"ipv4Addr":"999.0.0.1","port":9450}}' >"$STATE/badreq.json"
step "request-trans violating the TS 29.548 schema (400, nothing stored)" refused "$SG" --state-dir "$STATE" call POST https://localhost:9444/sdd-trans/v1/regular/request-trans "${DDV[@]}" --body "$STATE/badreq.json"
DCACHE=$STATE/dd-tokens.json
step "alice logs in for SEALDD (scope sdd, aud sealguard:sdd)" ok "$SG" --state-dir "$STATE" login --client-id ue-app --client-secret-file "$STATE/ue-app.secret" --username alice --password-file "$STATE/alice.pw" --token-cache "$DCACHE" --scope "openid sdd"
FLOW=$("$SG" --state-dir "$STATE" dd open --service v2x-dd --token-cache "$DCACHE")
FID=$(printf '%s' "$FLOW" | python3 -c 'import sys,json;print(json.load(sys.stdin)["sddFlowId"])')
say "SEALDD-UU flow established: $FLOW"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$STATE/payload"
step "4 MiB: SEALDD client -> data endpoint (TLS 1.3) -> VAL server (mTLS) -> back" ok "$SG" --state-dir "$STATE" dd send --flow "$FID" --in "$STATE/payload" --echo --token-cache "$DCACHE"
step "the flow with a token for key management only (aud sealguard:km)" refused "$SG" --state-dir "$STATE" dd send --flow "$FID" --in "$STATE/payload" --token-cache "$KCACHE"
step "alice releases the flow" ok "$SG" --state-dir "$STATE" dd close --flow "$FID" --token-cache "$DCACHE"
step "... data on the released flow" refused "$SG" --state-dir "$STATE" dd send --flow "$FID" --in "$STATE/payload" --token-cache "$DCACHE"
# wait_up ADMIN_PORT PID LOG: the server is up and ready, or the demo stops with its log
wait_up() {
	sg_wait_ready "$1" "$2" && return 0
	echo "demo: the server did not start:"
	cat "$3"
	exit 1
}
# dd_active: the state dir's stored SEALDD-S transmissions, dd-app's for v2x-dd among them, active
dd_active() {
	"$SG" --state-dir "$STATE" dd transmissions >"$STATE/trans" 2>&1 || return 1
	cat "$STATE/trans"
	grep -qE '^v2x-dd +regular +dd-app .*active$' "$STATE/trans"
}
# why: the reason a refused step's command gave (its last line of output)
why() { say "     $(grep -v '^ *$' "$STATE/out" | tail -1 | cut -c1-160)"; }
flow_id() { python3 -c 'import sys,json;print(json.load(open(sys.argv[1]))["sddFlowId"])' "$STATE/out"; }
head -c $((1024 * 1024)) "$STATE/payload" >"$STATE/payload1"

# D1 (TS 29.548 sdd-trans) with DESIGN.md §5: an acknowledged request-trans survives SIGKILL
bold "8b. SEALDD-S state survives a crash: request-trans is stored before it is acknowledged"
step "dd transmissions: dd-app's transmission for v2x-dd is active" ok dd_active
kill -KILL "$PID"
wait "$PID" 2>/dev/null
say "sealguard serve (pid $PID) killed with SIGKILL; restarted on the same state dir"
"$SG" --state-dir "$STATE" serve --log-level warn >>"$STATE/server.log" 2>&1 &
PID=$!
wait_up 9090 "$PID" "$STATE/server.log"
step "after the crash: dd transmissions still lists it, active" ok dd_active
step "alice opens a flow (dd-app did not request transmission again)" ok "$SG" --state-dir "$STATE" dd open --service v2x-dd --token-cache "$DCACHE"
FID=$(flow_id)
step "1 MiB: alice -> restarted SEALDD server -> dd-app -> back" ok "$SG" --state-dir "$STATE" dd send --flow "$FID" --in "$STATE/payload1" --echo --token-cache "$DCACHE"

# D3 / R4 (TS 33.434 Rel-18): SEALDD-E protected as SEAL-E, peers by certificate identity
bold "8c. SEALDD-E (TS 29.548 sdd-ddc/v1 on SEAL-E, mutual TLS): alice's flow moves to a second SEALDD server"
# Two SEALDD server identities from the same development PKI; each lists the other in sdd.peers.
PKIB=$STATE/b/pki
mkdir -p "$PKIB"
"$SG" config show >"$STATE/sdd1.yaml"
printf 'sdd:\n  peers: ["DNS:sdd2.example.com"]\n' >>"$STATE/sdd1.yaml"
cat >"$STATE/sdd2.yaml" <<YAML
state_dir: $STATE/b
pki_dir: $PKIB
workers: 1
log_level: warn
roles: [sdd]
admin: {bind: 127.0.0.1:9091}
idm: {issuer: "https://localhost:9443"}
resource: {idm_url: "https://localhost:9445"}
reference_points:
  - {name: SEAL-UU, bind: 127.0.0.1:9543, tls: {mode: server-auth}, auth: bearer, services: [sdd]}
  - {name: SEAL-S, bind: 127.0.0.1:9544, tls: {mode: mutual}, auth: mtls+bearer, services: [sdd]}
  - {name: SEAL-E, bind: 127.0.0.1:9545, tls: {mode: mutual}, auth: mtls, services: [sdd]}
sdd:
  data_bind: 127.0.0.1:9546
  peers: ["DNS:sdd1.example.com"]
YAML
SG1=("$SG" --state-dir "$STATE" --config "$STATE/sdd1.yaml")
SG2=("$SG" --config "$STATE/sdd2.yaml")
kill -TERM "$PID"
wait "$PID"
rc=$?
PID=""
say "first server stopped (SIGTERM, status $rc) to take a SEALDD-E identity and sdd.peers"
[ "$rc" -eq 0 ] || FAILS=$((FAILS + 1))
"$SG" --state-dir "$STATE" pki issue --san DNS:sdd1.example.com,DNS:localhost,IP:127.0.0.1 --out "$PKI/server" --server-auth --client-auth | sed 's/^/   /'
cp "$PKI/ca.crt" "$PKI/crl.pem" "$PKIB/"
"$SG" --state-dir "$STATE" pki issue --san DNS:sdd2.example.com,DNS:localhost,IP:127.0.0.1 --out "$PKIB/server" --server-auth --client-auth | sed 's/^/   /'
step "first server: embedded default + sdd.peers [DNS:sdd2.example.com]" ok "${SG1[@]}" config check
step "second server: roles [sdd], sdd.peers [DNS:sdd1.example.com]" ok "${SG2[@]}" config check
"${SG2[@]}" valserver add dd-app --identity DNS:dd-app --val-service v2x-dd | sed 's/^/   /'
"${SG1[@]}" serve --log-level warn >>"$STATE/server.log" 2>&1 &
PID=$!
"${SG2[@]}" serve >"$STATE/b/server.log" 2>&1 &
B_PID=$!
wait_up 9090 "$PID" "$STATE/server.log"
wait_up 9091 "$B_PID" "$STATE/b/server.log"
say "second SEALDD server up: SEAL-UU 9543, SEAL-S 9544, SEAL-E 9545, data 9546, admin 9091;"
say "it verifies alice's tokens with the first server's identity management over SEAL-E"
step "alice opens a flow on the first server" ok "$SG" --state-dir "$STATE" dd open --service v2x-dd --token-cache "$DCACHE"
FID=$(flow_id)
"$SG" --state-dir "$STATE" dd recv --flow "$FID" --timeout-ms 15000 --token-cache "$DCACHE" >/dev/null 2>"$STATE/recv.err" &
RECV_PID=$!
for _ in $(seq 1 100); do
	[ "$(curl -s http://127.0.0.1:9090/metrics | awk '/^sealguard_sdd_channels_open /{print $2}')" = 1 ] && break
	sleep 0.05
done
say "alice's client is attached to the flow on the first server's data endpoint (dd recv)"
step "relocation to a server not in sdd.peers (the first one itself)" refused "$SG" --state-dir "$STATE" dd relocate --flow "$FID" --to https://localhost:9445
why
step "dd relocate --to https://localhost:9545 (the peer, over SEAL-E)" ok "$SG" --state-dir "$STATE" dd relocate --flow "$FID" --to https://localhost:9545
for _ in $(seq 1 100); do grep -q "going on" "$STATE/recv.err" && break; sleep 0.1; done
step "alice's client got END FLOW_RELOCATED + the new endpoint" ok grep -oF "FLOW_RELOCATED: 127.0.0.1:9546" "$STATE/recv.err"
step "... and followed: dd recv attached the flow at the second server" ok grep -oF "attached at 127.0.0.1:9546" "$STATE/recv.err"
kill "$RECV_PID" 2>/dev/null
wait "$RECV_PID" 2>/dev/null
RECV_PID=""
for _ in $(seq 1 100); do # the second server has seen that channel close
	[ "$(curl -s http://127.0.0.1:9091/metrics | awk '/^sealguard_sdd_channels_open /{print $2}')" = 0 ] && break
	sleep 0.05
done
step "alice continues on the second server: 1 MiB echoed through it" ok "$SG" --state-dir "$STATE" dd send --flow "$FID" --url https://localhost:9543 --in "$STATE/payload1" --echo --token-cache "$DCACHE"
step "... the same flow on the first server" refused "$SG" --state-dir "$STATE" dd send --flow "$FID" --in "$STATE/payload1" --token-cache "$DCACHE"
why
step "bob logs in for SEALDD too" ok "$SG" --state-dir "$STATE" login --client-id ue-app --client-secret-file "$STATE/ue-app.secret" --username bob --password-file "$STATE/alice.pw" --token-cache "$STATE/bob-dd.json" --scope "openid sdd"
step "bob attaches to alice's relocated flow on the second server" refused "$SG" --state-dir "$STATE" dd send --flow "$FID" --url https://localhost:9543 --in "$STATE/payload1" --token-cache "$STATE/bob-dd.json"
why
kill "$ECHO_PID" 2>/dev/null
wait "$ECHO_PID" 2>/dev/null
ECHO_PID=""

bold "9. Admin listener (127.0.0.1:9090, plain HTTP, loopback only)"
curl -s http://127.0.0.1:9090/metrics | grep -E '^sealguard_(tls_handshakes_total|connections_accepted_total|http_requests_total)' | head -12 | sed 's/^/   /'

bold "10. Graceful stop (SIGTERM)"
kill -TERM "$B_PID" # both servers stop at the same time
kill -TERM "$PID"; wait "$PID"; rc=$?; PID=""
say "server exited with status $rc"
[ "$rc" -eq 0 ] || FAILS=$((FAILS + 1))
wait "$B_PID"; rc=$?; B_PID=""
say "second SEALDD server exited with status $rc"
[ "$rc" -eq 0 ] || FAILS=$((FAILS + 1))
echo
if [ "$FAILS" -eq 0 ]; then echo "demo: every step behaved as specified"; else echo "demo: $FAILS step(s) did not behave as specified"; exit 1; fi
