#!/usr/bin/env bash
# SEALDD-S state across crashes (TS 29.548 sdd-trans/v1; DESIGN.md §5: an acknowledged write is
# never lost): a transmission (200) and connection status subscriptions (201) acknowledged to a
# VAL server survive `sealguard serve` being SIGKILLed and restarted on the same state dir: the
# transmission still lets a user open a flow and carry data, GET of a subscription answers the
# same body, its notifications are still delivered, and PUT/PATCH/DELETE and a replacing
# request-trans survive a second SIGKILL. Bad bodies and refused changes leave the stored rows
# as they were; a write the store cannot make answers 503 and changes nothing; a stored
# transmission stops authorizing flows once its VAL server is disabled or removed; a state dir
# of the previous schema version is migrated.
. "$(dirname "$0")/lib/common.sh"

ECHO=$(free_port)
ECHO2=$(free_port)
NOTIF=$(free_port)
sg_sdd_start "" v2x-app evil-app
DBF=$T/state/sealguard.db
ISS=https://localhost:$UU
SISS=https://localhost:$S
EVIL=(--cert "$PKI/seal-servers/evil-app.crt" --key "$PKI/seal-servers/evil-app.key")
canon() { py 'import sys,json; print(json.dumps(json.loads(sys.argv[1]),sort_keys=True))' "$1" 2>/dev/null; }
req() {
	"${C[@]}" -D "$T/h" -o "$T/b" "$@"
	CODE=$(awk 'NR==1{print $2}' "$T/h")
	BODY=$(cat "$T/b")
}
# the stored SEALDD-S rows, as an operator's sqlite3 shell sees them
rows() { sqlite3 "$DBF" "SELECT val_service, client_id, identity, trans_type, body, updated_at FROM sdd_trans ORDER BY 1; SELECT subsc_id, owner, body, updated_at FROM sdd_subsc ORDER BY 1;"; }
sg_kill() {
	kill -KILL "$SG_PID" 2>/dev/null
	wait "$SG_PID" 2>/dev/null
	SG_PID=""
}
ECHO_PID=""
NOTIF_PID=""
start_echo() { sg_echo_start "$ECHO"; }
cleanup_sdd() {
	[ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null
	[ -n "$NOTIF_PID" ] && kill "$NOTIF_PID" 2>/dev/null
	sg_cleanup
}
trap cleanup_sdd EXIT

printf 'alice-pass-1\n' >"$T/alice.pw"
expect "user add alice" SG user add alice --password-file "$T/alice.pw" --val-user-id v2x=alice@v2x
expect "client add ue-app" SG client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$T/ue.secret"
expect "valserver add v2x-app (v2x, v2x-b)" SG valserver add v2x-app --identity DNS:v2x-app --val-service v2x --val-service v2x-b
expect "valserver add evil-app" SG valserver add evil-app --identity DNS:evil-app --val-service evil
expect "echo VAL server endpoint starts" start_echo
# the endpoint authenticates as v2x-app, the subscriber (and as localhost, the notifUri's host)
expect "notification endpoint of v2x-app starts" sg_notif_start "$NOTIF" DNS:localhost,DNS:v2x-app "$T/notifs"
sleep 1.2 # the registry snapshot follows the store within 0.5 s

vtok() { jget "$("${C[@]}" "$@" -d grant_type=client_credentials -d resource=sealguard:sdd "$SISS/oauth2/token")" access_token; }
tokens() {
	VT=$(vtok "${VAL[@]}" -d client_id=v2x-app)
	ET=$(vtok "${EVIL[@]}" -d client_id=evil-app)
	AV=(-H "Authorization: Bearer $VT")
	AE=(-H "Authorization: Bearer $ET")
}
tokens
JS=(-H 'Content-Type: application/json')
MP=(-H 'Content-Type: application/merge-patch+json')
RT_URL=$SISS/sdd-trans/v1
login() { SG login --issuer "$ISS" --client-id ue-app --client-secret-file "$T/ue.secret" --username alice --password-file "$T/alice.pw" --cacert "$CA" --token-cache "$T/$1" --scope "openid sdd" >/dev/null; }
DD() { SG dd "$@"; }

# --- acknowledged writes ---
TR="{\"valServiceId\":\"v2x\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$TR" "$RT_URL/regular/request-trans"
expect_eq "request-trans v2x: 200" 200 "$CODE"
expect_eq "... stored once acknowledged (sqlite3)" "v2x|v2x-app|DNS:v2x-app|regular" "$(sqlite3 "$DBF" 'SELECT val_service, client_id, identity, trans_type FROM sdd_trans')"
SUB() { printf '{"events":[%s],"valServiceId":"v2x","valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":%s},"notifUri":"https://localhost:%s/%s"}' "$1" "$ECHO" "$NOTIF" "$2"; }
mksub() {
	req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$1" "$RT_URL/subscriptions"
	LOC=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
}
mksub "$(SUB '"ESTABLISHED","RELEASED"' one)"
L1=$LOC
expect_eq "subscription 1 created: 201" 201 "$CODE"
B1=$(canon "$BODY")
mksub "$(SUB '"RELEASED"' two)"
L2=$LOC
expect_eq "subscription 2 created: 201" 201 "$CODE"
mksub "$(SUB '"ESTABLISHED"' three)"
L3=$LOC
expect_eq "subscription 3 created: 201" 201 "$CODE"
expect_eq "... three subscriptions stored, owned by v2x-app" "3 v2x-app" "$(sqlite3 "$DBF" 'SELECT count(*), min(owner) FROM sdd_subsc' | tr '|' ' ')"
# the stored row: the answered body, its expTime as expires_at (ms), the subscriber's identity
ROW=$(sqlite3 -separator ' ' "$DBF" "SELECT body, expires_at, identity FROM sdd_subsc WHERE subsc_id = '${L1##*/}'")
expect_eq "... the stored body is the answered one, its expTime and identity with it" "$B1" "$(py 'import json,sys,datetime
b,ms,who=sys.argv[1].rsplit(" ",2); o=json.loads(b)
t=datetime.datetime.fromtimestamp(int(ms)/1000,datetime.timezone.utc)
o["expTime"]=t.strftime("%Y-%m-%dT%H:%M:%S.")+"%03dZ"%(int(ms)%1000)
print(json.dumps(o,sort_keys=True) if who=="DNS:v2x-app" else who)' "$ROW")"
expect_eq "... expTime is a day from now (sdd.subscription_lifetime_s)" yes "$(py 'import sys,datetime,time
t=datetime.datetime.strptime(sys.argv[1],"%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
print("yes" if abs(t.timestamp()-time.time()-86400)<120 else sys.argv[1])' "$(jget "$BODY" expTime)")"

# --- bad input and refused changes: 4xx, and the stored rows stay as they were ---
BEFORE=$(rows)
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valServiceId":"v2x","valServerConnInfo":{"ipv4Addr":"999.1.1.1","port":5}}' "$RT_URL/regular/request-trans"
expect_eq "TransReq breaking the schema: 400" 400 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "{\"valServiceId\":\"evil\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}" "$RT_URL/regular/request-trans"
expect_eq "TransReq for a VAL service the VAL server does not serve: 403" 403 "$CODE"
req "${EVIL[@]}" "${AE[@]}" "${JS[@]}" -d "$TR" "$RT_URL/regular/request-trans"
expect_eq "another VAL server's TransReq for v2x: 403" 403 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X PUT "${JS[@]}" -d '{"events":[],"notifUri":"https://x"}' "$L1"
expect_eq "PUT breaking the schema: 400" 400 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X PATCH "${MP[@]}" -d '{"events":[]}' "$L1"
expect_eq "PATCH leaving an invalid subscription: 400 INVALID_MSG_FORMAT" "400 INVALID_MSG_FORMAT" "$CODE $(jget "$BODY" cause)"
req "${VAL[@]}" "${AV[@]}" -X PATCH "${MP[@]}" -d '{"notifUri":"http://plain"}' "$L1"
expect_eq "PATCH to a non-https notifUri: 400" 400 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X PATCH "${MP[@]}" -d '[1]' "$L1"
expect_eq "PATCH that is not an object: 400" 400 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X PATCH "${JS[@]}" -d '{"events":["RELEASED"]}' "$L1"
expect_eq "PATCH as application/json: 415" 415 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X PUT "${MP[@]}" -d "$(SUB '"RELEASED"' mp)" "$L1"
expect_eq "PUT as application/merge-patch+json (a whole, valid body): 415, not taken for a replacement" 415 "$CODE"
req "${VAL[@]}" "${AV[@]}" -H 'Content-Type: application/problem+json' -d "$(SUB '"RELEASED"' pj)" "$RT_URL/subscriptions"
expect_eq "POST as application/problem+json: 415" 415 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"events":["NOPE"],"notifUri":"https://x"}' "$RT_URL/subscriptions"
expect_eq "subscription with an unknown event: 400" 400 "$CODE"
req "${EVIL[@]}" "${AE[@]}" -X PUT "${JS[@]}" -d "$(SUB '"RELEASED"' evil)" "$L1"
expect_eq "another VAL server's PUT: 404" 404 "$CODE"
req "${EVIL[@]}" "${AE[@]}" -X PATCH "${MP[@]}" -d '{"events":["RELEASED"]}' "$L1"
expect_eq "another VAL server's PATCH: 404" 404 "$CODE"
req "${EVIL[@]}" "${AE[@]}" -X DELETE "$L1"
expect_eq "another VAL server's DELETE: 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X DELETE "$RT_URL/subscriptions/AAAAAAAAAAAAAAAAAAAAAA"
expect_eq "DELETE of an unknown subscription: 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X PUT "${JS[@]}" -d "$(SUB '"RELEASED"' x)" "$RT_URL/subscriptions/AAAAAAAAAAAAAAAAAAAAAA"
expect_eq "PUT of an unknown subscription: 404" 404 "$CODE"
expect_eq "... the stored rows are unchanged by all of them" "$BEFORE" "$(rows)"

# --- a write the store cannot make: 503, nothing changes (another process holds the write
# lock longer than the store's busy timeout) ---
python3 -c 'import sqlite3,sys,time
c=sqlite3.connect(sys.argv[1],isolation_level=None); c.execute("BEGIN IMMEDIATE"); print("locked",flush=True); time.sleep(9)' "$DBF" >"$T/lock.out" &
LOCK_PID=$!
for _ in $(seq 1 50); do grep -q locked "$T/lock.out" 2>/dev/null && break; sleep 0.1; done
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "{\"valServiceId\":\"v2x-b\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}" "$RT_URL/regular/request-trans"
expect_eq "request-trans while the store is locked: 503 SERVICE_UNAVAILABLE" "503 SERVICE_UNAVAILABLE" "$CODE $(jget "$BODY" cause)"
wait "$LOCK_PID"
expect "alice logs in" login alice.tokens
DA=(--token-cache "$T/alice.tokens")
expect_match "... the refused transmission authorizes nothing (404 TRANSMISSION_NOT_REQUESTED)" "404 TRANSMISSION_NOT_REQUESTED" "$(DD open --service v2x-b "${DA[@]}" 2>&1)"
expect_eq "... and the stored rows are unchanged" "$BEFORE" "$(rows)"

# --- SIGKILL, restart on the same state dir ---
sg_kill
sg_start "$T/sg.yaml" || { not_ok "restart after SIGKILL"; sg_done; }
ok "sealguard restarts after SIGKILL"
expect_match "the server loaded what it had acknowledged" "1 transmissions and 3 subscriptions loaded" "$(cat "$T/server.log")"
expect_match "dd transmissions lists the stored one, active" "^v2x +regular +v2x-app +127.0.0.1:$ECHO .* active$" "$(SG dd transmissions | grep '^v2x ')"
refuse "dd transmissions takes no options" SG dd transmissions --service v2x
req "${VAL[@]}" "${AV[@]}" "$L1"
expect_eq "GET subscription 1 after the crash: 200 with the same body" "200 $B1" "$CODE $(canon "$BODY")"
req "${EVIL[@]}" "${AE[@]}" "$L1"
expect_eq "... still invisible to another VAL server: 404" 404 "$CODE"
FLOW=$(DD open --service v2x "${DA[@]}")
F1=$(jget "$FLOW" sddFlowId)
expect_match "the transmission still lets alice open a flow" '^[A-Za-z0-9_-]{22}$' "$F1"
head -c 100000 /dev/urandom >"$T/p"
expect_match "... and carry data to the VAL server and back" verified "$(DD send --flow "$F1" --in "$T/p" --echo "${DA[@]}" 2>&1)"
expect "... alice releases it" DD close --flow "$F1" "${DA[@]}"
for _ in $(seq 1 40); do [ "$(cat "$T/notifs" 2>/dev/null | wc -l)" -ge 4 ] && break; sleep 0.2; done
S1ID=${L1##*/}
S2ID=${L2##*/}
S3ID=${L3##*/}
ev_of() { py 'import sys,json
for l in open(sys.argv[1]):
    n=json.loads(l)
    if n["subscriptionId"]==sys.argv[2]: print(n["reports"][0]["event"])' "$T/notifs" "$1" | tr '\n' ' '; }
expect_eq "subscription 1's notifications are still delivered (ESTABLISHED, RELEASED)" "ESTABLISHED RELEASED " "$(ev_of "$S1ID")"
expect_eq "... subscription 2 (RELEASED only) too" "RELEASED " "$(ev_of "$S2ID")"
expect_eq "... subscription 3 (ESTABLISHED only) too" "ESTABLISHED " "$(ev_of "$S3ID")"

# --- changes after the restart survive the next crash ---
req "${VAL[@]}" "${AV[@]}" -X PUT "${JS[@]}" -d "$(SUB '"RELEASED"' three-put)" "$L3"
expect_eq "PUT subscription 3: 200" 200 "$CODE"
B3=$(canon "$BODY")
req "${VAL[@]}" "${AV[@]}" -X PATCH "${MP[@]}" -d '{"events":["RELEASED"],"valServiceId":null}' "$L1"
expect_eq "PATCH subscription 1 (events, valServiceId removed): 200" "200 [\"RELEASED\"] None" "$CODE $(jget "$BODY" events) $(jget "$BODY" valServiceId)"
B1P=$(canon "$BODY")
req "${VAL[@]}" "${AV[@]}" -X DELETE "$L2"
expect_eq "DELETE subscription 2: 204" 204 "$CODE"
"$SG_BIN" --config "$T/sg.yaml" dd echo-server --bind "127.0.0.1:$ECHO2" "${VAL[@]}" --cacert "$CA" 2>>"$T/echo.log" &
ECHO2_PID=$!
TR2="{\"valServiceId\":\"v2x\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO2}}"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$TR2" "$RT_URL/urllc/request-trans"
expect_eq "request-trans v2x again (urllc, another endpoint): 200, replaces the first" 200 "$CODE"
expect_eq "... one transmission per VAL service is stored" "1 urllc" "$(sqlite3 "$DBF" "SELECT count(*), max(trans_type) FROM sdd_trans WHERE val_service = 'v2x'" | tr '|' ' ')"
sg_kill
sg_start "$T/sg.yaml" || { not_ok "second restart after SIGKILL"; sg_done; }
req "${VAL[@]}" "${AV[@]}" "$L3"
expect_eq "after the second crash: the PUT survived" "200 $B3" "$CODE $(canon "$BODY")"
req "${VAL[@]}" "${AV[@]}" "$L1"
expect_eq "... the PATCH survived" "200 $B1P" "$CODE $(canon "$BODY")"
req "${VAL[@]}" "${AV[@]}" "$L2"
expect_eq "... the DELETE survived (404)" 404 "$CODE"
UF=$(DD open --service v2x "${DA[@]}")
expect_eq "... the replacing transmission survived (urllc flow)" urllc "$(jget "$UF" transType)"
expect_match "... relayed to the new endpoint" verified "$(DD send --flow "$(jget "$UF" sddFlowId)" --in "$T/p" --echo "${DA[@]}" 2>&1)"

# --- expiry (expTime, sdd.subscription_lifetime_s): a subscription is gone once its time
# comes, whether the server was down then (deleted at start) or running (no notification,
# 404 to GET/PUT/DELETE, its row deleted within SUBSC_SWEEP_MS: it stops counting) ---
sg_stop >/dev/null
NOWMS=$(($(date +%s%N) / 1000000))
EXP3=$((NOWMS + 15000))
sqlite3 "$DBF" "UPDATE sdd_subsc SET expires_at = $((NOWMS - 1000)) WHERE subsc_id = '$S1ID'; UPDATE sdd_subsc SET expires_at = $EXP3 WHERE subsc_id = '$S3ID'"
sg_start "$T/sg.yaml" || { not_ok "restart with an expired subscription"; sg_done; }
expect_match "a subscription that expired while the server was down is deleted at start" "1 subscriptions loaded \\(1 expired ones deleted" "$(cat "$T/server.log")"
expect_eq "... its row is gone" 0 "$(sqlite3 "$DBF" "SELECT count(*) FROM sdd_subsc WHERE subsc_id = '$S1ID'")"
req "${VAL[@]}" "${AV[@]}" "$L1"
expect_eq "... GET: 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" "$L3"
expect_eq "subscription 3 answers its stored expiry as expTime" "200 $(py 'import sys,datetime
ms=int(sys.argv[1]); t=datetime.datetime.fromtimestamp(ms/1000,datetime.timezone.utc)
print(t.strftime("%Y-%m-%dT%H:%M:%S.")+"%03dZ"%(ms%1000))' "$EXP3")" "$CODE $(jget "$BODY" expTime)"
mksub "$(SUB '"ESTABLISHED","RELEASED"' four)"
L4=$LOC
expect_eq "subscription 4 created: 201" 201 "$CODE"
while [ $(($(date +%s%N) / 1000000)) -le $((EXP3 + 100)) ]; do sleep 0.2; done
req "${VAL[@]}" "${AV[@]}" "$L3"
expect_eq "subscription 3 once expired: GET 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X PUT "${JS[@]}" -d "$(SUB '"RELEASED"' late)" "$L3"
expect_eq "... PUT 404 (no renewal after expiry)" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X DELETE "$L3"
expect_eq "... DELETE 404" 404 "$CODE"
: >"$T/notifs"
F4=$(jget "$(DD open --service v2x "${DA[@]}")" sddFlowId)
expect_match "a flow carries data" verified "$(DD send --flow "$F4" --in "$T/p" --echo "${DA[@]}" 2>&1)"
expect "... and is released" DD close --flow "$F4" "${DA[@]}"
for _ in $(seq 1 40); do [ "$(wc -l <"$T/notifs")" -ge 2 ] && break; sleep 0.2; done
sleep 1 # anything for subscription 3 would have been queued with subscription 4's RELEASED
expect_eq "... subscription 4 is notified, the expired subscription 3 is not" "$(printf '%s\n' "${L4##*/}" "${L4##*/}")" "$(py 'import sys,json
for l in open(sys.argv[1]): print(json.loads(l)["subscriptionId"])' "$T/notifs")"
gone3() { [ "$(sqlite3 "$DBF" "SELECT count(*) FROM sdd_subsc WHERE subsc_id = '$S3ID'")" = 0 ]; }
for _ in $(seq 1 60); do gone3 && break; sleep 0.2; done
expect "... its row is deleted within 10 s of its expiry (it no longer counts)" gone3
expect_eq "... only subscription 4 is stored" "1 ${L4##*/}" "$(sqlite3 "$DBF" 'SELECT count(*), max(subsc_id) FROM sdd_subsc' | tr '|' ' ')"

# --- the identity is the registered one, wherever the certificate lists it ---
"$SG_BIN" --config "$T/sg.yaml" pki issue --dir "$PKI" --san DNS:aaa-first,DNS:v2x-app --client-auth --server-auth --out "$T/multi" >/dev/null
MULTI=(--cert "$T/multi.crt" --key "$T/multi.key")
AM=(-H "Authorization: Bearer $(vtok "${MULTI[@]}" -d client_id=v2x-app)")
req "${MULTI[@]}" "${AM[@]}" "${JS[@]}" -d "$(SUB '"RELEASED"' five)" "$RT_URL/subscriptions"
L5=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
expect_eq "a certificate with SANs DNS:aaa-first,DNS:v2x-app subscribes: 201, bound to DNS:v2x-app" "201 DNS:v2x-app" "$CODE $(sqlite3 "$DBF" "SELECT identity FROM sdd_subsc WHERE subsc_id = '${L5##*/}'")"
expect_eq "... the subscription of the plain DNS:v2x-app certificate is kept" 2 "$(sqlite3 "$DBF" 'SELECT count(*) FROM sdd_subsc')"
req "${VAL[@]}" "${AV[@]}" "$L5"
expect_eq "... and the plain certificate reads the new one: 200" 200 "$CODE"
req "${MULTI[@]}" "${AM[@]}" "${JS[@]}" -d "$TR2" "$RT_URL/urllc/request-trans"
expect_eq "... its request-trans: 200, the transmission bound to DNS:v2x-app" "200 DNS:v2x-app" "$CODE $(sqlite3 "$DBF" "SELECT identity FROM sdd_trans WHERE val_service = 'v2x'")"
expect_match "... so the relay still finds the VAL server's endpoint (DNS:v2x-app)" verified "$(DD send --flow "$(jget "$(DD open --service v2x "${DA[@]}")" sddFlowId)" --in "$T/p" --echo "${DA[@]}" 2>&1)"
# a flow established now: its relay stays up while the VAL server is disabled, removed and
# added again with another identity (below)
FX=$(jget "$(DD open --service v2x "${DA[@]}")" sddFlowId)
expect "a flow of v2x is established (echoed)" DD send --flow "$FX" --in "$T/p" --echo "${DA[@]}"
kill "$ECHO2_PID" 2>/dev/null

# --- the registry decides at every flow: a stored transmission of a disabled or removed VAL
# server authorizes nothing ---
sqlite3 "$DBF" "UPDATE valservers SET disabled = 1 WHERE name = 'v2x-app'"
sleep 1.2
expect_match "VAL server disabled: its stored transmission opens no flow (404)" "404 TRANSMISSION_NOT_REQUESTED" "$(DD open --service v2x "${DA[@]}" 2>&1)"
expect_match "... dd transmissions says inactive" "inactive: VAL server disabled" "$(SG dd transmissions)"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$(SUB '"RELEASED"' disabled)" "$RT_URL/subscriptions"
expect_eq "... it cannot create a subscription (403), nothing stored" "403 OPERATION_NOT_ALLOWED 0" "$CODE $(jget "$BODY" cause) $(sqlite3 "$DBF" "SELECT count(*) FROM sdd_subsc WHERE body LIKE '%/disabled%'")"
expect_match "... the ProblemDetails says it is disabled (not that it is unregistered)" "disabled in the registry" "$(jget "$BODY" detail)"
sqlite3 "$DBF" "UPDATE valservers SET disabled = 0 WHERE name = 'v2x-app'"
sleep 1.2
expect_match "enabled again: flows open again" '"sddFlowId"' "$(DD open --service v2x "${DA[@]}" 2>&1)"
NSUB=$(sqlite3 "$DBF" "SELECT count(*) FROM sdd_subsc WHERE owner = 'v2x-app'")
expect_match "v2x-app holds subscriptions ($NSUB)" '^[1-9]' "$NSUB"
expect "valserver remove v2x-app" SG valserver remove v2x-app
sleep 1.2
expect_eq "... its subscriptions are deleted: nobody can read or delete them any more, they no longer count" 0 "$(sqlite3 "$DBF" "SELECT count(*) FROM sdd_subsc WHERE owner = 'v2x-app'")"
expect_match "... the log says so" "VAL server v2x-app was removed from the registry: its $NSUB subscriptions deleted" "$(cat "$T/server.log")"
expect_match "VAL server removed: its stored transmission opens no flow (404)" "404 TRANSMISSION_NOT_REQUESTED" "$(DD open --service v2x "${DA[@]}" 2>&1)"
expect_match "... dd transmissions says inactive: removed" "inactive: VAL server removed" "$(SG dd transmissions)"
expect "valserver add v2x-app again, with another identity" SG valserver add v2x-app --identity DNS:other-app --val-service v2x
sleep 1.2
expect_match "... the old transmission (demanding DNS:v2x-app) still opens no flow" "404 TRANSMISSION_NOT_REQUESTED" "$(DD open --service v2x "${DA[@]}" 2>&1)"
# subscriptions are bound to the certificate identity they were created with, not to the name
"$SG_BIN" --config "$T/sg.yaml" pki issue --dir "$PKI" --san DNS:other-app --client-auth --server-auth --out "$T/other" >/dev/null
OTHER=(--cert "$T/other.crt" --key "$T/other.key")
AO=(-H "Authorization: Bearer $(vtok "${OTHER[@]}" -d client_id=v2x-app)")
req "${OTHER[@]}" "${AO[@]}" "$L4"
expect_eq "... the name's new certificate does not see its subscriptions: GET 404" 404 "$CODE"
req "${OTHER[@]}" "${AO[@]}" -X DELETE "$L4"
expect_eq "... nor DELETE them: 404" 404 "$CODE"
req "${OTHER[@]}" "${AO[@]}" "${JS[@]}" -d "$(SUB '"RELEASED"' other)" "$RT_URL/subscriptions"
expect_eq "... it creates its own: 201" 201 "$CODE"
expect_eq "... and only that one is stored" "1 DNS:other-app" "$(sqlite3 "$DBF" "SELECT count(*), max(identity) FROM sdd_subsc WHERE owner = 'v2x-app'" | tr '|' ' ')"
# ... nor is it told about flows relayed for the old identity
NOTIF2=$(free_port)
NOTIF1_PID=$NOTIF_PID
expect "a notification endpoint of DNS:other-app starts" sg_notif_start "$NOTIF2" DNS:localhost,DNS:other-app "$T/notifs2"
NOTIF2_PID=$NOTIF_PID NOTIF_PID=$NOTIF1_PID
req "${OTHER[@]}" "${AO[@]}" "${JS[@]}" -d "$(SUB '"RELEASED"' other2 | sed "s/:$NOTIF\//:$NOTIF2\//")" "$RT_URL/subscriptions"
expect_eq "... a subscription of the new identity to RELEASED at its own endpoint: 201" 201 "$CODE"
expect "the flow established for DNS:v2x-app is released" DD close --flow "$FX" "${DA[@]}"
sleep 2
expect_eq "... its RELEASED does not reach the name's new identity" 0 "$(grep -c . "$T/notifs2" 2>/dev/null || echo 0)"
kill "$NOTIF2_PID" 2>/dev/null
sg_kill
sg_start "$T/sg.yaml" || { not_ok "third restart"; sg_done; }
expect_match "... nor after a restart" "404 TRANSMISSION_NOT_REQUESTED" "$(DD open --service v2x "${DA[@]}" 2>&1)"
sg_stop >/dev/null

# --- a state dir of schema version 4 (without the SEALDD tables, the audit's first trigger) ---
sqlite3 "$DBF" "DROP TABLE sdd_trans; DROP TABLE sdd_subsc; DROP TRIGGER audit_no_delete; DROP TABLE audit_prune;
  CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
  DROP INDEX gm_docs_owner; ALTER TABLE gm_docs DROP COLUMN size;
  DROP INDEX km_keys_superseded; DROP INDEX km_keys_not_after; DROP INDEX km_keys_current;
  INSERT INTO gm_docs (doc_id, owner, val_group_id, body, created_at, updated_at)
    VALUES ('m1', 'v2x-app', 'mg', '{\"valGroupId\":\"mg\",\"grpDesc\":\"é\"}', 0, 0);
  UPDATE schema_version SET version = 4"
sg_start "$T/sg.yaml" || { not_ok "start on a schema 4 state dir"; sg_done; }
expect_eq "a schema 4 state dir is migrated to the current schema (10) at start" 10 "$(sqlite3 "$DBF" 'SELECT version FROM schema_version')"
expect_eq "... its group documents get their size in bytes (the gm quotas)" 34 "$(sqlite3 "$DBF" "SELECT size FROM gm_docs WHERE doc_id = 'm1'")"
expect "... its users are kept (alice logs in)" login alice2.tokens
tokens
req "${EVIL[@]}" "${AE[@]}" "${JS[@]}" -d "{\"valServiceId\":\"evil\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}" "$RT_URL/regular/request-trans"
expect_eq "... and stores transmissions again: 200" "200 1" "$CODE $(sqlite3 "$DBF" "SELECT count(*) FROM sdd_trans WHERE val_service = 'evil'")"
expect "sealguard stops cleanly (SIGTERM, exit 0)" sg_stop

# --- readiness: /readyz says whether tokens can be verified; /healthz only that it serves ---
NOIDM=$(free_port) # nothing listens there
sed "s|^sdd:|resource: {idm_url: \"https://localhost:$NOIDM\"}\nsdd:|" "$T/sg.yaml" >"$T/noidm.yaml"
sg_start "$T/noidm.yaml" || { not_ok "start with an unreachable identity management"; sg_done; }
expect_eq "identity management unreachable: /healthz 200, /readyz 503" "200 503" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/healthz") $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz")"
RZ=$(curl -s -D "$T/rz.h" "http://127.0.0.1:$ADMIN/readyz")
expect_eq "... a health+json body that says why, and Retry-After" "fail the SIM-S key set and revocation list are not fetched yet 1" "$(jget "$RZ" status) $(jget "$RZ" notes 0) $(tr -d '\r' <"$T/rz.h" | sed -n 's/^[Rr]etry-[Aa]fter: //p')"
req "${VAL[@]}" "${AV[@]}" "$L1"
expect_eq "... and a token-protected request meanwhile: 503 SERVICE_UNAVAILABLE" "503 SERVICE_UNAVAILABLE" "$CODE $(jget "$BODY" cause)"
expect "sealguard stops cleanly (SIGTERM, exit 0)" sg_stop
sg_start "$T/sg.yaml" || { not_ok "restart"; sg_done; }
expect_eq "with identity management in the process: /readyz 200 once started" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz")"
expect "sealguard stops cleanly (SIGTERM, exit 0)" sg_stop
sg_done
