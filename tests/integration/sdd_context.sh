#!/usr/bin/env bash
# SEALDD-E (TS 23.433 SEALDD server relocation; TS 29.548 SDD_DDContext sdd-ddc/v1; TS 33.434
# Rel-18 D3 / R4: SEALDD-E protected as SEAL-E) between two `sealguard serve` instances with one
# development PKI: A runs every role, B only the SEALDD server (tokens verified with A's
# identity management over SEAL-E). A user's flow is relocated from A to B by the operator
# (`sealguard dd relocate`), the client on A sees END FLOW_RELOCATED with B's data endpoint, and
# data is echoed through B. Refusals, each asserting nothing was created: no client
# certificate, a certificate not in sdd.peers, a VAL server certificate, schema-violating
# DdContextPushReq bodies, an unknown VAL service / VAL server, a duplicate sddFlowId, a target
# whose certificate identity is not a peer (the source does not push), another user attaching
# to the relocated flow, a relocation asked for by anyone but the operator.
. "$(dirname "$0")/lib/common.sh"

sg_ports
DATA=$(free_port)
ECHO=$(free_port)
UUB=$(free_port)
EB=$(free_port)
ADMINB=$(free_port)
DATAB=$(free_port)
ROGUE=$(free_port)
PKI=$T/state/pki
PKIB=$T/b/pki
cat >"$T/a.yaml" <<YAML
state_dir: $T/state
workers: 2
log_level: info
admin: {bind: 127.0.0.1:$ADMIN}
idm: {scrypt_ln: 10}
reference_points:
  - {name: SEAL-UU, bind: 127.0.0.1:$UU, tls: {mode: server-auth}, auth: bearer, services: [idm, gm, km, sdd]}
  - {name: SEAL-S, bind: 127.0.0.1:$S, tls: {mode: mutual}, auth: mtls+bearer, services: [idm, gm, km, sdd]}
  - {name: SEAL-E, bind: 127.0.0.1:$E, tls: {mode: mutual}, auth: mtls, services: [idm, gm, km, sdd]}
sdd:
  data_bind: 127.0.0.1:$DATA
  peers: ["DNS:sdd2.example.com"]
YAML
cat >"$T/b.yaml" <<YAML
state_dir: $T/b
pki_dir: $PKIB
workers: 2
log_level: info
roles: [sdd]
admin: {bind: 127.0.0.1:$ADMINB}
idm: {issuer: "https://localhost:$UU"}
resource: {idm_url: "https://localhost:$E"}
reference_points:
  - {name: SEAL-UU, bind: 127.0.0.1:$UUB, tls: {mode: server-auth}, auth: bearer, services: [sdd]}
  - {name: SEAL-E, bind: 127.0.0.1:$EB, tls: {mode: mutual}, auth: mtls, services: [sdd]}
sdd:
  data_bind: 127.0.0.1:$DATAB
  peers: ["DNS:sdd1.example.com"]
YAML
SG() { "$SG_BIN" --config "$T/a.yaml" "$@"; }
SGB() { "$SG_BIN" --config "$T/b.yaml" "$@"; }

# --- one development PKI: A's CA issues both servers' certificates (SAN = identity) ---
SG pki init --dir "$PKI" --seal-server v2x-app --seal-server gm-x >/dev/null
expect "A's server certificate: DNS:sdd1.example.com (+ localhost)" SG pki issue --dir "$PKI" --san DNS:sdd1.example.com,DNS:localhost,IP:127.0.0.1 --out "$PKI/server" --server-auth --client-auth
mkdir -p "$PKIB"
cp "$PKI/ca.crt" "$PKI/crl.pem" "$PKIB/"
expect "B's server certificate: DNS:sdd2.example.com, IP:127.0.0.1 (not A's name localhost)" SG pki issue --dir "$PKI" --san DNS:sdd2.example.com,IP:127.0.0.1 --out "$PKIB/server" --server-auth --client-auth
expect "a rogue SEALDD server certificate (not a peer)" SG pki issue --dir "$PKI" --san DNS:rogue.example.com,DNS:localhost,IP:127.0.0.1 --out "$T/rogue" --server-auth --client-auth
CA=$PKI/ca.crt

