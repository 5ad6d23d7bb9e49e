#!/usr/bin/env bash
# Secure transport core, end to end with real clients (curl, openssl s_client, nghttp, python's
# ssl): the TS 33.210 §6.2 profile on every reference point, mutual TLS with certificate checks
# (chain, EKU, validity, CRL), HTTP/1.1 and HTTP/2 by ALPN, limits, and the admin listener.
# Every refusal is followed by a check that the server still serves everybody else.
. "$(dirname "$0")/lib/common.sh"

sg_ports
sg_write_config "$T/sg.yaml" "    limits: {header_timeout_ms: 2000, max_body_bytes: 65536, max_header_bytes: 8192, max_handshakes_per_address: 3}" \
	"    limits: {handshakes_per_second: 1, handshake_burst: 5}"
PKI=$T/state/pki
# Certificates made before the first start are trusted by that server (same CA).
expect "pki init with a VAL server before serve" "$SG_BIN" pki init --dir "$PKI" --val-server v2x-app --seal-server gm-1
sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }
CA=$PKI/ca.crt
VAL="--cert $PKI/val-servers/v2x-app.crt --key $PKI/val-servers/v2x-app.key"
UUURL=https://localhost:$UU/healthz
SURL=https://localhost:$S/healthz
out=$(timeout 5 "$SG_BIN" --config "$T/sg.yaml" serve 2>&1; echo "rc=$?")
expect_match "a second server on the same ports is refused at start" 'Address already in use.*rc=1' "$(printf '%s' "$out" | tr '\n' ' ')"
alive() { curl -sf --cacert "$CA" "$UUURL" >/dev/null; }

# --- R1/R6: server-authenticated TLS, HTTP/1.1 and HTTP/2 on the same port (ALPN) ---
out=$(curl -s --cacert "$CA" --http1.1 -w ' %{http_version} %{http_code}' "$UUURL")
expect_eq "SEAL-UU GET /healthz over HTTP/1.1" '{"status":"pass"} 1.1 200' "$out"
out=$(curl -s --cacert "$CA" --http2 -w ' %{http_version} %{http_code}' "$UUURL")
expect_eq "SEAL-UU GET /healthz over HTTP/2 (ALPN h2)" '{"status":"pass"} 2 200' "$out"
out=$(nghttp -v --no-verify-peer "$UUURL" 2>&1)
expect_match "nghttp speaks HTTP/2 to SEAL-UU" 'negotiated protocol: h2' "$out"
expect_match "responses carry Cache-Control: no-store" 'cache-control: no-store' "$out"
out=$(curl -s --cacert "$CA" -o /dev/null -w '%{http_code}' "https://localhost:$UU/nope")
expect_eq "unknown path is 404" 404 "$out"
out=$(curl -s --cacert "$CA" -D - -o /dev/null -X DELETE "$UUURL" | tr -d '\r' | tr '\n' ' ')
expect_match "wrong method is 405 with Allow" '405.*[Aa]llow: GET' "$out"
out=$(curl -s --cacert "$CA" "https://localhost:$UU/nope" -D - | tr -d '\r')
expect_match "errors are ProblemDetails" 'application/problem\+json' "$out"

