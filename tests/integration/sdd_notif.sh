#!/usr/bin/env bash
# SEALDD-S connection status notifications under abuse (TS 29.548 ConnStatusSubsc /
# ConnStatusNotif; TS 33.434 Rel-18 G6: SEALDD-S as SEAL-S, G4; docs/sdd-protocol.md §1): one
# VAL server whose notifUri points at an endpoint that accepts and never answers (a blackhole)
# does not delay another VAL server's notifications (a pool of workers, at most one per VAL
# server), nor do four such VAL servers at once (no worker waits out a retry's backoff; the
# cap on VAL servers whose endpoints did not answer is tested in unit.test_sdd:test_notifq and
# fuzz.notifq); deleting its subscription cancels what is still queued for it (nothing more
# is sent or retried); the server stops promptly with notifications pending; subscriptions over the
# size bounds (notifUri, events, the whole body) are refused with 400 invalidParams on POST,
# PUT and PATCH, and nothing is stored.
. "$(dirname "$0")/lib/common.sh"

ECHO=$(free_port)
ECHO2=$(free_port)
GOOD=$(free_port)
HOLE=$(free_port)
IMP=$(free_port)
DEAD=(d1-app d2-app d3-app)
sg_sdd_start "" v2x-app b-app "${DEAD[@]}"
ECHO_PID=""
PIDS=()
cleanup_notif() {
	[ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	sg_cleanup
}
trap cleanup_notif EXIT
req() {
	"${C[@]}" -D "$T/h" -o "$T/b" "$@"
	CODE=$(awk 'NR==1{print $2}' "$T/h")
	BODY=$(cat "$T/b")
}
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v k="$1" '$1==k{print $2}'; }
nmetric() { metric "sealguard_sdd_notifications_total{result=\"$1\"}"; }
# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds; 1 when it never did
wait_for() {
	local n=$(($1 * 10))
	shift
	for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
	return 1
}

