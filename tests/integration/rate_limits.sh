#!/usr/bin/env bash
# G4 request rate limits per client address (limits.requests_per_second, limits.request_burst):
# over its burst an address gets 429 ProblemDetails with Retry-After, on HTTP/1.1 and HTTP/2,
# before any token check and without reaching a handler (a refused flow request allocates
# nothing); other addresses and other listeners are served meanwhile; the address is served
# again after Retry-After; refusals are counted in /metrics; the CLI says what happened.
# And per authenticated identity (limits.requests_per_second_per_identity, ..._burst_...): a
# user over hers gets 429 from any address while another user at the same address is served.
. "$(dirname "$0")/lib/common.sh"

# 5 requests per second, 40 at once, from one address (IPv4, or an IPv6 /64), and 1 per second,
# 4 at once, per user, on SEAL-UU only
SG_UU_LIMITS="    limits: {requests_per_second: 5, request_burst: 40, requests_per_second_per_identity: 1, request_burst_per_identity: 4}"
ECHO=$(free_port)
sg_sdd_start ""
trap 'kill "$ECHO_PID" 2>/dev/null; sg_cleanup' EXIT
sg_echo_start "$ECHO"
sg_sdd_provision "$ECHO" alice bob
tok() { py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/$1.tokens"; }
TOK=$(tok alice)
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v k="$1" '$1==k{print $2}'; }
REFUSED='sealguard_http_requests_limited_total{listener="SEAL-UU",result="refused"}'
HZ=https://localhost:$UU/healthz
# codes N [CURL ARGS...]: N requests to /healthz on one connection, their status codes
codes() {
	local n=$1 u=()
	shift
	for _ in $(seq "$n"); do u+=("$HZ"); done
	"${C[@]}" "$@" -w '\n%{http_code}\n' "${u[@]}" # (-o would hold for the first URL only)
}
count() { grep -c "^$1\$" || true; }
# limited CURL ARGS...: 60 requests to /healthz use up 127.0.0.1's burst, then the request of
# ARGS goes on the same connection (curl --next) at once; prints its status code. The request
# can still catch the one allowance that comes back every 200 ms (about one run in twenty on
# loopback); then the whole run is repeated, at most three times. $T/limited.codes lists the
# codes of every try (a served try did what the request asks, e.g. allocated a flow).
limited() {
	local u=() code=
	for _ in $(seq 60); do u+=(-o /dev/null "$HZ"); done
	: >"$T/limited.codes"
	for _ in 1 2 3; do
		code=$("${C[@]}" "${u[@]}" --next "${C[@]:1}" -w '%{http_code}' "$@")
		echo "$code" >>"$T/limited.codes"
		[ "$code" = 429 ] && break
	done
	echo "$code"
}
# burst NAME CURL ARGS...: 60 requests on one connection from an address with its whole burst:
# 40 at once are served, plus one per 200 ms the 60 took (a few at most on loopback), the rest 429
burst() {
	local name=$1 out ok200 n429
	shift
	out=$(codes 60 "$@")
	ok200=$(printf '%s\n' "$out" | count 200)
	n429=$(printf '%s\n' "$out" | count 429)
	if [ "$ok200" -ge 40 ] && [ "$ok200" -le 45 ] && [ $((ok200 + n429)) -eq 60 ]; then
		ok "$name: the burst of 40 is served, then 429 ($ok200 served, $n429 refused)"
	else
		not_ok "$name: the burst of 40 is served, then 429 (200: $ok200, 429: $n429)"
	fi
}
# --- one address over its burst, on one HTTP/1.1 connection (127.0.0.4) ---
burst HTTP/1.1 --http1.1 --interface 127.0.0.4
expect_eq "127.0.0.1 over its burst: 429" 429 "$(limited --http1.1 -D "$T/h" -o "$T/b" "$HZ")"
expect_match "429 with Retry-After in seconds" '^http/1.1 429.*retry-after: 1 ' "$(tr -d '\r' <"$T/h" | tr 'A-Z\n' 'a-z ')"
expect_match "429 is ProblemDetails, cause TOO_MANY_REQUESTS" '"status":429.*"cause":"TOO_MANY_REQUESTS"' "$(cat "$T/b")"
expect_match "429 says which limit" 'more than 5 requests per second from this address' "$(cat "$T/b")"
expect "429 body matches ProblemDetails (TS 29.571)" openapi_validate TS29571_CommonData.yaml ProblemDetails "$T/b"

# --- refused before the policy: a bad token gets 429, not 401; a good one allocates nothing ---
expect_eq "bad token while limited: 429 (the token is not even checked)" 429 \
	"$(limited -o /dev/null -H 'Authorization: Bearer x.y.z' -H 'Content-Type: application/json' \
		-d '{"valServiceId":"v2x"}' "https://localhost:$UU/sdd-flows/v1/flows")"
flows0=$(metric sealguard_sdd_flows_open)
expect_eq "flow request while limited: 429" 429 "$(limited -o /dev/null \
	-H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' -d '{"valServiceId":"v2x"}' \
	"https://localhost:$UU/sdd-flows/v1/flows")"