# --- configuration: sdd.peers is checked ---
sed 's/"DNS:sdd2.example.com"/"sdd2.example.com"/' "$T/a.yaml" >"$T/bad.yaml"
OUT=$("$SG_BIN" --config "$T/bad.yaml" config check 2>&1)
expect_match "config: a peer that is not a SAN is refused (sdd.peers[0])" 'sdd\.peers\[0\].*not a certificate identity' "$OUT"
expect "config: A's configuration with sdd.peers passes" SG config check

sg_start "$T/a.yaml" || { not_ok "server A start"; sg_done; }
B_PID=""
ECHO_PID=""
ROGUE_PID=""
RECV_PID=""
cleanup_ddc() {
	for p in $RECV_PID ${RECV2_PID:-} $ROGUE_PID $ECHO_PID $B_PID; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	sg_cleanup
}
trap cleanup_ddc EXIT
"$SG_BIN" --config "$T/b.yaml" serve >"$T/b.log" 2>&1 &
B_PID=$!
sg_wait_ready "$ADMINB" "$B_PID"
expect "server B (roles sdd) starts" curl -sf "http://127.0.0.1:$ADMINB/healthz"

VALC=(--cert "$PKI/seal-servers/v2x-app.crt" --key "$PKI/seal-servers/v2x-app.key")
GMX=(--cert "$PKI/seal-servers/gm-x.crt" --key "$PKI/seal-servers/gm-x.key")
ACRT=(--cert "$PKI/server.crt" --key "$PKI/server.key")
BCRT=(--cert "$PKIB/server.crt" --key "$PKIB/server.key")
C=(curl -s --cacert "$CA")
JS=(-H 'Content-Type: application/json')
schema() { printf '%s' "$3" >"$T/v.json"; openapi_validate "$1" "$2" "$T/v.json"; }
req() {
	: >"$T/h"
	"${C[@]}" -D "$T/h" -o "$T/body" "$@"
	CODE=$(awk 'NR==1{print $2}' "$T/h")
	BODY=$(cat "$T/body" 2>/dev/null)
}
flows_b() { curl -s "http://127.0.0.1:$ADMINB/metrics" | awk '/^sealguard_sdd_flows_open /{print $2}'; }
newid() { py 'import secrets,base64;print(base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode())'; }

# --- registry: the VAL server is registered on both SEALDD servers ---
printf 'alice-pass-1\n' >"$T/alice.pw"
printf 'bob-pass-2\n' >"$T/bob.pw"
expect "user add alice" SG user add alice --password-file "$T/alice.pw" --val-user-id v2x=alice@v2x
expect "user add bob" SG user add bob --password-file "$T/bob.pw" --val-user-id v2x=bob@v2x
expect "client add ue-app" SG client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$T/ue.secret"
expect "A: valserver add v2x-app (v2x)" SG valserver add v2x-app --identity DNS:v2x-app --val-service v2x
expect "B: valserver add v2x-app (v2x)" SGB valserver add v2x-app --identity DNS:v2x-app --val-service v2x
sleep 1.2

"$SG_BIN" --config "$T/a.yaml" dd echo-server --bind "127.0.0.1:$ECHO" "${VALC[@]}" --cacert "$CA" 2>>"$T/echo.log" &
ECHO_PID=$!
sg_wait_port "$ECHO" || true