# --- two VAL servers, each with its transmission and its own VAL server endpoint ---
expect "echo VAL server endpoint of v2x-app starts" sg_echo_start "$ECHO"
sg_sdd_provision "$ECHO" alice
BAPP=(--cert "$PKI/seal-servers/b-app.crt" --key "$PKI/seal-servers/b-app.key")
"$SG_BIN" --config "$T/sg.yaml" dd echo-server --bind "127.0.0.1:$ECHO2" "${BAPP[@]}" --cacert "$CA" 2>>"$T/echo2.log" &
PIDS+=($!)
expect "echo VAL server endpoint of b-app starts" sg_wait_port "$ECHO2"
expect "valserver add b-app (VAL service bsvc)" SG valserver add b-app --identity DNS:b-app --val-service bsvc
sleep 1.2
vtok() { jget "$("${C[@]}" "$@" -d grant_type=client_credentials -d resource=sealguard:sdd "https://localhost:$S/oauth2/token")" access_token; }
AV=(-H "Authorization: Bearer $(vtok "${VAL[@]}" -d client_id=v2x-app)")
AB=(-H "Authorization: Bearer $(vtok "${BAPP[@]}" -d client_id=b-app)")
JS=(-H 'Content-Type: application/json')
MP=(-H 'Content-Type: application/merge-patch+json')
RT=https://localhost:$S/sdd-trans/v1
req "${BAPP[@]}" "${AB[@]}" "${JS[@]}" -d "{\"valServiceId\":\"bsvc\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO2}}" "$RT/regular/request-trans"
expect_eq "b-app requests transmission for bsvc: 200" 200 "$CODE"

# the blackhole notification endpoint: accepts TCP, never answers
cat >"$T/hole.py" <<'PY'
import socket,sys
port,log=int(sys.argv[1]),sys.argv[2]
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(("127.0.0.1",port)); s.listen(128)
open(log+".ready","w").close()
held=[]
while True:
    c,_=s.accept(); held.append(c)
    with open(log,"w") as f: f.write(str(len(held)))
PY
# the good endpoint authenticates as b-app (and as localhost, the notifUri's host); the
# impostor (below) has a valid certificate for localhost only
expect "b-app's notification endpoint starts" sg_notif_start "$GOOD" DNS:localhost,DNS:b-app "$T/good"
PIDS+=("$NOTIF_PID")
expect "an impostor's endpoint starts" sg_notif_start "$IMP" DNS:localhost "$T/imp"
PIDS+=("$NOTIF_PID")
python3 "$T/hole.py" "$HOLE" "$T/hole" 2>/dev/null &
PIDS+=($!)
expect "the blackhole listens" wait_for 5 test -e "$T/hole.ready"

sub() { printf '{"events":["ESTABLISHED","RELEASED"],%s"valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":%s},"notifUri":"%s"}' "$1" "$2" "$3"; }
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$(sub '' "$ECHO" "https://localhost:$HOLE/n")" "$RT/subscriptions"
expect_eq "v2x-app subscribes with its notifUri at the blackhole: 201" 201 "$CODE"
HLOC=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
req "${BAPP[@]}" "${AB[@]}" "${JS[@]}" -d "$(sub '"valServiceId":"bsvc",' "$ECHO2" "https://localhost:$GOOD/n")" "$RT/subscriptions"
expect_eq "b-app subscribes with a working notifUri: 201" 201 "$CODE"
BLOC=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
BSUB=$BODY
DLOC=()
# three more VAL servers, each with its transmission and its notifUri at the blackhole
for d in "${DEAD[@]}"; do
	DC=(--cert "$PKI/seal-servers/$d.crt" --key "$PKI/seal-servers/$d.key")
	expect "valserver add $d (VAL service ${d%-app}svc)" SG valserver add "$d" --identity "DNS:$d" --val-service "${d%-app}svc"
done
sleep 1.2
for d in "${DEAD[@]}"; do
	DC=(--cert "$PKI/seal-servers/$d.crt" --key "$PKI/seal-servers/$d.key")
	DE=$(free_port) # its VAL server endpoint (the relay authenticates it as $d)
	"$SG_BIN" --config "$T/sg.yaml" dd echo-server --bind "127.0.0.1:$DE" "${DC[@]}" --cacert "$CA" 2>>"$T/echo-$d.log" &
	PIDS+=($!)
	expect "echo VAL server endpoint of $d starts" sg_wait_port "$DE"
	DT=(-H "Authorization: Bearer $(vtok "${DC[@]}" -d client_id="$d")")
	req "${DC[@]}" "${DT[@]}" "${JS[@]}" -d "{\"valServiceId\":\"${d%-app}svc\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$DE}}" "$RT/regular/request-trans"
	expect_eq "$d requests transmission for ${d%-app}svc: 200" 200 "$CODE"
	req "${DC[@]}" "${DT[@]}" "${JS[@]}" -d "$(sub '' "$ECHO2" "https://localhost:$HOLE/n")" "$RT/subscriptions"
	expect_eq "$d subscribes with its notifUri at the blackhole: 201" 201 "$CODE"
	DLOC+=("$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')")
done

# --- one VAL server's dead endpoint does not hold the others' notifications ---
DA=(--token-cache "$T/alice.tokens")
printf 'ping' >"$T/ping"
flow() { # flow SERVICE: opens a flow, carries data (the relay comes up: ESTABLISHED), releases it
	local f
	f=$(jget "$(SG dd open --service "$1" "${DA[@]}")" sddFlowId)
	SG dd send --flow "$f" --in "$T/ping" --echo "${DA[@]}" >/dev/null 2>&1 && SG dd close --flow "$f" "${DA[@]}"
}
for i in 1 2 3 4; do expect "v2x flow $i: established and released" flow v2x; done
pending8() { [ "$(metric sealguard_sdd_notifications_pending)" = 8 ]; }
expect "... 8 notifications for v2x-app pending (its blackhole answers nothing)" wait_for 5 pending8
expect_match "... the blackhole was reached (mutual TLS never completes)" '^[1-9]' "$(cat "$T/hole" 2>/dev/null)"
t0=$(date +%s%N)
expect "b-app flow: established and released" flow bsvc
two_good() { [ -e "$T/good" ] && [ "$(wc -l <"$T/good")" -ge 2 ]; }
if wait_for 5 two_good; then
	ok "b-app's ESTABLISHED and RELEASED arrive while v2x-app's wait on the blackhole ($((($(date +%s%N) - t0) / 1000000)) ms)"
else
	not_ok "b-app's notifications did not arrive within 5 s (they wait behind v2x-app's blackhole)"
fi
BSID=$(basename "$BLOC")
expect_eq "... for b-app's subscription, in order" "$BSID ESTABLISHED RELEASED" "$(jget "$(sed -n 1p "$T/good")" subscriptionId) $(jget "$(sed -n 1p "$T/good")" reports 0 event) $(jget "$(sed -n 2p "$T/good")" reports 0 event)"
expect_eq "... counted as sent; nothing failed yet" "2 0" "$(nmetric sent) $(nmetric failed)"

# --- four VAL servers whose endpoints do not answer do not hold the workers ---
# v2x-app's 8 wait (one in delivery); d1..d3's flows queue 2 each, their ESTABLISHED in
# delivery at once: four blackholes against four workers. The old pool gave each a worker for
# all its tries (4 x 3 s + backoff): b-app's waited 14 s. Now each holds a worker for one try
# at a time (3 s at most, then the retry waits in the queue).
for d in "${DEAD[@]}"; do expect "${d%-app}svc flow: established and released" flow "${d%-app}svc"; done
pending14() { [ "$(metric sealguard_sdd_notifications_pending)" = 14 ]; }
expect "... 14 notifications pending for the four VAL servers at the blackhole" wait_for 5 pending14
sleep 0.5 # their tries are in flight
rm -f "$T/good"
t0=$(date +%s%N)
expect "b-app flow: established and released" flow bsvc
if wait_for 5 two_good; then
	ok "b-app's ESTABLISHED and RELEASED arrive while four VAL servers' wait on the blackhole ($((($(date +%s%N) - t0) / 1000000)) ms)"
else
	not_ok "b-app's notifications did not arrive within 5 s (four blackholes hold every worker)"
fi
expect_eq "... in order" "ESTABLISHED RELEASED" "$(jget "$(sed -n 1p "$T/good")" reports 0 event) $(jget "$(sed -n 2p "$T/good")" reports 0 event)"
for i in "${!DEAD[@]}"; do
	d=${DEAD[$i]}
	DC=(--cert "$PKI/seal-servers/$d.crt" --key "$PKI/seal-servers/$d.key")
	req "${DC[@]}" -H "Authorization: Bearer $(vtok "${DC[@]}" -d client_id="$d")" -X DELETE "${DLOC[$i]}"
	expect_eq "$d deletes its subscription: 204" 204 "$CODE"
done
expect "... their notifications are gone (cancelled or given up) within a try's timeout" wait_for 8 pending8
expect_eq "... b-app's counted as sent" 4 "$(nmetric sent)"
C0=$(nmetric cancelled)
F0=$(nmetric failed)

# --- deleting the subscription cancels what is queued for it ---
req "${VAL[@]}" "${AV[@]}" -X DELETE "$HLOC"
expect_eq "v2x-app deletes its subscription: 204" 204 "$CODE"
drained() { [ "$(metric sealguard_sdd_notifications_pending)" = 0 ]; }
expect "... its 8 pending notifications are gone within one try's timeout (5 s) + backoff" wait_for 9 drained
# the one in delivery may have been on its last try when the delete came (a slow machine): it
# then ends as failed; every other one is cancelled, and none is delivered
CN=$(($(nmetric cancelled) - C0))
FN=$(($(nmetric failed) - F0))
expect_match "... cancelled (the one in delivery on its last try may fail instead), none delivered: $CN cancelled, $FN failed" "^(8 0|7 1) 4$" "$CN $FN $(nmetric sent)"

# --- the server stops promptly while a notification waits on the blackhole ---
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$(sub '' "$ECHO" "https://localhost:$HOLE/n")" "$RT/subscriptions"
expect_eq "v2x-app subscribes at the blackhole again: 201" 201 "$CODE"
HLOC=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')

# --- size bounds (sdd/proto.h SG_SDD_SUBSC_MAX_*): 400 with invalidParams, nothing stored ---
long() { py 'import sys; print(sys.argv[1] * int(sys.argv[2]))' "$1" "$2"; }
bad_sub() { # bad_sub NAME PARAM CURL-ARGS...: 400 INVALID_MSG_FORMAT naming PARAM, no Location
	local name=$1 param=$2
	shift 2
	req "$@"
	if [ "$CODE" = 400 ] && [ "$(jget "$BODY" cause)" = INVALID_MSG_FORMAT ] &&
		printf '%s' "$BODY" | grep -q "\"param\":\"$param\"" &&
		[ -z "$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')" ]; then
		ok "$name: 400 ($param)"
	else
		not_ok "$name: got $CODE $(printf '%s' "$BODY" | head -c 300)"
	fi
}
bad_sub "POST with a notifUri of 2049 bytes" /notifUri "${BAPP[@]}" "${AB[@]}" "${JS[@]}" -d "$(sub '' "$ECHO2" "https://$(long a 2041)")" "$RT/subscriptions"
EV9='"events":["ESTABLISHED","RELEASED","E3","E4","E5","E6","E7","E8","E9"]'
bad_sub "POST with 9 events" /events "${BAPP[@]}" "${AB[@]}" "${JS[@]}" -d "{$EV9,\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO2},\"notifUri\":\"https://localhost:$GOOD/n\"}" "$RT/subscriptions"
py 'import json,sys
print(json.dumps({"events":["a"]*262000,"valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":int(sys.argv[1])},"notifUri":"https://localhost/n"},separators=(",",":")))' "$ECHO2" >"$T/huge.json"
bad_sub "POST of 1 MiB with 262,000 events ($(wc -c <"$T/huge.json") bytes)" /events "${BAPP[@]}" "${AB[@]}" "${JS[@]}" --data-binary "@$T/huge.json" "$RT/subscriptions"
bad_sub "PUT with the same event twice" /events/1 "${BAPP[@]}" "${AB[@]}" "${JS[@]}" -X PUT -d "{\"events\":[\"RELEASED\",\"RELEASED\"],\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO2},\"notifUri\":\"https://localhost:$GOOD/n\"}" "$BLOC"
bad_sub "PATCH with an event of 65 bytes" /events/0 "${BAPP[@]}" "${AB[@]}" "${MP[@]}" -X PATCH -d "{\"events\":[\"$(long E 65)\"]}" "$BLOC"
bad_sub "PATCH with a notifUri of 2049 bytes" /notifUri "${BAPP[@]}" "${AB[@]}" "${MP[@]}" -X PATCH -d "{\"notifUri\":\"https://$(long a 2041)\"}" "$BLOC"
bad_sub "PATCH taking the subscription over 16 KiB" / "${BAPP[@]}" "${AB[@]}" "${MP[@]}" -X PATCH -d "{\"valTgtUe\":{\"valUserId\":\"$(long u 17000)\"}}" "$BLOC"
req "${BAPP[@]}" "${AB[@]}" "$BLOC"
if [ "$CODE" = 200 ] && [ "$(jget "$BODY")" = "$(jget "$BSUB")" ]; then
	ok "... b-app's subscription is as it was"
