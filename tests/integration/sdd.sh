#!/usr/bin/env bash
# SEALDD (TS 23.433; TS 29.548 sdd-trans/v1; TS 33.434 Rel-18 G6, D1-D3) end to end through
# `sealguard serve`: a VAL server requests transmission over SEALDD-S (mutual TLS + bound token),
# a logged-in user's SEALDD client (`sealguard dd`) establishes flows over SEALDD-UU and sends
# data through the SEALDD server's TLS 1.3 data endpoint to the VAL server's endpoint
# (`sealguard dd echo-server`, mutual TLS) and back: payload integrity (SHA-256), flow
# isolation between users, schema-violating TransReq bodies (400, nothing allocated), malformed
# and oversized frames, a VAL endpoint that refuses, dies or is not the requesting VAL server,
# a revoked and an expired token mid-flow, URLLC redundancy, connection status notifications
# over mutual TLS, and a SEALDD server restart.
. "$(dirname "$0")/lib/common.sh"

ECHO=$(free_port)
NOTIF=$(free_port)
sg_sdd_start "  flow_lifetime_s: 120
  max_subscriptions: 3
  max_subscriptions_per_server: 2" v2x-app evil-app
ISS=https://localhost:$UU
SISS=https://localhost:$S
EVIL=(--cert "$PKI/seal-servers/evil-app.crt" --key "$PKI/seal-servers/evil-app.key")
schema() { printf '%s' "$3" >"$T/v.json"; openapi_validate "$1" "$2" "$T/v.json"; }
req() {
	"${C[@]}" -D "$T/h" -o "$T/b" "$@"
	CODE=$(awk 'NR==1{print $2}' "$T/h")
	BODY=$(cat "$T/b")
}
ECHO_PID=""
NOTIF_PID=""
start_echo() { sg_echo_start "$ECHO"; }
stop_echo() { [ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null && wait "$ECHO_PID" 2>/dev/null; ECHO_PID=""; }
cleanup_sdd() {
	stop_echo
	[ -n "$NOTIF_PID" ] && kill "$NOTIF_PID" 2>/dev/null
	sg_cleanup
}
trap cleanup_sdd EXIT

# --- registry ---
printf 'alice-pass-1\n' >"$T/alice.pw"
printf 'bob-pass-2\n' >"$T/bob.pw"
expect "user add alice (VAL user alice@v2x)" SG user add alice --password-file "$T/alice.pw" --val-user-id v2x=alice@v2x
expect "user add bob" SG user add bob --password-file "$T/bob.pw" --val-user-id v2x=bob@v2x
expect "client add ue-app" SG client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$T/ue.secret"
expect "valserver add v2x-app (VAL services v2x, v2x-u, dead)" SG valserver add v2x-app --identity DNS:v2x-app --val-service v2x --val-service v2x-u --val-service dead
expect "valserver add evil-app" SG valserver add evil-app --identity DNS:evil-app --val-service evil
sleep 1.2
expect "echo VAL server endpoint starts (mutual TLS)" start_echo

vtok() { jget "$("${C[@]}" "$@" -d grant_type=client_credentials -d resource=sealguard:sdd "$SISS/oauth2/token")" access_token; }
VT=$(vtok "${VAL[@]}" -d client_id=v2x-app)
ET=$(vtok "${EVIL[@]}" -d client_id=evil-app)
expect_match "v2x-app got a token for sealguard:sdd" '^ey' "$VT"
AV=(-H "Authorization: Bearer $VT")
JS=(-H 'Content-Type: application/json')
RT_URL=$SISS/sdd-trans/v1

# --- SEALDD-S: request-trans (TS 29.548) ---
TR="{\"valServiceId\":\"v2x\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO},\"qosInfo\":{\"qosReference\":\"q1\"},\"valServerBdw\":{\"totalUlBdw\":1000000,\"totalDlBdw\":2000000},\"suppFeat\":\"0\"}"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$TR" "$RT_URL/regular/request-trans"
expect_eq "request-trans regular: 200" 200 "$CODE"
expect "... the body is a TransResp" schema TS29548_SDD_Transmission.yaml TransResp "$BODY"
expect_eq "... ddServerConnInfo is the data endpoint" "127.0.0.1 $DATA" "$(jget "$BODY" ddServerConnInfo ipv4Addr) $(jget "$BODY" ddServerConnInfo port)"
req "${VAL[@]}" "${JS[@]}" -d "$TR" "$RT_URL/regular/request-trans"
expect_eq "request-trans without a token: 401" 401 "$CODE"
req "${AV[@]}" "${JS[@]}" -d "$TR" "$RT_URL/regular/request-trans" --cert "$PKI/server.crt" --key "$PKI/server.key"
expect_eq "request-trans with the token but another certificate: 401" 401 "$CODE"
req "${EVIL[@]}" -H "Authorization: Bearer $ET" "${JS[@]}" -d "$TR" "$RT_URL/regular/request-trans"
expect_eq "another VAL server cannot take over VAL service v2x: 403" "403 OPERATION_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"
expect_match "... because the registry does not list v2x for evil-app" "not registered for this VAL service" "$(jget "$BODY" detail)"
# D2: the registry (valserver --val-service), not the first claim, decides. The VAL servers were
# added after the start, so these answers also show the snapshot following the store.
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "{\"valServiceId\":\"unserved\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}" "$RT_URL/regular/request-trans"
expect_eq "registry: v2x-app asks for a VAL service it does not serve: 403" "403 OPERATION_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "{\"valServiceId\":\"evil\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}" "$RT_URL/regular/request-trans"
expect_eq "registry: v2x-app asks for evil-app's VAL service: 403" "403 OPERATION_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$TR" "$RT_URL/bulk/request-trans"
expect_eq "transType other than regular|urllc: 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "{\"valServiceId\":\"v2x-u\",\"valServerConnInfo\":{\"uri\":\"tls://localhost:$ECHO\"}}" "$RT_URL/urllc/request-trans"
expect_eq "request-trans urllc (uri form): 200" 200 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "{\"valServiceId\":\"dead\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":1}}" "$RT_URL/regular/request-trans"
expect_eq "request-trans for an endpoint nobody listens on: 200 (found out at relay time)" 200 "$CODE"
req "${EVIL[@]}" -H "Authorization: Bearer $ET" "${JS[@]}" -d "{\"valServiceId\":\"evil\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}" "$RT_URL/regular/request-trans"
expect_eq "evil-app points its transmission at v2x-app's endpoint: 200 (refused at relay time)" 200 "$CODE"

# schema violations: 400 ProblemDetails with invalidParams, nothing allocated
bad_tr() {
	local name=$1 body=$2 param=$3
	req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$body" "$RT_URL/regular/request-trans"
	if [ "$CODE" = 400 ] && [ "$(jget "$BODY" cause)" = INVALID_MSG_FORMAT ] && printf '%s' "$BODY" | grep -q "\"param\":\"$param\"" &&
		schema TS29122_CommonData.yaml ProblemDetails "$BODY" >/dev/null; then
		ok "TransReq $name: 400 ($param)"
	else
		not_ok "TransReq $name: got $CODE $BODY"
	fi
	printf '%s' "$body" >"$T/bad.json"
	# the reference validator must refuse it too (where the validator is available)
	if [ -x "$SG_SHARED_DIR/tools/openapi-validate-json" ] &&
		openapi_validate TS29548_SDD_Transmission.yaml TransReq "$T/bad.json" 2>/dev/null | grep -q '^VALID' &&
		[ "$param" != /valServiceId ] && [ "$param" != /valServerConnInfo/port ]; then
		not_ok "... the reference validator accepts the body of '$name'"
	fi
}
bad_tr "without valServerConnInfo" '{"valServiceId":"ghost"}' /valServerConnInfo
bad_tr "with ipv4Addr and uri" '{"valServiceId":"ghost","valServerConnInfo":{"ipv4Addr":"127.0.0.1","uri":"x://h:1","port":5}}' /valServerConnInfo
bad_tr "with no address" '{"valServiceId":"ghost","valServerConnInfo":{"port":5}}' /valServerConnInfo
bad_tr "with port 70000" '{"valServiceId":"ghost","valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":70000}}' /valServerConnInfo/port
bad_tr "with ipv4Addr 999.1.1.1" '{"valServiceId":"ghost","valServerConnInfo":{"ipv4Addr":"999.1.1.1","port":5}}' /valServerConnInfo/ipv4Addr
bad_tr "with a bad ipv6Addr" '{"valServiceId":"ghost","valServerConnInfo":{"ipv6Addr":"12345::zz","port":5}}' /valServerConnInfo/ipv6Addr
bad_tr "with valTargetId naming both" '{"valServiceId":"ghost","valTargetId":{"valUserId":"a","valUeId":"b"},"valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":5}}' /valTargetId
bad_tr "with suppFeat xyz" '{"valServiceId":"ghost","suppFeat":"xyz","valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":5}}' /suppFeat
bad_tr "with valServerBdw lacking totalDlBdw" '{"valServiceId":"ghost","valServerBdw":{"totalUlBdw":1},"valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":5}}' /valServerBdw/totalDlBdw
bad_tr "with a negative bandwidth" '{"valServiceId":"ghost","valUsersBdw":{"minUlBdw":-1,"minDlBdw":1,"maxUlBdw":1,"maxDlBdw":1},"valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":5}}' /valUsersBdw/minUlBdw
bad_tr "with an empty altQoSReferences" '{"valServiceId":"ghost","qosInfo":{"altQoSReferences":[]},"valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":5}}' /qosInfo/altQoSReferences
bad_tr "with valServiceId a number" '{"valServiceId":7,"valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":5}}' /valServiceId
bad_tr "that is an array" '[1]' /
bad_tr "without a port (sealguard needs one to relay)" '{"valServiceId":"ghost","valServerConnInfo":{"ipv4Addr":"127.0.0.1"}}' /valServerConnInfo/port
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valServiceId":' "$RT_URL/regular/request-trans"
expect_eq "TransReq malformed JSON: 400" 400 "$CODE"
req "${VAL[@]}" "${AV[@]}" -H 'Content-Type: text/plain' -d "$TR" "$RT_URL/regular/request-trans"
expect_eq "TransReq as text/plain: 415" 415 "$CODE"

# --- SEALDD-UU: users log in, flows ---
login() { SG login --issuer "$ISS" --client-id ue-app --client-secret-file "$T/ue.secret" --username "$1" --password-file "$T/$1.pw" --cacert "$CA" --token-cache "$T/$2" --scope "$3" >/dev/null; }
expect "alice logs in (scope openid sdd)" login alice alice.tokens "openid sdd"
expect "bob logs in" login bob bob.tokens "openid sdd"
expect "alice logs in once more for gm only" login alice alice-gm.tokens "openid seal:gm"
DA=(--token-cache "$T/alice.tokens")
DB=(--token-cache "$T/bob.tokens")
DD() { SG dd "$@"; }
refuse "nothing was allocated by the refused TransReqs (flow for ghost: no transmission)" DD open --service ghost "${DA[@]}"
expect_match "... 404 TRANSMISSION_NOT_REQUESTED" "404 TRANSMISSION_NOT_REQUESTED" "$(DD open --service ghost "${DA[@]}" 2>&1)"
expect_match "registry: nothing was allocated for the refused VAL service (404 TRANSMISSION_NOT_REQUESTED)" "404 TRANSMISSION_NOT_REQUESTED" "$(DD open --service unserved "${DA[@]}" 2>&1)"
refuse "a token without scope sdd cannot open a flow" DD open --service v2x --token-cache "$T/alice-gm.tokens"
refuse "a VAL server token cannot open a flow on SEALDD-UU" bash -c "printf '%s' '$VT' >'$T/vt'; '$SG_BIN' --config '$T/sg.yaml' dd open --service v2x --token-file '$T/vt'"
FLOW=$(DD open --service v2x "${DA[@]}")
AF=$(jget "$FLOW" sddFlowId)
expect_match "alice opens a flow for v2x: sddFlowId of 128 bits" '^[A-Za-z0-9_-]{22}$' "$AF"
expect_eq "... data endpoint and lifetime" "127.0.0.1 $DATA 120 regular" "$(jget "$FLOW" host) $(jget "$FLOW" port) $(jget "$FLOW" lifetime) $(jget "$FLOW" transType)"
ATOK=$(py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/alice.tokens")
BTOK=$(py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/bob.tokens")
req -H "Authorization: Bearer $ATOK" "https://localhost:$UU/sdd-flows/v1/flows/$AF"
expect_eq "alice reads her flow: 200" "200 $AF" "$CODE $(jget "$BODY" sddFlowId)"

# payload integrity, random sizes up to several MiB
for size in 1 1000 65536 65537 $((3 * 1024 * 1024 + 123)) $((6 * 1024 * 1024)); do
	head -c "$size" /dev/urandom >"$T/p.$size"
	out=$(DD send --flow "$AF" --in "$T/p.$size" --echo --out "$T/e.$size" "${DA[@]}" --timeout-ms 30000 2>&1)
	if [ "$(sha256sum <"$T/p.$size" | cut -d' ' -f1)" = "$(sha256sum <"$T/e.$size" | cut -d' ' -f1)" ] && printf '%s' "$out" | grep -q verified; then
		ok "integrity: $size bytes through SEALDD and back, SHA-256 equal ($(printf '%s' "$out" | grep -o '[0-9.]* MB/s'))"
	else
		not_ok "integrity: $size bytes: $out"
	fi
done
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v k="$1" '$1==k{print $2}'; }
UPB=$(metric 'sealguard_sdd_relayed_bytes_total{direction="uplink"}')
DNB=$(metric 'sealguard_sdd_relayed_bytes_total{direction="downlink"}')
SUM=$((1 + 1000 + 65536 + 65537 + 3 * 1024 * 1024 + 123 + 6 * 1024 * 1024))
expect_eq "metrics: bytes relayed uplink = downlink = the payloads echoed ($SUM)" "$SUM $SUM" "${UPB:-none} ${DNB:-none}"
expect_match "metrics: flows open, channels open, notifications are exposed" '^[0-9]+ [0-9]+ [0-9]+$' "$(metric sealguard_sdd_flows_open) $(metric sealguard_sdd_channels_open) $(metric 'sealguard_sdd_notifications_total{result="sent"}')"
head -c 200000 /dev/urandom >"$T/half"
expect "send without reading (the echo waits in the relay)" DD send --flow "$AF" --in "$T/half" "${DA[@]}"
expect "... a later channel of the same user receives it" DD recv --flow "$AF" --bytes 200000 --out "$T/half.back" "${DA[@]}"
expect_eq "... byte for byte" "$(sha256sum <"$T/half" | cut -d' ' -f1)" "$(sha256sum <"$T/half.back" | cut -d' ' -f1)"

# flow isolation
printf 'secret of alice' >"$T/sa"
expect_match "bob's client cannot look alice's flow up (404)" "404" "$(DD send --flow "$AF" --in "$T/sa" "${DB[@]}" 2>&1)"
req -H "Authorization: Bearer $BTOK" "https://localhost:$UU/sdd-flows/v1/flows/$AF"
expect_eq "bob reads alice's flow over SEALDD-UU: 404 (as if it did not exist)" 404 "$CODE"
req -H "Authorization: Bearer $BTOK" -X DELETE "https://localhost:$UU/sdd-flows/v1/flows/$AF"
expect_eq "bob releases alice's flow: 404" 404 "$CODE"
GUESS=$(py 'import secrets,base64;print(base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode())')
req -H "Authorization: Bearer $BTOK" "https://localhost:$UU/sdd-flows/v1/flows/$GUESS"
expect_eq "a guessed flow id: 404" 404 "$CODE"
expect "alice's flow still works after bob's attempts" DD send --flow "$AF" --in "$T/sa" --echo "${DA[@]}"

# malformed and oversized frames (raw TLS 1.3 client)
raw() { py '
import socket,ssl,struct,sys
import base64
ca,port,tok,mode=sys.argv[1],int(sys.argv[2]),sys.argv[3],sys.argv[4]
fid=base64.urlsafe_b64decode(sys.argv[5]+"==") if len(sys.argv)>5 else b"\x01"*16
ctx=ssl.create_default_context(cafile=ca); ctx.minimum_version=ssl.TLSVersion.TLSv1_3
s=ctx.wrap_socket(socket.create_connection(("127.0.0.1",port)),server_hostname="localhost")
def fr(t,payload=b"",seq=0,flow=bytes(16),ln=None,ver=1,rsv=0):
    return struct.pack(">BBHIQ",ver,t,rsv,len(payload) if ln is None else ln,seq)+flow+payload
auth=fr(1,tok.encode())
msgs={"version":auth+fr(5,b"x",1,b"\x01"*16,ver=9),
      "oversized":auth+fr(5,b"",1,b"\x01"*16,ln=1<<30),
      "noauth":fr(5,b"hello",1,b"\x01"*16),
      "type":auth+fr(42),
      "reserved":auth+fr(3,flow=b"\x01"*16,rsv=1),
      "badtoken":fr(1,b"ey.not.atoken"),
      "serverframe":auth+fr(2),
      "attach":auth+fr(3,flow=fid)+fr(6,flow=fid)+fr(3,flow=bytes(16)),
      "data":auth+fr(5,b"injected",1,fid)+fr(3,flow=bytes(16))}[mode]
s.sendall(msgs)
s.settimeout(5)
data=b""
try:
    while True:
        d=s.recv(65536)
        if not d: break
        data+=d
except Exception as e:
    print("no close:",e); sys.exit(1)
i=0; out=[]
while i+32<=len(data):
    t=data[i+1]; n=struct.unpack(">I",data[i+4:i+8])[0]
    out.append("%d:%s"%(t,data[i+32:i+32+n].decode(errors="replace"))); i+=32+n
print(" | ".join(out))' "$CA" "$DATA" "${2:-$ATOK}" "$1" ${3:+"$3"}; }
expect_match "frame with an unknown version: ERROR PROTOCOL_ERROR, channel closed" "8:PROTOCOL_ERROR: unknown frame version" "$(raw version)"
expect_match "frame announcing 1 GiB: ERROR FRAME_TOO_LARGE before the payload" "8:FRAME_TOO_LARGE" "$(raw oversized)"
expect_match "DATA before AUTH: ERROR UNAUTHENTICATED" "^8:UNAUTHENTICATED" "$(raw noauth)"
expect_match "unknown frame type: ERROR PROTOCOL_ERROR" "8:PROTOCOL_ERROR: unknown frame type" "$(raw type)"
expect_match "reserved bits set: ERROR PROTOCOL_ERROR" "8:PROTOCOL_ERROR: reserved" "$(raw reserved)"
expect_match "a forged token: ERROR UNAUTHENTICATED" "^8:UNAUTHENTICATED" "$(raw badtoken)"
expect_match "a server-only frame from the client: ERROR PROTOCOL_ERROR" "8:PROTOCOL_ERROR" "$(raw serverframe)"
expect_match "bob's channel: ATTACH to alice's flow is UNKNOWN_FLOW (channel stays up)" "^2:.*8:UNKNOWN_FLOW" "$(raw attach "$BTOK" "$AF")"
expect_match "bob's channel: DATA on alice's flow is refused (not attached)" "^2:.*8:UNKNOWN_FLOW: not attached" "$(raw data "$BTOK" "$AF")"
expect_match "a guessed flow id on the data channel: UNKNOWN_FLOW, like another user's flow" "8:UNKNOWN_FLOW" "$(raw attach "$BTOK" "$GUESS")"
expect "the SEALDD server still serves after the bad frames" DD send --flow "$AF" --in "$T/sa" --echo "${DA[@]}"

# VAL server endpoint refuses, is not the requesting VAL server, dies
DEADF=$(jget "$(DD open --service dead "${DA[@]}")" sddFlowId)
t0=$(date +%s)
expect_match "VAL endpoint refuses connections: the client is told (VAL_SERVER_UNREACHABLE)" "VAL_SERVER_UNREACHABLE" "$(DD send --flow "$DEADF" --in "$T/sa" "${DA[@]}" 2>&1)"
expect_match "... without hanging" '^[0-5]$' "$(($(date +%s) - t0))"
EVF=$(jget "$(DD open --service evil "${DA[@]}")" sddFlowId)
N0=$(grep -c "connection from" "$T/echo.log")
expect_match "VAL endpoint without the requesting VAL server's identity: VAL_SERVER_IDENTITY" "VAL_SERVER_IDENTITY" "$(DD send --flow "$EVF" --in "$T/sa" "${DA[@]}" 2>&1)"
expect_eq "... refused inside the handshake: that endpoint never got the SEALDD server's certificate (no new mutual TLS connection)" "$N0" "$(grep -c "connection from" "$T/echo.log")"
expect_match "... the log says so" "does not present DNS:evil-app: relay refused in the handshake" "$(cat "$T/server.log")"
# a flow is relayed under the transmission it was created under: a request-trans that repeats
# it changes nothing, one that replaces it (another endpoint) ends the flows not relayed yet
DF1=$(jget "$(DD open --service dead "${DA[@]}")" sddFlowId)
DF2=$(jget "$(DD open --service dead "${DA[@]}")" sddFlowId)
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "{\"valServiceId\":\"dead\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":1}}" "$RT_URL/regular/request-trans"
expect_eq "v2x-app repeats its request-trans for dead: 200" 200 "$CODE"
expect_match "... a flow created before is relayed as before (VAL_SERVER_UNREACHABLE, port 1)" "VAL_SERVER_UNREACHABLE" "$(DD send --flow "$DF1" --in "$T/sa" "${DA[@]}" 2>&1)"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "{\"valServiceId\":\"dead\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}" "$RT_URL/regular/request-trans"
expect_eq "v2x-app moves dead to its echo endpoint: 200" 200 "$CODE"
expect_match "... a flow created before and never attached is not relayed to the old target: TRANSMISSION_NOT_REQUESTED" "TRANSMISSION_NOT_REQUESTED" "$(DD send --flow "$DF2" --in "$T/sa" --echo "${DA[@]}" 2>&1)"
expect_match "... the log says why" "flow of VAL service dead \(VAL server v2x-app\) ended at its first ATTACH: the transmission for this VAL service was replaced" "$(cat "$T/server.log")"
DF3=$(jget "$(DD open --service dead "${DA[@]}")" sddFlowId)
expect "... a new flow goes to the new endpoint (echoed)" DD send --flow "$DF3" --in "$T/sa" --echo "${DA[@]}"
F2=$(jget "$(DD open --service v2x "${DA[@]}")" sddFlowId)
DD recv --flow "$F2" --bytes 1000000 --timeout-ms 60000 --out /dev/null "${DA[@]}" >"$T/recv2.out" 2>&1 &
RP=$!
sleep 1.5
stop_echo
t0=$(date +%s)
wait "$RP"; rc=$?
expect_eq "VAL endpoint dies mid-flow: the receiving client fails" 1 "$rc"
expect_match "... told VAL_SERVER_CLOSED" "VAL_SERVER_CLOSED" "$(cat "$T/recv2.out")"
expect_match "... within seconds" '^[0-5]$' "$(($(date +%s) - t0))"
expect "echo VAL server endpoint restarts" start_echo

# release
F3=$(jget "$(DD open --service v2x "${DA[@]}")" sddFlowId)
expect "alice releases a flow" DD close --flow "$F3" "${DA[@]}"
sleep 0.5
expect_match "... it is gone (UNKNOWN_FLOW on the data channel)" "404|UNKNOWN_FLOW" "$(DD send --flow "$F3" --in "$T/sa" "${DA[@]}" 2>&1)"
refuse "... and over SEALDD-UU" DD close --flow "$F3" "${DA[@]}"

# URLLC: two redundant channels, duplicates eliminated by sequence number
UF=$(DD open --service v2x-u "${DA[@]}")
expect_eq "urllc flow" urllc "$(jget "$UF" transType)"
head -c $((2 * 1024 * 1024 + 7)) /dev/urandom >"$T/u"
expect_match "urllc: 2 MiB over two redundant channels, echoed once, SHA-256 equal" verified "$(DD send --flow "$(jget "$UF" sddFlowId)" --in "$T/u" --echo "${DA[@]}" --timeout-ms 30000 2>&1)"
DUPS=$(metric sealguard_sdd_duplicates_dropped_total)
if [ -n "$DUPS" ] && [ "$DUPS" -ge 1 ]; then ok "metrics: URLLC duplicates dropped counted ($DUPS)"; else not_ok "metrics: duplicates dropped: '${DUPS}'"; fi

# connection status subscriptions, notifications over mutual TLS
# the endpoint authenticates as v2x-app, the subscriber (and as localhost, the notifUri's host)
expect "notification endpoint of v2x-app starts" sg_notif_start "$NOTIF" DNS:localhost,DNS:v2x-app "$T/notifs"
SUB="{\"events\":[\"ESTABLISHED\",\"RELEASED\"],\"valServiceId\":\"v2x\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO},\"notifUri\":\"https://localhost:$NOTIF/notify\"}"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$SUB" "$RT_URL/subscriptions"
expect_eq "subscription created: 201" 201 "$CODE"
expect "... the body is a ConnStatusSubsc" schema TS29548_SDD_Transmission.yaml ConnStatusSubsc "$BODY"
SLOC=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
expect_match "... Location names it" "^https://localhost:$S/sdd-trans/v1/subscriptions/[A-Za-z0-9_-]{22}$" "$SLOC"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"events":[],"notifUri":"https://x"}' "$RT_URL/subscriptions"
expect_eq "subscription violating the schema: 400" 400 "$CODE"
req "${EVIL[@]}" -H "Authorization: Bearer $ET" "$SLOC"
expect_eq "another VAL server cannot read it: 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X PATCH -H 'Content-Type: application/merge-patch+json' -d '{"events":["ESTABLISHED","RELEASED"]}' "$SLOC"
expect_eq "subscription patched: 200" 200 "$CODE"
# merge-patch+json is RFC 7396: valServerConnInfo's members are merged, not replaced
req "${VAL[@]}" "${AV[@]}" -X PATCH -H 'Content-Type: application/merge-patch+json' -d '{"valServerConnInfo":{"ipv4Addr":"127.0.0.2"}}' "$SLOC"
expect_eq "PATCH of valServerConnInfo's address: 200, the port kept (RFC 7396)" "200 127.0.0.2 $ECHO" "$CODE $(jget "$BODY" valServerConnInfo ipv4Addr) $(jget "$BODY" valServerConnInfo port)"
# a subscription's valServerConnInfo names the endpoint, nothing connects to it: no port needed
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"events":["RELEASED"],"valServerConnInfo":{"ipv4Addr":"127.0.0.1"},"notifUri":"https://localhost:1/n"}' "$RT_URL/subscriptions"
expect_eq "subscription whose valServerConnInfo has no port (schema-valid): 201" 201 "$CODE"
PL=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
req "${VAL[@]}" "${AV[@]}" -X DELETE "$PL"
expect_eq "... deleted: 204" 204 "$CODE"
# the Location of a request with a 400-byte Host: the apiRoot falls back, the id is never cut
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -H "Host: $(printf 'h%.0s' $(seq 1 400))" -d '{"events":["RELEASED"],"valServerConnInfo":{"ipv4Addr":"127.0.0.1"},"notifUri":"https://localhost:1/n"}' "$RT_URL/subscriptions"
PL=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
expect_match "subscription created with a 400-byte Host: its Location has the whole id ($CODE)" "^https://localhost/sdd-trans/v1/subscriptions/[A-Za-z0-9_-]{22}$" "$PL"
req "${VAL[@]}" "${AV[@]}" -X DELETE "$RT_URL/subscriptions/${PL##*/}"
expect_eq "... and it deletes that subscription: 204" 204 "$CODE"
NF=$(jget "$(DD open --service v2x "${DA[@]}")" sddFlowId)
DD send --flow "$NF" --in "$T/sa" --echo "${DA[@]}" >/dev/null 2>&1
DD close --flow "$NF" "${DA[@]}"
for _ in $(seq 1 30); do [ "$(wc -l <"$T/notifs" 2>/dev/null || echo 0)" -ge 2 ] && break; sleep 0.2; done
N1=$(sed -n 1p "$T/notifs" 2>/dev/null); N2=$(sed -n 2p "$T/notifs" 2>/dev/null)
expect_eq "notifications ESTABLISHED then RELEASED for alice@v2x" "ESTABLISHED alice@v2x RELEASED" "$(jget "${N1:-{\}}" reports 0 event) $(jget "${N1:-{\}}" reports 0 valTgtUe valUserId) $(jget "${N2:-{\}}" reports 0 event)"
expect "... each a ConnStatusNotif" schema TS29548_SDD_Transmission.yaml ConnStatusNotif "${N1:-{\}}"
expect_match "... POSTed over mutual TLS with the SEALDD server's certificate" "localhost" "$(sed -n 1p "$T/notifs.peer" 2>/dev/null)"
req "${VAL[@]}" "${AV[@]}" -X DELETE "$SLOC"
expect_eq "subscription deleted: 204" 204 "$CODE"