# (a try that caught a refill was served and allocated its flow: counted, not refused)
expect_eq "a refused flow request allocates no flow" "$((flows0 + $(count 201 <"$T/limited.codes")))" \
	"$(metric sealguard_sdd_flows_open)"

# --- other addresses, other listeners ---
expect_eq "another address (127.0.0.2) is served meanwhile" 200 \
	"$("${C[@]}" --interface 127.0.0.2 -o /dev/null -w '%{http_code}' "$HZ")"
expect_eq "the admin listener (no rate limit) serves 127.0.0.1" 200 \
	"$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/healthz")"
expect_eq "SEAL-S (its own limit) serves 127.0.0.1" 200 \
	"$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' "https://localhost:$S/healthz")"

# --- HTTP/2: one address over its burst on one connection (many streams; 127.0.0.3) ---
burst HTTP/2 --http2 --interface 127.0.0.3
out=$(nghttp -v --no-verify-peer -m 60 "$HZ" 2>&1) # 60 streams, at most 40 + a few served
expect_match "nghttp sees 429 with retry-after" ':status: 429.*retry-after: ' "$(printf '%s' "$out" | tr '\n' ' ')"

# --- counted, and the address is served again after Retry-After ---
n=$(metric "$REFUSED")
if [ "${n:-0}" -ge 30 ]; then ok "refusals counted in /metrics ($n)"; else not_ok "refusals counted in /metrics (${n:-none})"; fi
expect_match "429s counted with the request codes" 'sealguard_http_requests_total\{listener="SEAL-UU",code="429"\} [1-9]' \
	"$(curl -s "http://127.0.0.1:$ADMIN/metrics")"
sleep 2.1
expect_eq "after Retry-After 127.0.0.1 is served again" 200 "$("${C[@]}" -o /dev/null -w '%{http_code}' "$HZ")"

# --- per identity: alice over her 4 at once, from any address; bob at her address served ---
FL=https://localhost:$UU/sdd-flows/v1/flows/AAAAAAAAAAAAAAAAAAAAAA # no such flow: 404 once authorized
u=()
for _ in $(seq 6); do u+=(-o /dev/null -w '%{http_code}\n' "$FL"); done
out=$("${C[@]}" --interface 127.0.0.5 -H "Authorization: Bearer $TOK" "${u[@]}" \
	--next "${C[@]:1}" --interface 127.0.0.6 -H "Authorization: Bearer $TOK" -o "$T/b" -w '%{http_code}\n' "$FL" \
	--next "${C[@]:1}" --interface 127.0.0.5 -H "Authorization: Bearer $(tok bob)" -o /dev/null -w '%{http_code}\n' "$FL" \
	--next "${C[@]:1}" --interface 127.0.0.5 -H "Authorization: Bearer x.y.z" -o /dev/null -w '%{http_code}\n' "$FL")
codes_a=$(printf '%s\n' "$out" | head -6 | tr '\n' ' ')
n404=$(printf '%s\n' "$out" | head -6 | count 404)
if [ "$n404" -ge 4 ] && [ "$n404" -le 5 ] && [ "$(printf '%s\n' "$out" | head -6 | count 429)" -eq $((6 - n404)) ]; then
	ok "per identity: alice's burst of 4 is served, then 429 ($codes_a)"
else
	not_ok "per identity: alice's burst of 4 is served, then 429 ($codes_a)"
fi
expect_eq "per identity: alice from another address: 429" 429 "$(printf '%s\n' "$out" | sed -n 7p)"
expect_match "per identity: the 429 names the identity limit" 'more than 1 requests per second for this identity' "$(cat "$T/b")"
expect_eq "per identity: bob at alice's address is served (404: no such flow)" 404 "$(printf '%s\n' "$out" | sed -n 8p)"
expect_eq "per identity: a bad token is refused as such (401), not by another's allowance" 401 "$(printf '%s\n' "$out" | sed -n 9p)"
n=$(metric 'sealguard_identity_requests_limited_total{listener="SEAL-UU"}')
if [ "${n:-0}" -ge 2 ]; then ok "per identity: refusals counted in /metrics ($n)"; else not_ok "per identity: refusals counted in /metrics (${n:-none})"; fi

# --- the CLI: a client over the limit is told so (127.0.0.1's allowance kept at zero meanwhile) ---
(while [ ! -f "$T/stop" ]; do codes 60 >/dev/null; done) &
HOLD=$!
sleep 0.5
out=$(SG login --issuer "https://localhost:$UU" --client-id ue-app --client-secret-file "$T/ue.secret" \
	--username alice --password-file "$T/alice.pw" --cacert "$CA" --token-cache "$T/again.tokens" 2>&1; echo "rc=$?")
expect_match "sealguard login over the limit fails naming it" '429.*rc=[1-9]' "$(printf '%s' "$out" | tr '\n' ' ')"
touch "$T/stop"
wait "$HOLD"
sleep 2.1
expect "sealguard login works again once the burst is back" SG login --issuer "https://localhost:$UU" \
	--client-id ue-app --client-secret-file "$T/ue.secret" --username alice --password-file "$T/alice.pw" \
	--cacert "$CA" --token-cache "$T/again.tokens"

sg_done