VT=$(jget "$("${C[@]}" "${VALC[@]}" -d grant_type=client_credentials -d resource=sealguard:sdd -d client_id=v2x-app "https://localhost:$S/oauth2/token")" access_token)
req "${VALC[@]}" -H "Authorization: Bearer $VT" "${JS[@]}" -d "{\"valServiceId\":\"v2x\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}" "https://localhost:$S/sdd-trans/v1/regular/request-trans"
expect_eq "A: v2x-app requests transmission for v2x" 200 "$CODE"

login() { SG login --issuer "https://localhost:$UU" --client-id ue-app --client-secret-file "$T/ue.secret" --username "$1" --password-file "$T/$1.pw" --cacert "$CA" --token-cache "$T/$1.tokens" --scope "openid sdd" >/dev/null; }
expect "alice logs in at A" login alice
expect "bob logs in at A" login bob
ATOK=$(py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/alice.tokens")
BTOK=$(py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/bob.tokens")
ASUB=$(py 'import json,sys,base64;p=sys.argv[1].split(".")[1];p+="="*(-len(p)%4);print(json.loads(base64.urlsafe_b64decode(p))["sub"])' "$ATOK")
DA=(--token-cache "$T/alice.tokens")
DB=(--token-cache "$T/bob.tokens")
head -c 300000 /dev/urandom >"$T/data.bin"

OPEN=$(SG dd open --service v2x "${DA[@]}")
F=$(jget "$OPEN" sddFlowId)
expect_match "alice opens a flow at A" '^[A-Za-z0-9_-]{22}$' "$F"
expect "... and data is echoed through A" SG dd send --flow "$F" --in "$T/data.bin" --echo "${DA[@]}"

# --- target side: who may call SEALDD-E on B ---
PUSH_URL=https://127.0.0.1:$EB/sdd-ddc/v1/contexts
push_body() { # FLOW_ID [SERVICE] [SERVER] [SUB]
	printf '{"ddContext":{"uuContext":{"sddFlowId":"%s","valServiceId":"%s","valServEndPoint":{"ipv4Addr":"127.0.0.1","port":%s},"valTgtUe":{"valUserId":"alice@v2x"},"comLifetime":600,"sgSub":"%s"},"sContext":{"valServerId":"%s","valServiceId":"%s","valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":%s}},"trLayerContext":{"transProtoc":"TCP_TLS"}},"suppFeat":"0"}' \
		"$1" "${2:-v2x}" "$ECHO" "${4:-$ASUB}" "${3:-v2x-app}" "${2:-v2x}" "$ECHO"
}
# nothing_at_b NAME FLOW_ID BEFORE: the flow count did not move and a pull finds nothing
nothing_at_b() {
	local after
	after=$(flows_b)
	req "${ACRT[@]}" "$PUSH_URL?sdd-flow-id=$2"
	if [ "$after" = "$3" ] && [ "$CODE" = 404 ]; then ok "$1: nothing created at B"; else not_ok "$1: flows $3 -> $after, pull $CODE"; fi
}
B0=$(flows_b)
G=$(newid)
BODY0=$(push_body "$G")
expect "the push body used below is a valid DdContextPushReq" schema TS29548_SDD_DDContext.yaml DdContextPushReq "$BODY0"
OUT=$("${C[@]}" -o /dev/null -w '%{http_code}' "${JS[@]}" -d "$BODY0" "$PUSH_URL" 2>&1)
refuse "push without a client certificate: no TLS session (mutual)" test "$OUT" = 201
nothing_at_b "push without a client certificate" "$G" "$B0"
req "${GMX[@]}" "${JS[@]}" -d "$BODY0" "$PUSH_URL"
expect_eq "push with a SEAL server certificate not in sdd.peers: 403" "403 UNAUTHORIZED_IDENTITY" "$CODE $(jget "$BODY" cause)"
expect "... a ProblemDetails" schema TS29122_CommonData.yaml ProblemDetails "$BODY"
nothing_at_b "push by a non-peer" "$G" "$B0"
req "${VALC[@]}" "${JS[@]}" -d "$BODY0" "$PUSH_URL"
expect_eq "push with a VAL server certificate: 403" "403 UNAUTHORIZED_IDENTITY" "$CODE $(jget "$BODY" cause)"
nothing_at_b "push by a VAL server" "$G" "$B0"
req "${VALC[@]}" "$PUSH_URL?sdd-flow-id=$F"
expect_eq "pull with a VAL server certificate: 403" 403 "$CODE"

# schema violations: 400 INVALID_MSG_FORMAT with invalidParams, nothing created
bad_push() {
	local name=$1 body=$2 param=$3 ref=${4:-1}
	local before
	before=$(flows_b)
	req "${ACRT[@]}" "${JS[@]}" -d "$body" "$PUSH_URL"
	if [ "$CODE" = 400 ] && [ "$(jget "$BODY" cause)" = INVALID_MSG_FORMAT ] &&
		printf '%s' "$BODY" | grep -q "\"param\":\"$param\"" &&
		schema TS29122_CommonData.yaml ProblemDetails "$BODY" >/dev/null; then
		ok "push $name: 400 ($param)"
	else
		not_ok "push $name: got $CODE $BODY"
	fi
	[ "$(flows_b)" = "$before" ] || not_ok "push $name created a flow"
	printf '%s' "$body" >"$T/bad.json"
	if [ "$ref" = 1 ] && [ -x "$SG_SHARED_DIR/tools/openapi-validate-json" ] &&
		openapi_validate TS29548_SDD_DDContext.yaml DdContextPushReq "$T/bad.json" 2>/dev/null | grep -q '^VALID'; then
		not_ok "... the reference validator accepts the body of '$name'"
	fi
}
bad_push "without ddContext" '{"suppFeat":"0"}' /ddContext
bad_push "without sContext" "{\"ddContext\":{\"uuContext\":{\"sddFlowId\":\"$G\",\"valServEndPoint\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":1}}}}" /ddContext/sContext
bad_push "without valServEndPoint" "$(push_body "$G" | sed 's/"valServEndPoint"/"valServEndPointX"/')" /ddContext/uuContext/valServEndPoint
bad_push "with ipv4Addr and uri in valServerConnInfo" "$(push_body "$G" | sed 's/"sContext":{"valServerId":"v2x-app","valServiceId":"v2x","valServerConnInfo":{/&"uri":"x:\/\/h:1",/')" /ddContext/sContext/valServerConnInfo
bad_push "with port 70000" "$(push_body "$G" | sed "s/\"port\":$ECHO}},\"trLayerContext\"/\"port\":70000}},\"trLayerContext\"/")" /ddContext/sContext/valServerConnInfo/port
bad_push "with a numeric valServerId" "$(push_body "$G" | sed 's/"valServerId":"v2x-app"/"valServerId":7/')" /ddContext/sContext/valServerId
bad_push "with comLifetime -1" "$(push_body "$G" | sed 's/"comLifetime":600/"comLifetime":-1/')" /ddContext/uuContext/comLifetime
bad_push "with valTgtUe naming both" "$(push_body "$G" | sed 's/"valTgtUe":{"valUserId":"alice@v2x"}/"valTgtUe":{"valUserId":"a","valUeId":"b"}/')" /ddContext/uuContext/valTgtUe
bad_push "with suppFeat xyz" "$(push_body "$G" | sed 's/"suppFeat":"0"/"suppFeat":"xyz"/')" /suppFeat
bad_push "without transProtoc" "$(push_body "$G" | sed 's/"transProtoc":"TCP_TLS"//')" /ddContext/trLayerContext/transProtoc
# what the schema leaves open and this server needs (the reference validator accepts these)
bad_push "without the user (sgSub)" "$(push_body "$G" | sed "s/,\"sgSub\":\"$ASUB\"//")" /ddContext/uuContext/sgSub 0
bad_push "with a sddFlowId of another form" "$(push_body "not-a-flow-id")" /ddContext/uuContext/sddFlowId 0
bad_push "without a port for the VAL server" "$(push_body "$G" | sed "s/,\"port\":$ECHO}},\"trLayerContext\"/}},\"trLayerContext\"/")" /ddContext/sContext/valServerConnInfo/port 0
nothing_at_b "schema violations" "$G" "$B0"