# subscription limits (sdd.max_subscriptions_per_server: 2, sdd.max_subscriptions: 3): one VAL
# server cannot take the others' share; a refusal is a 429 ProblemDetails that stores nothing
SUBS=()
for who in VAL VAL; do
	req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$SUB" "$RT_URL/subscriptions"
	SUBS+=("$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')")
done
expect_eq "v2x-app: two subscriptions created" "201 2" "$CODE ${#SUBS[@]}"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$SUB" "$RT_URL/subscriptions"
expect_eq "... a third: 429" 429 "$CODE"
expect "... a ProblemDetails" schema TS29122_CommonData.yaml ProblemDetails "$BODY"
expect_match "... naming the VAL server's limit" "this VAL server" "$(jget "$BODY" detail)"
expect_eq "... without a Location" "" "$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')"
ESUB="{\"events\":[\"ESTABLISHED\"],\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO},\"notifUri\":\"https://localhost:$NOTIF/notify\"}"
req "${EVIL[@]}" -H "Authorization: Bearer $ET" "${JS[@]}" -d "$ESUB" "$RT_URL/subscriptions"
expect_eq "evil-app still gets one: 201" 201 "$CODE"
ELOC=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
req "${EVIL[@]}" -H "Authorization: Bearer $ET" "${JS[@]}" -d "$ESUB" "$RT_URL/subscriptions"
expect_eq "... the server's limit (3) reached: 429" 429 "$CODE"
expect_match "... naming the server's limit" "SEALDD server" "$(jget "$BODY" detail)"
req "${VAL[@]}" "${AV[@]}" -X DELETE "${SUBS[0]}"
req "${EVIL[@]}" -H "Authorization: Bearer $ET" "${JS[@]}" -d "$ESUB" "$RT_URL/subscriptions"
expect_eq "... one deleted: evil-app gets another" 201 "$CODE"
ELOC2=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
for l in "${SUBS[1]}"; do req "${VAL[@]}" "${AV[@]}" -X DELETE "$l"; done
for l in "$ELOC" "$ELOC2"; do req "${EVIL[@]}" -H "Authorization: Bearer $ET" -X DELETE "$l"; done
expect_eq "... all deleted" 204 "$CODE"