# --- T1: versions ---
sc() { timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername localhost -CAfile "$CA" "${@:2}" </dev/null; }
refuse "TLS 1.1 is refused" sc "$UU" -tls1_1 -cipher 'DEFAULT@SECLEVEL=0'
refuse "TLS 1.0 is refused" sc "$UU" -tls1 -cipher 'DEFAULT@SECLEVEL=0'
expect "TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256 is accepted" sc "$UU" -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256 -verify_return_error
expect "TLS 1.3 with TLS_AES_128_GCM_SHA256 is accepted" sc "$UU" -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256 -verify_return_error
expect "TLS 1.3 with TLS_AES_256_GCM_SHA384 is accepted" sc "$UU" -tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384
# --- T2/T3: suites and groups outside the profile ---
refuse "TLS 1.2 CBC suite is refused" sc "$UU" -tls1_2 -cipher ECDHE-ECDSA-AES128-SHA256
refuse "TLS 1.2 ChaCha20 suite is refused" sc "$UU" -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305
refuse "TLS 1.2 without ECDHE (static/anon) is refused" sc "$UU" -tls1_2 -cipher 'AES128-GCM-SHA256:ADH-AES128-GCM-SHA256@SECLEVEL=0'
refuse "TLS 1.3 ChaCha20 suite is refused" sc "$UU" -tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256
refuse "group ffdhe2048 only is refused" sc "$UU" -tls1_3 -groups ffdhe2048
expect "group P-256 is accepted" sc "$UU" -tls1_3 -groups P-256
expect "group X25519 is accepted" sc "$UU" -tls1_3 -groups X25519
expect "group P-384 is accepted" sc "$UU" -tls1_3 -groups P-384
out=$(sc "$UU" -tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256 2>&1)
expect_match "TLS 1.2 negotiates extended master secret" 'Extended master secret: yes' "$out"
expect_match "TLS 1.2 has secure renegotiation indication" 'Secure Renegotiation IS supported' "$out"
expect_match "no compression" 'Compression: NONE' "$out"
# T2: no 0-RTT. Get a ticket, then offer early data: it must not be accepted.
# (a request and its answer, so the ticket that follows the handshake has arrived)
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$UU" -servername localhost -CAfile "$CA" -tls1_3 -ign_eof -sess_out "$T/sess" >/dev/null 2>&1 || true
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >"$T/early"
out=$(sc "$UU" -tls1_3 -sess_in "$T/sess" -early_data "$T/early" 2>&1)
expect_match "session resumption with a ticket works" 'Reused, TLSv1.3' "$out"
if printf '%s' "$out" | grep -q 'Early data was accepted'; then not_ok "0-RTT early data is refused"; else ok "0-RTT early data is refused"; fi
# T4: HTTPS directly over TLS; plain HTTP on a TLS port is not served.
refuse "plain HTTP on a TLS listener gets no answer" curl -sf --max-time 5 "http://127.0.0.1:$UU/healthz"
alive && ok "server still serves after the refusals" || not_ok "server still serves after the refusals"

# --- R3/R4, T5: mutual TLS on SEAL-S and SEAL-E ---
out=$(curl -s --cacert "$CA" $VAL -w ' %{http_code}' "$SURL")
expect_eq "SEAL-S with a VAL server certificate" '{"status":"pass"} 200' "$out"
out=$(curl -s --cacert "$CA" --cert "$PKI/seal-servers/gm-1.crt" --key "$PKI/seal-servers/gm-1.key" --http2 -w ' %{http_version}' "https://localhost:$E/healthz")
expect_eq "SEAL-E with a SEAL server certificate over HTTP/2" '{"status":"pass"} 2' "$out"
refuse "SEAL-S without a client certificate" curl -sf --cacert "$CA" "$SURL"
refuse "SEAL-S without a client certificate (s_client sees the alert)" sh -c "printf 'GET /healthz HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -quiet -connect 127.0.0.1:$S -CAfile '$CA' 2>&1 | grep -q pass"
"$SG_BIN" pki init --dir "$T/other" --val-server v2x-app >/dev/null
refuse "certificate from another CA" curl -sf --cacert "$CA" --cert "$T/other/val-servers/v2x-app.crt" --key "$T/other/val-servers/v2x-app.key" "$SURL"
"$SG_BIN" pki issue --dir "$PKI" --san DNS:old-app --client-auth --not-before-offset -864000 --not-after-offset -86400 --out "$T/expired" >/dev/null
refuse "expired certificate" curl -sf --cacert "$CA" --cert "$T/expired.crt" --key "$T/expired.key" "$SURL"
"$SG_BIN" pki issue --dir "$PKI" --san DNS:srv-only --server-auth --out "$T/srvonly" >/dev/null
refuse "client certificate without clientAuth EKU" curl -sf --cacert "$CA" --cert "$T/srvonly.crt" --key "$T/srvonly.key" "$SURL"
"$SG_BIN" pki issue --dir "$PKI" --san DNS:fresh-app --client-auth --out "$T/fresh" >/dev/null
expect "a freshly issued client certificate works" curl -sf --cacert "$CA" --cert "$T/fresh.crt" --key "$T/fresh.key" "$SURL"
expect "revoke it" "$SG_BIN" pki revoke "$T/fresh.crt" --dir "$PKI"
sleep 2.5 # the server re-reads changed CRL files every second
refuse "revoked certificate is refused by the running server" curl -sf --cacert "$CA" --cert "$T/fresh.crt" --key "$T/fresh.key" "$SURL"
expect "other VAL servers are unaffected by the revocation" curl -sf --cacert "$CA" $VAL "$SURL"
# The client side checks the server as strictly: a server cert without serverAuth is refused.

