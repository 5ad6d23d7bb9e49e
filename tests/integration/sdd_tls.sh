#!/usr/bin/env bash
# T5 on SEALDD while the server runs (docs/sdd-protocol.md §1, docs/deployment.md): the relay
# checks the VAL server endpoint's certificate against the CRL (resource.crl), and so does the
# notification client for the notifUri's server; a renewed CRL reaches both within a second,
# without a restart. A revoked endpoint certificate ends the flow with VAL_SERVER_IDENTITY (the
# log names the reason), a revoked notification endpoint gets nothing. The data endpoint's own
# certificate is re-read when it is renewed on disk, as the listeners' are, and the SEALDD
# client (dd), the echo endpoint (dd echo-server), a VAL server's client (call) and the UE's
# SIM-C and SKM-C (login, token refresh, key) refuse a server whose certificate is revoked.
. "$(dirname "$0")/lib/common.sh"

ECHO=$(free_port)
NOTIF=$(free_port)
sg_sdd_start ""
ECHO_PID=""
NOTIF_PID=""
trap '[ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null; [ -n "$NOTIF_PID" ] && kill "$NOTIF_PID" 2>/dev/null; sg_cleanup' EXIT
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v k="$1" '$1==k{print $2}'; }
nmetric() { metric "sealguard_sdd_notifications_total{result=\"$1\"}"; }
wait_for() { # wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds
	local n=$(($1 * 10))
	shift
	for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
	return 1
}
serial() { # the serial number of the certificate the server on 127.0.0.1:PORT presents
	openssl s_client -connect "127.0.0.1:$1" -servername localhost -CAfile "$CA" </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null
}

# the VAL server's endpoint has a certificate of its own for its identity DNS:v2x-app
expect "an endpoint certificate for the VAL server's identity (DNS:v2x-app)" SG pki issue --dir "$PKI" --san DNS:v2x-app --server-auth --client-auth --out "$T/ep"
"$SG_BIN" --config "$T/sg.yaml" dd echo-server --bind "127.0.0.1:$ECHO" --cert "$T/ep.crt" --key "$T/ep.key" --cacert "$CA" 2>>"$T/echo.log" &
ECHO_PID=$!
expect "the VAL server endpoint starts with it" sg_wait_port "$ECHO"
sg_sdd_provision "$ECHO" alice
DA=(--token-cache "$T/alice.tokens")
head -c 200000 /dev/urandom >"$T/data"