# a revoked token mid-flow
expect "alice logs in again (a token to revoke)" login alice alice-rev.tokens "openid sdd"
RTOK=$(py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/alice-rev.tokens")
RF=$(jget "$(DD open --service v2x --token-cache "$T/alice-rev.tokens")" sddFlowId)
DD recv --flow "$RF" --timeout-ms 60000 --bytes 1 --token-cache "$T/alice-rev.tokens" >"$T/rev.out" 2>&1 &
RP=$!
sleep 1
code=$("${C[@]}" -u "ue-app:$(cat "$T/ue.secret")" -o /dev/null -w '%{http_code}' --data-urlencode "token=$RTOK" "$ISS/oauth2/revoke")
expect_eq "RFC 7009 revoke of that access token" 200 "$code"
t0=$(date +%s%N)
wait "$RP"; rc=$?
el=$((($(date +%s%N) - t0) / 1000000))
expect_eq "revoked token mid-flow: the flow's channel stops" 1 "$rc"
expect_match "... TOKEN_INVALID" "TOKEN_INVALID" "$(cat "$T/rev.out")"
if [ "$el" -le 4500 ]; then ok "... within the documented bound (revocation_poll_ms 2000 + 1250 ms + slack): ${el} ms"; else not_ok "... took ${el} ms"; fi

# SEALDD server restart: clients see a clean error, and re-establish
RSF=$(jget "$(DD open --service v2x "${DA[@]}")" sddFlowId)
DD recv --flow "$RSF" --timeout-ms 60000 --bytes 1 "${DA[@]}" >"$T/rs.out" 2>&1 &
RP=$!
sleep 1
expect "SEALDD server stops cleanly (SIGTERM)" sg_stop
wait "$RP"; rc=$?
expect_eq "... the attached client fails" 1 "$rc"
expect_match "... with a clean error" "closed the data channel|SHUTTING_DOWN" "$(cat "$T/rs.out")"
# expiry test: short access tokens from now on
sed -i 's/^  scrypt_ln: 10$/  scrypt_ln: 10\n  access_token_ttl_s: 10\n  id_token_ttl_s: 60/' "$T/sg.yaml"
sg_start "$T/sg.yaml" || { not_ok "server restart"; sg_done; }
expect "alice logs in after the restart (10 s tokens)" login alice alice-short.tokens "openid sdd"
DS=(--token-cache "$T/alice-short.tokens")
refuse "flows do not survive a restart (in memory; transmissions do: sdd_restart.sh)" DD send --flow "$RSF" --in "$T/sa" "${DS[@]}"
VT=$(vtok "${VAL[@]}" -d client_id=v2x-app)
req "${VAL[@]}" -H "Authorization: Bearer $VT" "${JS[@]}" -d "$TR" "$RT_URL/regular/request-trans"
expect_eq "the VAL server requests transmission again (replacing the stored one): 200" 200 "$CODE"
NF=$(jget "$(DD open --service v2x "${DS[@]}")" sddFlowId)
expect_match "alice re-establishes a flow" '^[A-Za-z0-9_-]{22}$' "$NF"
expect_match "... and data flows again" verified "$(DD send --flow "$NF" --in "$T/p.65537" --echo "${DS[@]}" 2>&1)"

# an expired token mid-flow (the channel stops at exp; docs/sdd-protocol.md §4)
EXP=$(py 'import json,sys,base64
t=json.load(open(sys.argv[1]))["access_token"].split(".")[1]; t+="="*(-len(t)%4)
print(json.loads(base64.urlsafe_b64decode(t))["exp"])' "$T/alice-short.tokens")
DD recv --flow "$NF" --timeout-ms 60000 --bytes 1 "${DS[@]}" >"$T/exp.out" 2>&1 &
RP=$!
wait "$RP"; rc=$?
late=$(($(date +%s) - EXP))
expect_eq "expired token mid-flow: the channel stops" 1 "$rc"
expect_match "... TOKEN_EXPIRED" "TOKEN_EXPIRED" "$(cat "$T/exp.out")"
expect_match "... within a second of exp" '^-?[01]$' "$late"

sg_stop >/dev/null
sg_done