# the registry decides, as for request-trans (D2)
req "${ACRT[@]}" "${JS[@]}" -d "$(push_body "$G" ghost-svc)" "$PUSH_URL"
expect_eq "push for a VAL service v2x-app does not serve at B: 403" "403 OPERATION_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"
nothing_at_b "unknown VAL service" "$G" "$B0"
req "${ACRT[@]}" "${JS[@]}" -d "$(push_body "$G" v2x ghost-app)" "$PUSH_URL"
expect_eq "push naming a VAL server B does not know: 403" "403 OPERATION_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"
expect_match "... because it is not registered" "not registered" "$(jget "$BODY" detail)"
nothing_at_b "unknown VAL server" "$G" "$B0"
req "${ACRT[@]}" "$PUSH_URL"
expect_eq "pull without sdd-flow-id: 400" "400 INVALID_QUERY_PARAM" "$CODE $(jget "$BODY" cause)"

# --- source side: who may ask A to relocate ---
REL_URL=https://localhost:$E/sg-sdd-ops/v1/relocations
req "${BCRT[@]}" "${JS[@]}" -d "{\"sddFlowId\":\"$F\",\"target\":\"https://127.0.0.1:$EB\"}" "$REL_URL"
expect_eq "a relocation asked by a peer SEALDD server (not the operator): 403" 403 "$CODE"
req "${VALC[@]}" "${JS[@]}" -d "{\"sddFlowId\":\"$F\",\"target\":\"https://127.0.0.1:$EB\"}" "$REL_URL"
expect_eq "a relocation asked by a VAL server: 403" 403 "$CODE"
req "${ACRT[@]}" "${JS[@]}" -d "{\"sddFlowId\":\"$F\",\"target\":\"ftp://x\"}" "$REL_URL"
expect_eq "a relocation with a target that is not https://HOST:PORT: 400" "400 /target" "$CODE $(jget "$BODY" invalidParams 0 param)"
refuse "dd relocate of a flow that does not exist" SG dd relocate --flow "$(newid)" --to "https://127.0.0.1:$EB"
expect_match "... says 404" "404" "$(cat "$T/last.out")"

