#!/usr/bin/env bash
# Authorization on every reference point (issue 4; TS 33.434 §5.1.1 R1/R3/R4, I10, G2):
# one table of bad and good requests across the three kinds of listener — SEAL-UU (bearer),
# SEAL-S (mutual TLS + certificate-bound bearer) and SEAL-E (mutual TLS) — each row asserting
# the status, the RFC 6750 WWW-Authenticate error (or a handshake failure) and that nothing was
# written; the revocation delay bound (resource.revocation_poll_ms + one request); then a
# subset again against the roles split (`serve --roles idm` + `serve --roles gm`, SEAL-E
# between them).
#
# Tokens with claims identity management would never issue (expired, future iat, wrong iss,
# missing scope, no client_id) are signed by a test key that a small SEAL-E proxy adds to the
# JWKS the resource server fetches; every other row uses real tokens from the SIM-S.
. "$(dirname "$0")/lib/common.sh"

POLL_MS=1000
sg_ports
sg_write_config "$T/sg.yaml" "    limits: {max_body_bytes: 65536}"
# SEAL-S gets the same body limit (sg_write_config puts the limits line under SEAL-UU)
sed -i '/name: SEAL-S/,/services/ s|    auth: mtls+bearer|    auth: mtls+bearer\n    limits: {max_body_bytes: 65536}|' "$T/sg.yaml"
# SEAL-E takes only the listed SEAL servers (and this host's own certificate, the policy's
# client credential toward identity management)
sed -i '/name: SEAL-E/,/services/ s|    auth: mtls$|    auth: mtls\n    allowed_identities: ["DNS:localhost", "DNS:gm-1"]|' "$T/sg.yaml"
PROXY=$(free_port)
cat >>"$T/sg.yaml" <<YAML
idm:
  access_token_ttl_s: 300
  scrypt_ln: 10
resource:
  idm_url: https://localhost:$PROXY
  revocation_poll_ms: $POLL_MS
  jwks_min_refresh_ms: 1000
YAML
PKI=$T/state/pki
SG() { "$SG_BIN" --config "$T/sg.yaml" "$@"; }
SG pki init --dir "$PKI" --val-server v2x-app --val-server other-app --val-server stranger --seal-server gm-1 >/dev/null
CA=$PKI/ca.crt
ISS=https://localhost:$UU
C=(curl -s --cacert "$CA" --max-time 10)
VAL=(--cert "$PKI/val-servers/v2x-app.crt" --key "$PKI/val-servers/v2x-app.key")
OTHER=(--cert "$PKI/val-servers/other-app.crt" --key "$PKI/val-servers/other-app.key")
STRANGER=(--cert "$PKI/val-servers/stranger.crt" --key "$PKI/val-servers/stranger.key")
GM=(--cert "$PKI/seal-servers/gm-1.crt" --key "$PKI/seal-servers/gm-1.key")

# --- the test key and the SEAL-E proxy that adds it to the JWKS ---
cat >"$T/tk.py" <<'PY'
import sys, json, base64, time
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
cmd = sys.argv[1]
if cmd == "gen":
    k = ec.generate_private_key(ec.SECP256R1())
    open(sys.argv[2], "wb").write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    n = k.public_key().public_numbers()
    print(json.dumps({"kty": "EC", "crv": "P-256", "x": b(n.x.to_bytes(32, "big")), "y": b(n.y.to_bytes(32, "big")), "kid": "authz-test-key", "use": "sig", "alg": "ES256"}))
elif cmd == "sign":  # sign KEYPEM CLAIMS_JSON
    k = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
    h = b(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": "authz-test-key"}).encode())
    p = b(sys.argv[3].encode())
    r, s = decode_dss_signature(k.sign((h + "." + p).encode(), ec.ECDSA(hashes.SHA256())))
    print(h + "." + p + "." + b(r.to_bytes(32, "big") + s.to_bytes(32, "big")))
PY
cat >"$T/proxy.py" <<'PY'
import sys, ssl, json, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, upstream, cert, key, ca, ccert, ckey, jwk = sys.argv[1:9]
cctx = ssl.create_default_context(cafile=ca); cctx.load_cert_chain(ccert, ckey)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            with urllib.request.urlopen(upstream + self.path, context=cctx, timeout=5) as r:
                body, status = r.read(), r.status
        except Exception as e:
            self.send_response(502); self.end_headers(); return
        if self.path.startswith("/oauth2/jwks"):
            d = json.loads(body); d["keys"].append(json.load(open(jwk))); body = json.dumps(d).encode()
        self.send_response(status); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
srv = ThreadingHTTPServer(("127.0.0.1", int(port)), H)
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); sctx.load_cert_chain(cert, key)
sctx.load_verify_locations(ca); sctx.verify_mode = ssl.CERT_REQUIRED
srv.socket = sctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
py 'import cryptography' 2>/dev/null || { echo "python3-cryptography is required"; exit 1; }
python3 "$T/tk.py" gen "$T/tk.pem" >"$T/tk.jwk"
python3 "$T/proxy.py" "$PROXY" "https://localhost:$E" "$PKI/server.crt" "$PKI/server.key" "$CA" \
	"$PKI/seal-servers/gm-1.crt" "$PKI/seal-servers/gm-1.key" "$T/tk.jwk" 2>"$T/proxy.log" &