else
	not_ok "... b-app's subscription changed: $CODE $(jget "$BODY" | head -c 300)"
fi
req "${BAPP[@]}" "${AB[@]}" "${MP[@]}" -X PATCH -d '{"events":["RELEASED","FUTURE_EVENT"]}' "$BLOC"
expect_eq "PATCH with a forward-compatible event string: 200" "200 [\"RELEASED\", \"FUTURE_EVENT\"]" "$CODE $(jget "$BODY" events)"

# --- R3 both ways: the notifUri's server must authenticate as the subscribing VAL server ---
req "${BAPP[@]}" "${AB[@]}" "${MP[@]}" -X PATCH -d "{\"notifUri\":\"https://localhost:$IMP/n\"}" "$BLOC"
expect_eq "b-app points its notifUri at a server that is not b-app (valid certificate, localhost): 200" 200 "$CODE"
F0=$(nmetric failed)
expect "b-app flow: established and released" flow bsvc
failed_more() { [ "$(nmetric failed)" -gt "$F0" ]; }
expect "... its notification fails (tried again and given up within 5 s)" wait_for 5 failed_more
expect_eq "... the impostor received nothing: refused in the handshake, before the request" "no" "$([ -e "$T/imp" ] && echo yes || echo no)"
expect_match "... the log names the missing identity" 'does not carry DNS:b-app' "$(cat "$T/server.log")"

# (the blackhole subscription above: a v2x flow queues its notifications, then SIGTERM)
expect "v2x flow: established and released (its notifications wait on the blackhole)" flow v2x
pending2() { [ "$(metric sealguard_sdd_notifications_pending)" = 2 ]; }
expect "... 2 pending: ESTABLISHED in delivery, RELEASED behind it" wait_for 5 pending2
t0=$(date +%s%N)
expect "SIGTERM with notifications pending: clean exit" sg_stop
el=$((($(date +%s%N) - t0) / 1000000))
if [ "$el" -le 3000 ]; then ok "... promptly: ${el} ms (the try in flight is cancelled)"; else not_ok "... took ${el} ms"; fi
expect_match "... the one not sent is counted at shutdown" ' 1 not sent at shutdown' "$(cat "$T/server.log")"
sg_done