# a subscription whose notifUri's server authenticates as v2x-app (and as localhost)
expect "v2x-app's notification endpoint starts" sg_notif_start "$NOTIF" DNS:localhost,DNS:v2x-app "$T/notif"
VT=$(jget "$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d resource=sealguard:sdd -d client_id=v2x-app "https://localhost:$S/oauth2/token")" access_token)
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $VT" -H 'Content-Type: application/json' -d "{\"events\":[\"ESTABLISHED\",\"RELEASED\"],\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO},\"notifUri\":\"https://localhost:$NOTIF/n\"}" "https://localhost:$S/sdd-trans/v1/subscriptions")
expect_eq "v2x-app subscribes to connection status: 201" 201 "$code"

LEFT=$(metric "sealguard_tls_crl_seconds_left{file=\"$PKI/crl.pem\"}")
expect_match "/metrics: the CRL's next update is 30 days away ($LEFT s)" '^25[0-9]{5}$' "$LEFT"

F1=$(jget "$(SG dd open --service v2x "${DA[@]}")" sddFlowId)
expect "the endpoint's certificate verifies: 200 kB echoed through SEALDD" SG dd send --flow "$F1" --in "$T/data" --echo "${DA[@]}"
one_notif() { [ -s "$T/notif" ]; }
expect "... and ESTABLISHED is delivered to the notification endpoint" wait_for 5 one_notif
expect_eq "... one notification sent" 1 "$(nmetric sent)"

# --- both certificates revoked: the CRL file changes, the running server notices ---
expect "sealguard pki revoke the endpoint certificate" SG pki revoke "$T/ep.crt" --dir "$PKI"
expect "sealguard pki revoke the notification endpoint's certificate" SG pki revoke "$T/notif-$NOTIF.crt" --dir "$PKI"
sleep 1.5
F2=$(jget "$(SG dd open --service v2x "${DA[@]}")" sddFlowId)
OUT=$(SG dd send --flow "$F2" --in "$T/data" --echo "${DA[@]}" 2>&1)
expect_match "a new flow to the endpoint whose certificate is revoked: VAL_SERVER_IDENTITY" "VAL_SERVER_IDENTITY" "$OUT"
expect_eq "... counted by END reason in /metrics" 1 "$(metric 'sealguard_sdd_flow_ends_total{reason="VAL_SERVER_IDENTITY"}')"
expect_match "... the log names the reason" "VAL server endpoint 127\.0\.0\.1:$ECHO: certificate refused \(certificate revoked\)" "$(cat "$T/server.log")"
# F1's release is notified: to a server whose certificate is revoked, nothing is sent
expect "alice releases the first flow" SG dd close --flow "$F1" "${DA[@]}"
released1() { [ "$(metric 'sealguard_sdd_flow_ends_total{reason="FLOW_RELEASED"}')" = 1 ]; }
expect "... counted as FLOW_RELEASED" wait_for 2 released1
failed1() { [ "$(nmetric failed)" = 1 ]; }
expect "... its RELEASED notification fails after its tries (the notifUri's certificate is revoked)" wait_for 10 failed1
expect_eq "... nothing more reached the revoked endpoint" 1 "$(wc -l <"$T/notif")"
expect_match "... the log says why" "not delivered after 4 tries.*certificate revoked" "$(cat "$T/server.log")"

# --- the endpoint gets a new certificate: relayed again, no restart ---
kill "$ECHO_PID" && wait "$ECHO_PID" 2>/dev/null
expect "a new endpoint certificate for DNS:v2x-app" SG pki issue --dir "$PKI" --san DNS:v2x-app --server-auth --client-auth --out "$T/ep2"
"$SG_BIN" --config "$T/sg.yaml" dd echo-server --bind "127.0.0.1:$ECHO" --cert "$T/ep2.crt" --key "$T/ep2.key" --cacert "$CA" --crl "$PKI/crl.pem" 2>>"$T/echo.log" &
ECHO_PID=$!
sg_wait_port "$ECHO"
F3=$(jget "$(SG dd open --service v2x "${DA[@]}")" sddFlowId)
expect "a new flow to the endpoint with its new certificate: echoed" SG dd send --flow "$F3" --in "$T/data" --echo "${DA[@]}"

# --- the SEALDD server's certificate is renewed on disk: the data endpoint presents the new one
OLD=$(serial "$DATA")
expect_match "the data endpoint presents a certificate" '^serial=' "$OLD"
expect "the server certificate is renewed in place" SG pki issue --dir "$PKI" --san DNS:localhost,IP:127.0.0.1 --server-auth --client-auth --out "$PKI/server"
NEW=$(openssl x509 -in "$PKI/server.crt" -noout -serial)
renewed() { [ "$(serial "$DATA")" = "$NEW" ]; }
expect "... the data endpoint presents the renewed one within 2 s ($OLD -> $NEW)" wait_for 2 renewed
expect "... and carries data with it (the relay presents it too)" SG dd send --flow "$F3" --in "$T/data" --echo "${DA[@]}"

# --- the SEALDD client and the echo endpoint check the SEALDD server's chain against the CRL
# too (dd --crl; default the state dir's crl.pem with its CA) ---
# the UE's SIM-C and SKM-C (login, token refresh, key) do too: login without --cacert takes the
# state dir's CA with its CRL and keeps both in the token cache
AC=(--token-cache "$T/alice-crl.tokens")
LOGIN=(login --issuer "https://localhost:$UU" --client-id ue-app --client-secret-file "$T/ue.secret" --username alice --password-file "$T/alice.pw" --scope "openid seal:km")
expect "alice logs in with the state dir's CA and CRL" SG "${LOGIN[@]}" "${AC[@]}"
expect_eq "... the token cache names the CRL" "$(realpath "$PKI/crl.pem")" "$(jget "$(cat "$T/alice-crl.tokens")" crl)"
expect "... token refresh checks it and passes" SG token refresh "${AC[@]}"
expect "... the SKM-C registers over KM-UU with it" SG key register "${AC[@]}"
expect "the renewed server certificate is revoked" SG pki revoke "$PKI/server.crt" --dir "$PKI"
sleep 1.2
expect_match "login refuses the SIM-S: certificate revoked" "certificate revoked" "$(SG "${LOGIN[@]}" --token-cache "$T/alice-crl2.tokens" 2>&1)"
expect_match "token refresh refuses it with the cached CRL" "certificate revoked" "$(SG token refresh "${AC[@]}" 2>&1)"
expect_match "key list refuses the KM-UU server with the cached CRL" "certificate revoked" "$(SG key list --val-service v2x "${AC[@]}" 2>&1)"
expect "... with --crl \"\" token refresh checks none and passes" SG token refresh --crl "" "${AC[@]}"
expect_match "dd send refuses the SEALDD server: certificate revoked" "certificate revoked" "$(SG dd send --flow "$F3" --in "$T/data" --echo "${DA[@]}" 2>&1)"
F4=$(jget "$(SG dd open --service v2x --crl "" "${DA[@]}")" sddFlowId)
expect_match "... with --crl \"\" the client checks none, and the echo endpoint refuses a new relay's revoked client certificate (TLS 1.3: after the relay's handshake)" "VAL_SERVER_(CLOSED|UNREACHABLE)" "$(SG dd send --flow "$F4" --in "$T/data" --echo --crl "" "${DA[@]}" 2>&1)"
# ... and so does a VAL server's client (sealguard call, the VAL server SDK) on SEAL-S
SUBX=https://localhost:$S/sdd-trans/v1/subscriptions/AAAAAAAAAAAAAAAAAAAAAA
expect_match "sealguard call refuses SEAL-S with the revoked certificate" "certificate revoked" "$(SG call GET "$SUBX" --name v2x-app "${VAL[@]}" 2>&1)"
expect_match "... with --crl \"\" it checks none: SEAL-S answers" "^HTTP/[0-9.]+ 404" "$(SG call GET "$SUBX" --name v2x-app "${VAL[@]}" --crl "" 2>&1)"

expect "server stops cleanly" sg_stop
sg_done