PROXY_PID=$!
trap 'kill $PROXY_PID 2>/dev/null; sg_cleanup' EXIT

sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }

# --- registry and real tokens ---
printf 'alice-pass-1\n' >"$T/alice.pw"; printf 'bob-pass-2\n' >"$T/bob.pw"
printf 's3cret-client-secret-0123456789abcdefghij\n' >"$T/app.secret"; chmod 600 "$T/app.secret"
RURI=http://127.0.0.1:1/cb
expect "user add alice" SG user add alice --password-file "$T/alice.pw" --val-user-id v2x=alice@v2x
expect "user add bob" SG user add bob --password-file "$T/bob.pw" --val-user-id v2x=bob@v2x
expect "client add app" SG client add app --redirect-uri "$RURI" --secret-file "$T/app.secret"
printf 'app2-client-secret-0123456789abcdefghijklmn\n' >"$T/app2.secret"; chmod 600 "$T/app2.secret"
expect "client add app2 (to be removed)" SG client add app2 --redirect-uri "$RURI" --secret-file "$T/app2.secret"
expect "valserver add v2x-app" SG valserver add v2x-app --identity DNS:v2x-app --val-service v2x
expect "valserver add other-app" SG valserver add other-app --identity DNS:other-app --val-service fleet
sleep 1.2
BASIC=(-u "app:s3cret-client-secret-0123456789abcdefghij")
claims() { py 'import sys,json,base64
t=sys.argv[1].split(".")[1]; t+="="*(-len(t)%4)
print(json.dumps(json.loads(base64.urlsafe_b64decode(t))))' "$1"; }
VERIFIER=$(py 'import secrets;print(secrets.token_urlsafe(48)[:64])')
CHALLENGE=$(py 'import sys,hashlib,base64;print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).rstrip(b"=").decode())' "$VERIFIER")
# ue_tokens ISS USER PASS [resource]: the token response of a code flow through the login page
ue_tokens() {
	local iss=$1 u=$2 p=$3 res=${4:-}
	local url page tx loc code
	url=$(py 'import sys,urllib.parse
print(sys.argv[1]+"/oauth2/authorize?"+urllib.parse.urlencode({"response_type":"code","client_id":sys.argv[4],"redirect_uri":sys.argv[2],"scope":"openid seal:gm seal:km","state":"s1","acr_values":"3gpp:acr:password","code_challenge":sys.argv[3],"code_challenge_method":"S256"}))' "$iss" "$RURI" "$CHALLENGE" "${UE_CLIENT:-app}")
	page=$("${C[@]}" "$url")
	tx=$(printf '%s' "$page" | grep -o 'name="tx" value="[^"]*"' | sed 's/.*value="//;s/"$//')
	loc=$("${C[@]}" -D - -o /dev/null --data-urlencode "tx=$tx" --data-urlencode "username=$u" --data-urlencode "password=$p" "$iss/oauth2/login" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
	code=$(py 'import sys,urllib.parse;print(urllib.parse.parse_qs(urllib.parse.urlparse(sys.argv[1]).query).get("code",[""])[0])' "$loc")
	"${C[@]}" "${BASIC[@]}" -d grant_type=authorization_code --data-urlencode "code=$code" --data-urlencode "redirect_uri=$RURI" --data-urlencode "code_verifier=$VERIFIER" ${res:+-d resource=$res} "$iss/oauth2/token"
}
# val_token SISS CERTARGS... [-- extra -d args]: a client_credentials access token
val_token() {
	local siss=$1 id=$2; shift 2
	jget "$("${C[@]}" "$@" -d grant_type=client_credentials -d client_id="$id" -d scope=seal:gm "$siss/oauth2/token")" access_token
}

SISS=https://localhost:$S
UE=$(ue_tokens "$ISS" alice alice-pass-1)
AT=$(jget "$UE" access_token); IDT=$(jget "$UE" id_token); RT=$(jget "$UE" refresh_token)
BOB_AT=$(jget "$(ue_tokens "$ISS" bob bob-pass-2)" access_token)
KM_AT=$(jget "$(ue_tokens "$ISS" alice alice-pass-1 sealguard:km)" access_token)
VAL_AT=$(val_token "$SISS" v2x-app "${VAL[@]}")
OTHER_AT=$(val_token "$SISS" other-app "${OTHER[@]}")
VAL_KM_AT=$(jget "$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d client_id=v2x-app -d scope=seal:km "$SISS/oauth2/token")" access_token)
[ -n "$AT" ] && [ -n "$VAL_AT" ] && [ -n "$OTHER_AT" ] && [ -n "$KM_AT" ] && ok "real tokens from the SIM-S" || not_ok "real tokens from the SIM-S"

# forged: test-key tokens derived from a real one; CLAIMS_PATCH is a JSON object merged in
# (null deletes), with "exp_off"/"iat_off" relative to now
forge_claims() { # TOKEN PATCH
	py 'import sys,json,base64,time
t=sys.argv[1].split(".")[1]; t+="="*(-len(t)%4)
c=json.loads(base64.urlsafe_b64decode(t)); p=json.loads(sys.argv[2]); now=int(time.time())
for k,v in p.items():
    if k=="exp_off": c["exp"]=now+v
    elif k=="iat_off": c["iat"]=now+v
    elif v is None: c.pop(k,None)
    else: c[k]=v
print(json.dumps(c))' "$1" "$2"; }
tsign() { python3 "$T/tk.py" sign "$T/tk.pem" "$(forge_claims "$1" "$2")"; }
jwks=$("${C[@]}" "$ISS/oauth2/jwks")
forge() { py 'import sys,json,base64,hmac,hashlib
b=lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
d=lambda s: base64.urlsafe_b64decode(s+"="*(-len(s)%4))
tok,kind,jwks=sys.argv[1],sys.argv[2],sys.argv[3]
h,p,s=tok.split(".")
hd=json.loads(d(h))
if kind=="none":
    hd["alg"]="none"; print(b(json.dumps(hd).encode())+"."+p+".")
elif kind=="hs256":
    hd["alg"]="HS256"; hh=b(json.dumps(hd).encode())
    key=json.dumps(json.loads(jwks)["keys"][0]).encode()
    print(hh+"."+p+"."+b(hmac.new(key,(hh+"."+p).encode(),hashlib.sha256).digest()))
elif kind=="kid":
    hd["kid"]="unknown-kid"; print(b(json.dumps(hd).encode())+"."+p+"."+s)
else:
    sig=bytearray(d(s)); sig[5]^=1; print(h+"."+p+"."+b(bytes(sig)))' "$@"; }

# --- the group documents the table works on ---
GMS=$SISS/ss-gm/v1/group-documents
doc() { printf '{"valGroupId":"%s","grpDesc":"d","valServiceIds":["v2x"],"members":[{"valUserId":"alice@v2x"}]}' "$1"; }
out=$("${C[@]}" "${VAL[@]}" -D "$T/h" -H "Authorization: Bearer $VAL_AT" -H 'Content-Type: application/json' -d "$(doc grp-1)" -w '%{http_code}' -o "$T/b" "$GMS")
expect_eq "VAL server creates a group document over SEAL-S (201)" 201 "$out"
LOC=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}')
DOCID=${LOC##*/}
[ -n "$DOCID" ] && ok "Location names the document ($DOCID)" || not_ok "Location header: $(cat "$T/h")"
UUDOC=https://localhost:$UU/ss-gm/v1/group-documents/$DOCID
SDOC=$GMS/$DOCID
# the state every refused row must leave untouched: all documents as the owner sees them
snapshot() { "${C[@]}" "${VAL[@]}" -H "Authorization: Bearer $VAL_AT" "$GMS" | sha256sum | cut -c1-64; }
BASE=$(snapshot)
expect_match "owner lists its documents" '^[0-9a-f]{64}$' "$BASE"

# row NAME WANT_STATUS WANT_ERROR URL CURL_ARGS...
#   WANT_ERROR: invalid_token | insufficient_scope | none (401 "Bearer realm" without error)
#   | - (no WWW-Authenticate check) | handshake (the TLS handshake must fail)
ROWS=0
row() {
	local name=$1 want=$2 err=$3 url=$4; shift 4
	ROWS=$((ROWS + 1))
	local code www
	code=$("${C[@]}" -D "$T/rh" -o "$T/rb" -w '%{http_code}' "$@" "$url" 2>"$T/re")
	local rc=$?
	www=$(tr -d '\r' <"$T/rh" | awk 'tolower($1)=="www-authenticate:"{ $1=""; sub(/^ /,""); print }')
	if [ "$err" = handshake ]; then
		if [ "$rc" -ne 0 ] && [ "$code" = 000 ]; then ok "$name: handshake refused"; else not_ok "$name: handshake accepted (HTTP $code)"; fi
	elif [ "$code" != "$want" ]; then
		not_ok "$name: status $code, want $want ($(head -c 300 "$T/rb"))"
	elif [ "$err" = none ] && ! printf '%s' "$www" | grep -Eq '^Bearer realm="sealguard"$'; then
		not_ok "$name: WWW-Authenticate '$www', want Bearer realm without error"
	elif [ "$err" != none ] && [ "$err" != - ] && ! printf '%s' "$www" | grep -q "^Bearer realm=\"sealguard\", error=\"$err\""; then
		not_ok "$name: WWW-Authenticate '$www', want error=$err"
	elif [ "$want" -ge 400 ] && ! grep -q '"status":'"$want" "$T/rb"; then
		not_ok "$name: body is not a ProblemDetails: $(head -c 200 "$T/rb")"
	else
		ok "$name: $code${err:+ $err}"
	fi
	local now
	now=$(snapshot)
	[ "$now" = "$BASE" ] || { not_ok "$name: something was written"; BASE=$now; }
}
B() { printf '%s' "-HAuthorization: Bearer $1"; }
JSON=(-H 'Content-Type: application/json')

# ---- SEAL-UU: server-authenticated TLS + bearer (R1, I10) ----
row "UU: member reads its group with its token" 200 - "$UUDOC" "$(B "$AT")"
row "UU: no token" 401 none "$UUDOC"
row "UU: Basic credentials instead of a bearer token" 401 none "$UUDOC" "${BASIC[@]}"
row "UU: malformed token" 401 invalid_token "$UUDOC" "$(B not.a-token)"
row "UU: expired 120 s ago (beyond the 30 s leeway)" 401 invalid_token "$UUDOC" "$(B "$(tsign "$AT" '{"exp_off":-120,"iat_off":-500}')")"
row "UU: expired 10 s ago (within the leeway)" 200 - "$UUDOC" "$(B "$(tsign "$AT" '{"exp_off":-10,"iat_off":-500}')")"
row "UU: iat 5 minutes in the future" 401 invalid_token "$UUDOC" "$(B "$(tsign "$AT" '{"iat_off":300,"exp_off":900}')")"
row "UU: wrong iss" 401 invalid_token "$UUDOC" "$(B "$(tsign "$AT" '{"iss":"https://evil.example"}')")"
row "UU: wrong aud (token for sealguard:km, RFC 8707)" 401 invalid_token "$UUDOC" "$(B "$KM_AT")"
row "UU: missing scope seal:gm" 403 insufficient_scope "$UUDOC" "$(B "$(tsign "$AT" '{"scope":"openid seal:km"}')")"
row "UU: no client_id" 401 invalid_token "$UUDOC" "$(B "$(tsign "$AT" '{"client_id":null}')")"
row "UU: alg none" 401 invalid_token "$UUDOC" "$(B "$(forge "$AT" none "$jwks")")"
row "UU: HS256 keyed by the public key" 401 invalid_token "$UUDOC" "$(B "$(forge "$AT" hs256 "$jwks")")"
row "UU: unknown kid" 401 invalid_token "$UUDOC" "$(B "$(forge "$AT" kid "$jwks")")"
row "UU: flipped signature bit" 401 invalid_token "$UUDOC" "$(B "$(forge "$AT" flip "$jwks")")"
row "UU: an ID token is not an access token" 401 invalid_token "$UUDOC" "$(B "$IDT")"
row "UU: a VAL server's certificate-bound token" 401 invalid_token "$UUDOC" "$(B "$VAL_AT")"
row "UU: a UE reading a group it is not in" 404 - "$UUDOC" "$(B "$BOB_AT")"
row "UU: writes are not offered to UEs" 405 - "https://localhost:$UU/ss-gm/v1/group-documents" "$(B "$AT")" "${JSON[@]}" -d "$(doc grp-uu)"
row "UU: a member lists only its groups" 200 - "https://localhost:$UU/ss-gm/v1/group-documents" "$(B "$AT")"
expect_match "... and the list has its group" "\"valGroupId\":\"grp-1\"" "$(cat "$T/rb")"
row "UU: a non-member's list is empty" 200 - "https://localhost:$UU/ss-gm/v1/group-documents" "$(B "$BOB_AT")"
expect_eq "... with no document" "0" "$(py 'import sys,json;d=json.load(open(sys.argv[1]));print(len(d) if isinstance(d,list) else "x")' "$T/rb" 2>/dev/null || echo x)"

# ---- SEAL-S: mutual TLS + certificate-bound token (R3, RFC 8705) ----
X5T_VAL=$(jget "$(claims "$VAL_AT")" cnf)
row "S: no token" 401 none "$GMS" "${VAL[@]}" "${JSON[@]}" -d "$(doc grp-2)"
row "S: VAL server A's token with B's certificate" 401 invalid_token "$GMS" "${OTHER[@]}" "$(B "$VAL_AT")" "${JSON[@]}" -d "$(doc grp-2)"
"$SG_BIN" pki issue --dir "$PKI" --san DNS:v2x-app --client-auth --out "$T/v2x-second" >/dev/null
row "S: a bound token with another certificate of the same identity" 401 invalid_token "$GMS" --cert "$T/v2x-second.crt" --key "$T/v2x-second.key" "$(B "$VAL_AT")" "${JSON[@]}" -d "$(doc grp-2)"
row "S: a UE token (no cnf)" 401 invalid_token "$GMS" "${VAL[@]}" "$(B "$AT")" "${JSON[@]}" -d "$(doc grp-2)"
row "S: wrong aud (VAL token for seal:km)" 401 invalid_token "$GMS" "${VAL[@]}" "$(B "$VAL_KM_AT")" "${JSON[@]}" -d "$(doc grp-2)"
row "S: bound token without seal:gm" 403 insufficient_scope "$GMS" "${VAL[@]}" "$(B "$(tsign "$VAL_AT" '{"scope":"seal:km"}')")" "${JSON[@]}" -d "$(doc grp-2)"
row "S: bound token expired beyond the leeway" 401 invalid_token "$GMS" "${VAL[@]}" "$(B "$(tsign "$VAL_AT" '{"exp_off":-120,"iat_off":-500}')")" "${JSON[@]}" -d "$(doc grp-2)"
row "S: bound token with a wrong iss" 401 invalid_token "$GMS" "${VAL[@]}" "$(B "$(tsign "$VAL_AT" '{"iss":"https://evil.example"}')")" "${JSON[@]}" -d "$(doc grp-2)"
row "S: alg none" 401 invalid_token "$GMS" "${VAL[@]}" "$(B "$(forge "$VAL_AT" none "$jwks")")" "${JSON[@]}" -d "$(doc grp-2)"
row "S: flipped signature bit" 401 invalid_token "$GMS" "${VAL[@]}" "$(B "$(forge "$VAL_AT" flip "$jwks")")" "${JSON[@]}" -d "$(doc grp-2)"
row "S: unregistered SAN with a registered VAL server's token" 401 invalid_token "$GMS" "${STRANGER[@]}" "$(B "$VAL_AT")" "${JSON[@]}" -d "$(doc grp-2)"
out=$("${C[@]}" "${STRANGER[@]}" -w ' %{http_code}' -d grant_type=client_credentials -d client_id=stranger "$SISS/oauth2/token")
expect_match "S: an unregistered SAN gets no token (invalid_client)" '"invalid_client".* 401$' "$out"
row "S: another VAL server replacing A's group" 403 - "$SDOC" "${OTHER[@]}" "$(B "$OTHER_AT")" -X PUT "${JSON[@]}" -d "$(doc grp-1)"
py 'print("{\"valGroupId\":\"big\",\"grpDesc\":\"" + "x"*70000 + "\",\"valServiceIds\":[\"v2x\"],\"members\":[{\"valUserId\":\"a\"}]}")' >"$T/big.json"
row "S: oversized JSON body" 413 - "$GMS" "${VAL[@]}" "$(B "$VAL_AT")" "${JSON[@]}" --data-binary "@$T/big.json"
row "S: malformed JSON body" 400 - "$GMS" "${VAL[@]}" "$(B "$VAL_AT")" "${JSON[@]}" -d '{"valGroupId":"grp-2",'
row "S: JSON body that is not a group document" 400 - "$GMS" "${VAL[@]}" "$(B "$VAL_AT")" "${JSON[@]}" -d '["not","an","object"]'
row "S: merge-patch removing valGroupId" 400 - "$SDOC" "${VAL[@]}" "$(B "$VAL_AT")" -X PATCH -H 'Content-Type: application/merge-patch+json' -d '{"valGroupId":null}'
row "S: merge-patch emptying members" 400 - "$SDOC" "${VAL[@]}" "$(B "$VAL_AT")" -X PATCH -H 'Content-Type: application/merge-patch+json' -d '{"members":[]}'
"$SG_BIN" pki init --dir "$T/other" --val-server v2x-app >/dev/null
row "S: certificate from another CA" 000 handshake "$GMS" --cert "$T/other/val-servers/v2x-app.crt" --key "$T/other/val-servers/v2x-app.key" "$(B "$VAL_AT")"
"$SG_BIN" pki issue --dir "$PKI" --san DNS:v2x-app --client-auth --not-before-offset -864000 --not-after-offset -86400 --out "$T/expired" >/dev/null
row "S: expired certificate" 000 handshake "$GMS" --cert "$T/expired.crt" --key "$T/expired.key" "$(B "$VAL_AT")"
"$SG_BIN" pki issue --dir "$PKI" --san DNS:v2x-app --server-auth --out "$T/srvonly" >/dev/null
row "S: certificate without clientAuth EKU" 000 handshake "$GMS" --cert "$T/srvonly.crt" --key "$T/srvonly.key" "$(B "$VAL_AT")"
row "S: no client certificate" 000 handshake "$GMS" "$(B "$VAL_AT")"

# ---- SEAL-E: mutual TLS between SEAL servers (R4) ----
EURL=https://localhost:$E
row "E: a listed SEAL server reads the revocation list" 200 - "$EURL/oauth2/revocations?since=0" "${GM[@]}"
row "E: a VAL server certificate is not a listed identity" 403 - "$EURL/oauth2/revocations?since=0" "${VAL[@]}"
row "E: an unregistered SAN" 403 - "$EURL/oauth2/jwks" "${STRANGER[@]}"
row "E: no client certificate" 000 handshake "$EURL/oauth2/jwks"
# SEAL-X1 (K5): the KM server reads group documents on SEAL-E, read-only (docs/km-protocol.md)
row "E: a listed SEAL server reads group documents (SEAL-X1)" 200 - "$EURL/ss-gm/v1/group-documents" "${GM[@]}"
row "E: ss-gm writes are not offered on SEAL-E" 405 - "$EURL/ss-gm/v1/group-documents" "${GM[@]}" "${JSON[@]}" -d '{"valGroupId":"x","valServiceIds":["v2x"]}'

# ---- revocation (I10): refused within revocation_poll_ms + one request ----
delay_row() { # NAME URL CURL_ARGS... : polls until 401, must be within the bound
	local name=$1 url=$2; shift 2
	local t0 t1 code
	t0=$(date +%s%3N)
	while :; do
		code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$@" "$url")
		t1=$(date +%s%3N)
		[ "$code" = 401 ] && break
		[ $((t1 - t0)) -gt $((POLL_MS * 3 + 2000)) ] && break
		sleep 0.05
	done
	ROWS=$((ROWS + 1))
	# documented bound: revocation_poll_ms + one poll request (+ this request's round trip)
	if [ "$code" = 401 ] && [ $((t1 - t0)) -le $((POLL_MS + 500)) ]; then ok "$name: refused after $((t1 - t0)) ms (bound $POLL_MS ms + one request)"; else not_ok "$name: $code after $((t1 - t0)) ms"; fi
}
REV_AT=$(jget "$(ue_tokens "$ISS" alice alice-pass-1)" access_token)
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$(B "$REV_AT")" "$UUDOC")
expect_eq "UU: token accepted (and cached) before its revocation" 200 "$code"
code=$("${C[@]}" "${BASIC[@]}" -o /dev/null -w '%{http_code}' --data-urlencode "token=$REV_AT" "$ISS/oauth2/revoke")
expect_eq "RFC 7009 revoke of the UE access token" 200 "$code"
delay_row "UU: a revoked access token" "$UUDOC" "$(B "$REV_AT")"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$(B "$AT")" "$UUDOC")
expect_eq "UU: ... the user's refresh-token grant is still good until it is revoked" 200 "$code"
code=$("${C[@]}" "${BASIC[@]}" -o /dev/null -w '%{http_code}' --data-urlencode "token=$RT" "$ISS/oauth2/revoke")
expect_eq "RFC 7009 revoke of the refresh token (the client's grant)" 200 "$code"
delay_row "UU: an access token of a revoked grant" "$UUDOC" "$(B "$AT")"
VREV_AT=$(val_token "$SISS" v2x-app "${VAL[@]}")
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' "$(B "$VREV_AT")" "$SDOC")
expect_eq "S: bound token accepted before its revocation" 200 "$code"
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' -d client_id=v2x-app --data-urlencode "token=$VREV_AT" "$SISS/oauth2/revoke")
expect_eq "RFC 7009 revoke by the VAL server" 200 "$code"
delay_row "S: a revoked bound token" "$SDOC" "${VAL[@]}" "$(B "$VREV_AT")"
row "S: the revoked token cannot write" 401 invalid_token "$GMS" "${VAL[@]}" "$(B "$VREV_AT")" "${JSON[@]}" -d "$(doc grp-3)"
# userinfo_refused NAME TOKEN: identity management's userinfo answers 401 invalid_token (an
# RFC 6750 error body, not a ProblemDetails)
# (identity management follows registry changes within its ~1 s reload period: poll up to 3 s)
userinfo_refused() {
	local code
	for _ in $(seq 1 30); do
		code=$("${C[@]}" -D "$T/uh" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "$ISS/oauth2/userinfo")
		[ "$code" = 401 ] && break
		sleep 0.1
	done
	if [ "$code" = 401 ] && tr -d '\r' <"$T/uh" | grep -qi '^www-authenticate: Bearer realm="sealguard", error="invalid_token"'; then ok "$1: 401 invalid_token"; else not_ok "$1: $code $(tr -d '\r' <"$T/uh" | grep -i www-auth)"; fi
}
# a removed SIM-C client: its grants are revoked, so resource servers refuse its unexpired
# access tokens within the revocation delay (not only identity management)
SAVED_BASIC=("${BASIC[@]}")
BASIC=(-u "app2:app2-client-secret-0123456789abcdefghijklmn")
APP2=$(UE_CLIENT=app2 ue_tokens "$ISS" alice alice-pass-1)
BASIC=("${SAVED_BASIC[@]}")
APP2_AT=$(jget "$APP2" access_token)
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$(B "$APP2_AT")" "$UUDOC")
expect_eq "UU: a token of client app2 is accepted before the client is removed" 200 "$code"
expect_match "client remove app2 revokes its grant" 'removed client app2 .*1 grant revoked' "$(SG client remove app2)"
delay_row "UU: an access token of a removed client" "$UUDOC" "$(B "$APP2_AT")"
row "UU: ... refused with invalid_token" 401 invalid_token "$UUDOC" "$(B "$APP2_AT")"
userinfo_refused "userinfo: a token of a removed client" "$APP2_AT"
out=$("${C[@]}" -u "app2:app2-client-secret-0123456789abcdefghijklmn" -w ' %{http_code}' -d grant_type=refresh_token --data-urlencode "refresh_token=$(jget "$APP2" refresh_token)" "$ISS/oauth2/token")
expect_match "... and its refresh token is dead" ' 401$' "$out"
# a disabled user: its grants are revoked too; enabling it again does not revive them
DIS=$(ue_tokens "$ISS" alice alice-pass-1)
DIS_AT=$(jget "$DIS" access_token)
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$(B "$DIS_AT")" "$UUDOC")
expect_eq "UU: alice's token is accepted before alice is disabled" 200 "$code"
expect "user disable alice" SG user disable alice
delay_row "UU: an access token of a disabled user" "$UUDOC" "$(B "$DIS_AT")"
row "UU: ... refused with invalid_token" 401 invalid_token "$UUDOC" "$(B "$DIS_AT")"
userinfo_refused "userinfo: a token of a disabled user" "$DIS_AT"
expect "user enable alice" SG user enable alice
sleep 1.2
row "UU: the disabled user's old token stays refused after enable" 401 invalid_token "$UUDOC" "$(B "$DIS_AT")"
out=$("${C[@]}" "${BASIC[@]}" -w ' %{http_code}' -d grant_type=refresh_token --data-urlencode "refresh_token=$(jget "$DIS" refresh_token)" "$ISS/oauth2/token")
expect_match "... and so does its refresh token" '"invalid_grant".* 400$' "$out"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$(B "$(jget "$(ue_tokens "$ISS" alice alice-pass-1)" access_token)")" "$UUDOC")
expect_eq "UU: after enable, a fresh login works" 200 "$code"
# a revoked client: the VAL server is removed from the registry; its unexpired token is
# revoked (its client_credentials grant) and refused within the revocation delay
code=$("${C[@]}" "${OTHER[@]}" -o /dev/null -w '%{http_code}' "$(B "$OTHER_AT")" "$GMS")
expect_eq "S: other-app's token is accepted before other-app is removed" 200 "$code"
expect "valserver remove other-app" SG valserver remove other-app
delay_row "S: a removed VAL server's unexpired token" "$GMS" "${OTHER[@]}" "$(B "$OTHER_AT")"
row "S: ... refused with invalid_token, even for a write" 401 invalid_token "$GMS" "${OTHER[@]}" "$(B "$OTHER_AT")" "${JSON[@]}" -d "$(printf '{"valGroupId":"g","grpDesc":"d","valServiceIds":["fleet"],"members":[{"valUserId":"x"}]}')"
# the token endpoint follows the registry within its reload period (~1 s): poll up to 3 s
for _ in $(seq 1 30); do
	out=$("${C[@]}" "${OTHER[@]}" -w ' %{http_code}' -d grant_type=client_credentials -d client_id=other-app "$SISS/oauth2/token")
	printf '%s' "$out" | grep -q ' 401$' && break
	sleep 0.1
done
expect_match "... and it gets no new token" '"invalid_client".* 401$' "$out"
# a revoked certificate: on the CRL, the handshake fails once the server reloaded it
"$SG_BIN" pki issue --dir "$PKI" --san DNS:v2x-app --client-auth --out "$T/torevoke" >/dev/null
expect "revoke a VAL server certificate" "$SG_BIN" pki revoke "$T/torevoke.crt" --dir "$PKI"
sleep 2.2
row "S: revoked certificate" 000 handshake "$GMS" --cert "$T/torevoke.crt" --key "$T/torevoke.key" "$(B "$VAL_AT")"

# a fresh VAL token still works after all of this: the refusals changed nothing
NEW_AT=$(val_token "$SISS" v2x-app "${VAL[@]}")
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' "$(B "$NEW_AT")" "$SDOC")
expect_eq "S: a fresh bound token reads the document" 200 "$code"
echo "authz table: $ROWS rows"
[ "$ROWS" -ge 40 ] && ok "at least 40 table rows ($ROWS)" || not_ok "only $ROWS table rows"
if grep -qF "$VAL_AT" "$T/server.log" || grep -qF "$AT" "$T/server.log"; then not_ok "no token in the log"; else ok "no token in the log"; fi
expect "graceful stop" sg_stop

# ==== the roles split: identity management and group management in two processes ====
IUU=$(free_port); IS=$(free_port); IE=$(free_port); IADMIN=$(free_port)
GUU=$(free_port); GS=$(free_port); GADMIN=$(free_port)
split_conf() { # FILE ADMIN UU S E|"" SERVICES STATE_DIR [REVOCATION_POLL_MS]
	cat >"$1" <<YAML
state_dir: $7
pki_dir: $PKI
store: {driver: sqlite, path: $T/state/sealguard.db}
workers: 2
admin: {bind: 127.0.0.1:$2}
idm: {issuer: "https://localhost:$IUU", access_token_ttl_s: 300, scrypt_ln: 10}
resource: {idm_url: "https://localhost:$IE", revocation_poll_ms: ${8:-$POLL_MS}}
reference_points:
  - {name: SEAL-UU, bind: "127.0.0.1:$3", tls: {mode: server-auth}, auth: bearer, services: [$6]}
  - {name: SEAL-S, bind: "127.0.0.1:$4", tls: {mode: mutual}, auth: mtls+bearer, services: [$6]}
YAML
	[ -n "$5" ] && printf '  - {name: SEAL-E, bind: "127.0.0.1:%s", tls: {mode: mutual}, auth: mtls, services: [%s]}\n' "$5" "$6" >>"$1"
}
# identity management keeps its state dir (the master key that seals its signing keys); both
# share the PKI and, on one host, the SQLite database (the VAL server registry gm consults)
split_conf "$T/idm.yaml" "$IADMIN" "$IUU" "$IS" "$IE" idm "$T/state"
split_conf "$T/gm.yaml" "$GADMIN" "$GUU" "$GS" "" gm "$T/state-gm" 100
"$SG_BIN" --config "$T/idm.yaml" serve --roles idm >"$T/idm.log" 2>&1 &
IDM_PID=$!
"$SG_BIN" --config "$T/gm.yaml" serve --roles gm >"$T/gm.log" 2>&1 &
GM_PID=$!
trap 'kill $PROXY_PID $IDM_PID $GM_PID 2>/dev/null; sg_cleanup' EXIT
for _ in $(seq 1 300); do # up to 30 s: two processes start on one database (slow under ASan)
	curl -sf "http://127.0.0.1:$IADMIN/healthz" >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$GADMIN/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
if curl -sf "http://127.0.0.1:$IADMIN/healthz" >/dev/null && curl -sf "http://127.0.0.1:$GADMIN/healthz" >/dev/null; then
	ok "split: idm and gm processes start"
else
	not_ok "split: start"; for f in "$T/idm.log" "$T/gm.log"; do echo "== $f"; tail -n 5 "$f"; done
fi
ISS=https://localhost:$IUU
SISS=https://localhost:$IS
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "https://localhost:$GUU/oauth2/jwks")
expect_eq "split: the gm process serves no identity management" 404 "$code"
UE=$(ue_tokens "$ISS" alice alice-pass-1)
AT=$(jget "$UE" access_token)
OLD_BOB_AT=$BOB_AT
BOB_AT=$(jget "$(ue_tokens "$ISS" bob bob-pass-2)" access_token)
VAL_AT=$(val_token "$SISS" v2x-app "${VAL[@]}")
GMS=https://localhost:$GS/ss-gm/v1/group-documents
UUDOC=https://localhost:$GUU/ss-gm/v1/group-documents/$DOCID
SDOC=$GMS/$DOCID
BASE=$(snapshot)
row "split UU: member reads its group (token from the idm process)" 200 - "$UUDOC" "$(B "$AT")"
row "split UU: no token" 401 none "$UUDOC"
row "split UU: flipped signature bit" 401 invalid_token "$UUDOC" "$(B "$(forge "$AT" flip "$jwks")")"
row "split UU: the test key of the first server is not trusted here" 401 invalid_token "$UUDOC" "$(B "$(tsign "$AT" '{}')")"
row "split UU: a VAL server's bound token" 401 invalid_token "$UUDOC" "$(B "$VAL_AT")"
row "split UU: non-member" 404 - "$UUDOC" "$(B "$BOB_AT")"
row "split UU: a token of another issuer (the first server's)" 401 invalid_token "$UUDOC" "$(B "$OLD_BOB_AT")"
row "split S: owner reads with its bound token" 200 - "$SDOC" "${VAL[@]}" "$(B "$VAL_AT")"
row "split S: A's token with another certificate" 401 invalid_token "$SDOC" --cert "$T/v2x-second.crt" --key "$T/v2x-second.key" "$(B "$VAL_AT")"
row "split S: a UE token" 401 invalid_token "$SDOC" "${VAL[@]}" "$(B "$AT")"
row "split S: merge-patch removing valGroupId" 400 - "$SDOC" "${VAL[@]}" "$(B "$VAL_AT")" -X PATCH -H 'Content-Type: application/merge-patch+json' -d '{"valGroupId":null}'
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' -d client_id=v2x-app --data-urlencode "token=$VAL_AT" "$SISS/oauth2/revoke")
expect_eq "split: revoke at the idm process" 200 "$code"
delay_row "split S: the gm process refuses the token revoked at the idm process" "$SDOC" "${VAL[@]}" "$(B "$VAL_AT")"
# a revocation stamped an hour back (a writer that waited, a clock set back) falls before every
# poll's overlap: the gm process (revocation_poll_ms 100) takes it with the whole list, which
# comes every 30th poll, 3 s here
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$(B "$AT")" "$UUDOC")
expect_eq "split UU: alice's token is accepted (and cached) before its backdated revocation" 200 "$code"
JTI=$(py 'import sys,json,base64;p=sys.argv[1].split(".")[1];print(json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4)))["jti"])' "$AT")
sqlite3 "$T/state/sealguard.db" "INSERT INTO revoked (kind, id, revoked_at, expires_at) VALUES (1, '$JTI', CAST(strftime('%s','now') AS INTEGER) * 1000 - 3600000, CAST(strftime('%s','now') AS INTEGER) * 1000 + 600000)"
t0=$(date +%s%3N)
for _ in $(seq 1 120); do
	code=$("${C[@]}" -o /dev/null -w '%{http_code}' "$(B "$AT")" "$UUDOC")
	[ "$code" = 401 ] && break
	sleep 0.1
done
t1=$(date +%s%3N)
if [ "$code" = 401 ] && [ $((t1 - t0)) -le 4500 ]; then ok "split UU: ... refused after $((t1 - t0)) ms (whole list every 30 polls: 3 s + one poll)"; else not_ok "split UU: backdated revocation: $code after $((t1 - t0)) ms"; fi
kill -TERM $IDM_PID $GM_PID; wait $IDM_PID $GM_PID 2>/dev/null
if grep -qF "$AT" "$T/idm.log" "$T/gm.log"; then not_ok "split: no token in the logs"; else ok "split: no token in the logs"; fi
sg_done