# --- limits and malformed input (G4) ---
big=$(head -c 12000 /dev/zero | tr '\0' a)
out=$(curl -s --cacert "$CA" -o /dev/null -w '%{http_code}' -H "X-Big: $big" "$UUURL")
expect_eq "oversized header is 431" 431 "$out"
out=$(curl -s --cacert "$CA" --http2 -o /dev/null -w '%{http_code}' -H "X-Big: $big" "$UUURL")
expect_match "oversized header over HTTP/2 is refused" '^(431|000)$' "$out"
head -c 100000 /dev/urandom >"$T/big.bin"
out=$(curl -s --cacert "$CA" -o /dev/null -w '%{http_code}' --data-binary @"$T/big.bin" -H 'Content-Type: application/octet-stream' "https://localhost:$UU/healthz")
expect_eq "oversized body is 413" 413 "$out"
out=$(curl -s --cacert "$CA" --http2 -o /dev/null -w '%{http_code}' --data-binary @"$T/big.bin" "https://localhost:$UU/healthz")
expect_eq "oversized body over HTTP/2 is 413" 413 "$out"
out=$(curl -s --cacert "$CA" -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary @"$T/big.bin" "https://localhost:$UU/healthz")
expect_eq "oversized chunked body is 413" 413 "$out"
out=$(printf 'GARBAGE \x01\x02 / HTTP/9.9\r\n\r\n' | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$UU" -CAfile "$CA" 2>/dev/null | head -1 | tr -d '\r')
expect_match "malformed request line is 400" '^HTTP/1.1 400' "$out"
out=$(printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello' | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$UU" -CAfile "$CA" 2>/dev/null | head -1 | tr -d '\r')
expect_match "conflicting Content-Length is 400" '^HTTP/1.1 400' "$out"
# Slowloris: one header byte a second is cut off at the header timeout (2 s here), and a
# normal client is served meanwhile.
cat >"$T/slow.py" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
start = time.time()
try:
    for ch in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 60:
        s.send(bytes([ch]))
        time.sleep(1)
        if time.time() - start > 20:
            print("still open after 20 s"); sys.exit(1)
except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
    pass
print("closed after %.1f s" % (time.time() - start)); sys.exit(0 if time.time() - start < 8 else 1)
PY
python3 "$T/slow.py" "$UU" "$CA" >"$T/slow.out" 2>&1 &
slow=$!
sleep 1
expect "a normal client is served while a slowloris client trickles" curl -sf --cacert "$CA" "$UUURL"
if wait $slow; then ok "slowloris client is disconnected at the header timeout ($(cat "$T/slow.out"))"; else not_ok "slowloris client is disconnected at the header timeout ($(cat "$T/slow.out"))"; fi

# TLS handshakes in progress per client address (3 here): open connections whose handshake
# completed do not count; silent connections from 127.0.0.1 do, and a 4th from there is closed
# at once, while 127.0.0.2 is served; once they close, 127.0.0.1 is served again.
cat >"$T/hs.py" <<'PY'
import socket, subprocess, sys, time
port, url, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def tcp():
    return socket.create_connection(("127.0.0.1", port))
def curl(src):
    return subprocess.run(["curl", "-sf", "-o", "/dev/null", "--interface", src, "--cacert", ca, url]).returncode == 0
import ssl
ctx = ssl.create_default_context(cafile=ca)
done = [ctx.wrap_socket(tcp(), server_hostname="localhost") for _ in range(3)]
served = "served" if curl("127.0.0.1") else "refused"
held = [tcp() for _ in range(3)]
time.sleep(0.3)
s = tcp(); s.settimeout(2)
try:
    fourth = "closed" if s.recv(1) == b"" else "open"
except (ConnectionResetError, BrokenPipeError):
    fourth = "closed"
except socket.timeout:
    fourth = "open"
other = "served" if curl("127.0.0.2") else "refused"
for h in held:
    h.close()
time.sleep(0.5)
print("completed=%s fourth=%s other_address=%s after=%s" % (served, fourth, other, "served" if curl("127.0.0.1") else "refused"))
PY
out=$(python3 "$T/hs.py" "$UU" "$UUURL" "$CA")
expect_match "TLS handshakes per address: 3 completed TLS connections from 127.0.0.1 do not count" "completed=served" "$out"
expect_match "... a 4th silent connection from 127.0.0.1 is closed at once" "fourth=closed" "$out"
expect_match "... 127.0.0.2 is served meanwhile" "other_address=served" "$out"
expect_match "... once the silent ones close, 127.0.0.1 is served again" "after=served" "$out"
expect_match "... counted as refused" 'sealguard_connections_refused_total\{listener="SEAL-UU"\} [1-9]' "$(curl -s "http://127.0.0.1:$ADMIN/metrics")"

# New TLS connections per client address and second (SEAL-E here: 1 per second, 5 at once):
# of seven connections from 127.0.0.1 at once, five are taken into their handshake (fewer if
# the server's own clients used some of the allowance just before; which ones depends on the
# worker that accepts each) and the others are closed before it, 127.0.0.2 is served meanwhile, and 127.0.0.1 again once its allowance came
# back; a full mutual-TLS request then works.
cat >"$T/hsrate.py" <<'PY'
import select, socket, sys, time
port = int(sys.argv[1])
def conn(src):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s
def state(s):
    # a connection taken waits for our ClientHello; a refused one is closed at once
    if not select.select([s], [], [], 0.5)[0]:
        return "open"
    try:
        return "closed" if s.recv(1) == b"" else "open"
    except ConnectionResetError:
        return "closed"
time.sleep(1.5)  # whatever this address used before has come back
first = [conn("127.0.0.1") for _ in range(7)]
states = [state(s) for s in first]
other = state(conn("127.0.0.2"))
time.sleep(1.2)
later = state(conn("127.0.0.1"))
print("first=%s other=%s later=%s open=%d closed=%d" % (",".join(states), other, later,
      states.count("open"), states.count("closed")))
PY
E_REFUSED() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '$1=="sealguard_connections_refused_total{listener=\"SEAL-E\"}"{print $2}'; }
R0=$(E_REFUSED)
out=$(python3 "$T/hsrate.py" "$E")
n_open=$(printf '%s' "$out" | sed -n 's/.* open=\([0-9]*\).*/\1/p')
if [ "${n_open:-0}" -ge 1 ] && [ "$n_open" -le 5 ] && printf '%s' "$out" | grep -q "closed=$((7 - n_open))$"; then
	ok "TLS handshake rate per address: of 7 at once at most 5 are taken, the others closed before their handshake ($out)"
else
	not_ok "TLS handshake rate per address: $out"
fi
expect_match "... another address is served meanwhile" "other=open" "$out"
expect_match "... 127.0.0.1 again after its allowance came back (1 per second)" "later=open" "$out"
expect_eq "... counted as refused on SEAL-E" "$(printf '%s' "$out" | sed 's/.*closed=//')" "$(($(E_REFUSED) - ${R0:-0}))"
sleep 1.2
expect "... and a mutual-TLS request on SEAL-E works after it" curl -sf -o /dev/null --cacert "$CA" --cert "$PKI/seal-servers/gm-1.crt" --key "$PKI/seal-servers/gm-1.key" "https://localhost:$E/healthz"

# --- admin listener ---
curl -s -D "$T/mh" -o "$T/metrics" "http://127.0.0.1:$ADMIN/metrics"; rc=$?
out=$(cat "$T/metrics")
expect_eq "metrics body arrives whole (curl status, Content-Length = bytes)" \
	"0 $(tr -d '\r' <"$T/mh" | awk 'tolower($1)=="content-length:"{print $2}')" "$rc $(wc -c <"$T/metrics")"
expect_match "metrics count TLS handshakes" 'sealguard_tls_handshakes_total\{result="full"\} [1-9]' "$out"
expect_match "metrics count requests by status" 'sealguard_http_requests_total\{[^}]*code="431"[^}]*\} [1-9]' "$out"
expect_match "metrics have a latency histogram" 'sealguard_http_request_duration_seconds_bucket' "$out"
curl -sf -o "$T/ca.crl" "http://127.0.0.1:$ADMIN/pki/ca.crl"
out=$(openssl crl -inform DER -in "$T/ca.crl" -noout -text 2>&1)
expect_match "the CRL is published DER at the cRLDistributionPoints URI" 'Revoked Certificates' "$out"
cdp=$(openssl x509 -in "$PKI/server.crt" -noout -ext crlDistributionPoints 2>&1)
expect_match "certificates name the CRL URI" 'URI:http://127.0.0.1:9090/pki/ca.crl|URI:http://' "$cdp"

# --- access log ---
expect_match "access log is JSON lines with listener and status" '"listener":"SEAL-S".*"status":200' "$(grep '"listener":"SEAL-S"' "$T/server.log" | head -3)"
if grep -q 'v2x-app.key\|BEGIN PRIVATE KEY' "$T/server.log"; then not_ok "no key material in logs"; else ok "no key material in logs"; fi

# --- graceful stop ---
if sg_stop; then ok "SIGTERM drains and exits 0"; else not_ok "SIGTERM drains and exits 0"; fi

# --- configuration refusals at start ---
sed 's/tls: {mode: server-auth}/tls: {mode: server-auth, min_version: TLS1.1}/' "$T/sg.yaml" >"$T/bad.yaml"
out=$("$SG_BIN" --config "$T/bad.yaml" serve 2>&1); rc=$?
expect_match "a config asking for TLS 1.1 is refused at start" 'TLS1.1' "$out"
expect_eq "exit status of the refused start" 1 "$rc"
sed 's/tls: {mode: server-auth}/tls: {mode: server-auth, ciphers: ECDHE-ECDSA-AES128-SHA256}/' "$T/sg.yaml" >"$T/bad2.yaml"
out=$("$SG_BIN" --config "$T/bad2.yaml" serve 2>&1)
expect_match "a config asking for a CBC suite is refused at start" 'AES128-SHA256' "$out"
sed 's/tls: {mode: server-auth}/tls: {mode: server-auth, min_version: TLS1.3}/' "$T/sg.yaml" >"$T/narrow.yaml"
sg_start "$T/narrow.yaml" && ok "a config narrowing to TLS 1.3 starts" || not_ok "a config narrowing to TLS 1.3 starts"
refuse "narrowed listener refuses TLS 1.2" sc "$UU" -tls1_2
expect "narrowed listener accepts TLS 1.3" sc "$UU" -tls1_3
sg_stop

# --- T6: TLS-PSK reference point ---
KEY=$(openssl rand -hex 32)
printf 'ue-0001:%s\n' "$KEY" >"$T/psk.txt"; chmod 600 "$T/psk.txt"
sed "s|tls: {mode: server-auth}|tls: {mode: psk, psk_file: $T/psk.txt}|" "$T/sg.yaml" >"$T/psk.yaml"
sg_start "$T/psk.yaml" && ok "a PSK reference point starts" || not_ok "a PSK reference point starts"
psk() { printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | timeout 10 openssl s_client -quiet -connect "127.0.0.1:$UU" "$@" 2>/dev/null | grep -q '"pass"'; }
expect "TLS 1.3 external PSK with the right key" psk -tls1_3 -psk_identity ue-0001 -psk "$KEY"
expect "TLS 1.2 DHE-PSK-AES128-GCM-SHA256" psk -tls1_2 -cipher DHE-PSK-AES128-GCM-SHA256 -psk_identity ue-0001 -psk "$KEY"
refuse "PSK with a wrong key" psk -tls1_3 -psk_identity ue-0001 -psk "$(openssl rand -hex 32)"
refuse "PSK with an unknown identity" psk -tls1_3 -psk_identity ue-9999 -psk "$KEY"
refuse "TLS 1.2 plain PSK (no forward secrecy) is refused" psk -tls1_2 -cipher PSK-AES128-GCM-SHA256 -psk_identity ue-0001 -psk "$KEY"
chmod 644 "$T/psk.txt"
sg_stop
out=$("$SG_BIN" --config "$T/psk.yaml" serve 2>&1)
expect_match "a PSK file readable by others is refused at start" 'psk' "$out"
sg_done