# a target whose certificate identity is not in sdd.peers gets nothing
openssl s_server -quiet -accept "$ROGUE" -cert "$T/rogue.crt" -key "$T/rogue.key" -CAfile "$CA" -www >"$T/rogue.log" 2>&1 &
ROGUE_PID=$!
sg_wait_port "$ROGUE" || true
refuse "dd relocate to a target that is not a peer" SG dd relocate --flow "$F" --to "https://localhost:$ROGUE"
expect_match "... refused by the source: TARGET_NOT_PEER, naming the target's identity" "TARGET_NOT_PEER.*rogue\.example\.com" "$(cat "$T/last.out")"
if grep -q "sdd-ddc" "$T/rogue.log"; then not_ok "... the rogue target received the context"; else ok "... the rogue target received nothing"; fi
expect "... the flow is still alice's at A" "${C[@]}" -sf -H "Authorization: Bearer $ATOK" "https://localhost:$UU/sdd-flows/v1/flows/$F"
nothing_at_b "relocation to a rogue target" "$F" "$B0"

# --- the relocation A -> B ---
# the receiver attached at A follows the flow to B (dd recv's default)
"$SG_BIN" --config "$T/a.yaml" dd recv --flow "$F" --timeout-ms 30000 "${DA[@]}" >/dev/null 2>"$T/recv.err" &
RECV_PID=$! # the binary itself (not through SG): it is killed below
sleep 1
REL=$(SG dd relocate --flow "$F" --to "https://127.0.0.1:$EB/")
expect_eq "dd relocate: the flow went to B's data endpoint" "$F 127.0.0.1 $DATAB" "$(jget "$REL" sddFlowId) $(jget "$REL" endPoint ipv4Addr) $(jget "$REL" endPoint port)"
for _ in $(seq 1 100); do grep -q "going on" "$T/recv.err" && break; sleep 0.1; done
expect_eq "... A counts the flow's END as FLOW_RELOCATED" 1 "$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '$1=="sealguard_sdd_flow_ends_total{reason=\"FLOW_RELOCATED\"}"{print $2}')"
expect_match "dd recv follows: END FLOW_RELOCATED at A, attached at B" "FLOW_RELOCATED: 127\.0\.0\.1:$DATAB.*attached at 127\.0\.0\.1:$DATAB, going on" "$(cat "$T/recv.err")"
refuse "... and holds the flow there: another session of alice's cannot attach at B" SG dd send --flow "$F" --url "https://127.0.0.1:$UUB" --in "$T/data.bin" "${DA[@]}"
expect_match "... BUSY" "BUSY" "$(cat "$T/last.out")"
kill -TERM "$RECV_PID"
wait "$RECV_PID" 2>/dev/null
RECV_PID=""
sleep 0.4
req -H "Authorization: Bearer $ATOK" "https://localhost:$UU/sdd-flows/v1/flows/$F"
expect_eq "the flow is gone from A" 404 "$CODE"
expect_eq "B holds one more flow" "$((B0 + 1))" "$(flows_b)"
req -H "Authorization: Bearer $ATOK" "https://127.0.0.1:$UUB/sdd-flows/v1/flows/$F"
expect_eq "alice reads her flow at B (same sddFlowId, A's token verified by B)" "200 $F $DATAB" "$CODE $(jget "$BODY" sddFlowId) $(jget "$BODY" ddServerConnInfo port)"
expect "data is echoed through B" SG dd send --flow "$F" --url "https://127.0.0.1:$UUB" --in "$T/data.bin" --echo "${DA[@]}"
refuse "bob cannot attach to alice's relocated flow at B" SG dd send --flow "$F" --url "https://127.0.0.1:$UUB" --in "$T/data.bin" "${DB[@]}"
req -H "Authorization: Bearer $BTOK" "https://127.0.0.1:$UUB/sdd-flows/v1/flows/$F"
expect_eq "bob's GET of it at B: 404, like no flow" 404 "$CODE"
req "${ACRT[@]}" "$PUSH_URL?sdd-flow-id=$F"
expect_eq "a peer pulls the context at B: 200" "200 $F" "$CODE $(jget "$BODY" ddContext uuContext sddFlowId)"
expect "... a DdContextResp" schema TS29548_SDD_DDContext.yaml DdContextResp "$BODY"
req "${ACRT[@]}" "${JS[@]}" -d "$(push_body "$F")" "$PUSH_URL"
expect_eq "pushing the same sddFlowId again: 409, nothing changed" "409 $((B0 + 1))" "$CODE $(flows_b)"
H=$(newid)
req "${ACRT[@]}" "${JS[@]}" -d "$(push_body "$H")" "$PUSH_URL"
expect_eq "a peer's push of a valid context: 201" "201 127.0.0.1 $DATAB" "$CODE $(jget "$BODY" endPoint ipv4Addr) $(jget "$BODY" endPoint port)"
expect "... a DdContextResp" schema TS29548_SDD_DDContext.yaml DdContextResp "$BODY"
refuse "bob cannot attach to a flow pushed for alice" SG dd send --flow "$H" --url "https://127.0.0.1:$UUB" --in "$T/data.bin" "${DB[@]}"
expect "alice can" SG dd send --flow "$H" --url "https://127.0.0.1:$UUB" --in "$T/data.bin" --echo "${DA[@]}"

# and back B -> A (B's peers name A): a receiver with --no-follow stops there
SG dd recv --flow "$F" --no-follow --url "https://127.0.0.1:$UUB" --timeout-ms 15000 "${DA[@]}" >/dev/null 2>"$T/recv2.err" &
RECV2_PID=$!
sleep 1
REL=$(SGB dd relocate --flow "$F" --to "https://localhost:$E/" --via "https://127.0.0.1:$EB")
expect_eq "dd relocate B -> A: the flow went back to A's data endpoint" "$F $DATA" "$(jget "$REL" sddFlowId) $(jget "$REL" endPoint port)"
wait "$RECV2_PID"
expect_eq "dd recv --no-follow stops at the relocation (exit 1)" 1 "$?"
RECV2_PID=""
expect_match "... with END FLOW_RELOCATED and A's data endpoint" "FLOW_RELOCATED: 127\.0\.0\.1:$DATA" "$(cat "$T/recv2.err")"
if grep -q "going on" "$T/recv2.err"; then not_ok "... and did not attach at A"; else ok "... and did not attach at A"; fi

kill -TERM "$B_PID"
wait "$B_PID"
expect_eq "server B stops cleanly (exit 0)" 0 "$?"
B_PID=""
expect "server A stops cleanly" sg_stop
sg_done
