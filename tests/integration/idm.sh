#!/usr/bin/env bash
# Identity management (SIM-S, TS 33.434 Annex A) end to end with curl: discovery, JWKS,
# authorization code + PKCE through the login page, token exchange, ID and access token claims,
# userinfo, refresh rotation, client credentials over mutual TLS, introspection, revocation,
# the revocation list, ss-ipp, key rotation; then the bad-input table of issue 3, one row per
# case, each with the exact error and a check that nothing changed.
. "$(dirname "$0")/lib/common.sh"

sg_ports
sg_write_config "$T/sg.yaml"
cat >>"$T/sg.yaml" <<YAML
idm:
  code_ttl_s: 5
  access_token_ttl_s: 60
  id_token_ttl_s: 120
  scrypt_ln: 10
YAML
PKI=$T/state/pki
SG() { "$SG_BIN" --config "$T/sg.yaml" "$@"; }
SG pki init --dir "$PKI" --val-server v2x-app --val-server other-app --seal-server gm-1 >/dev/null
sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }
CA=$PKI/ca.crt
ISS=https://localhost:$UU
SISS=https://localhost:$S
EISS=https://localhost:$E
VAL=(--cert "$PKI/val-servers/v2x-app.crt" --key "$PKI/val-servers/v2x-app.key")
OTHER=(--cert "$PKI/val-servers/other-app.crt" --key "$PKI/val-servers/other-app.key")
GM=(--cert "$PKI/seal-servers/gm-1.crt" --key "$PKI/seal-servers/gm-1.key")
SRV=(--cert "$PKI/server.crt" --key "$PKI/server.key") # this deployment's SEAL servers
C=(curl -s --cacert "$CA")
RURI=http://127.0.0.1:1/cb

# --- registry through the CLI, on the running server's state dir ---
printf 'alice-pass-1\n' >"$T/alice.pw"; printf 'bob-pass-2\n' >"$T/bob.pw"
printf 's3cret-client-secret-0123456789abcdefghij\n' >"$T/app.secret"; chmod 600 "$T/app.secret"
expect "user add alice" SG user add alice --password-file "$T/alice.pw" --val-user-id v2x=alice@v2x
expect "user add bob" SG user add bob --password-file "$T/bob.pw"
expect "client add app" SG client add app --redirect-uri "$RURI" --secret-file "$T/app.secret"
expect "valserver add v2x-app (key provisioning)" SG valserver add v2x-app --identity DNS:v2x-app --val-service v2x --val-service v2x-fleet --key-provisioning
sleep 1.2 # the server reloads its caches from the store generation (≤ 0.5 s)
BASIC=(-u "app:s3cret-client-secret-0123456789abcdefghij")

claims() { py 'import sys,json,base64
t=sys.argv[1].split(".")[int(sys.argv[2])]; t+="="*(-len(t)%4)
print(json.dumps(json.loads(base64.urlsafe_b64decode(t)),sort_keys=True))' "$1" "${2:-1}"; }
VERIFIER=$(py 'import secrets;print(secrets.token_urlsafe(48)[:64])')
CHALLENGE=$(py 'import sys,hashlib,base64;print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).rstrip(b"=").decode())' "$VERIFIER")
# authz_url [k=v overrides...]: the authorization request; "k=" drops k, "k=v" replaces it
authz_url() { py 'import sys,urllib.parse
p={"response_type":"code","client_id":"app","redirect_uri":sys.argv[1],"scope":"openid seal:gm seal:km","state":"st-123","acr_values":"3gpp:acr:password","code_challenge":sys.argv[2],"code_challenge_method":"S256","nonce":"n-456"}
extra=[]
for a in sys.argv[4:]:
    k,v=a.split("=",1)
    if k.startswith("+"): extra.append((k[1:],v))
    elif v=="": p.pop(k,None)
    else: p[k]=v
print(sys.argv[3]+"/oauth2/authorize?"+urllib.parse.urlencode(list(p.items())+extra))' "$RURI" "$CHALLENGE" "$ISS" "$@"; }
# login USER PASS [overrides]: prints the final Location (or the status line)
tx_of() { grep -o 'name="tx" value="[^"]*"' | sed 's/.*value="//;s/"$//'; }
login() {
	local u=$1 p=$2; shift 2
	local page tx
	page=$("${C[@]}" "$(authz_url "$@")")
	tx=$(printf '%s' "$page" | tx_of)
	"${C[@]}" -o "$T/login.body" -D - --data-urlencode "tx=$tx" --data-urlencode "username=$u" --data-urlencode "password=$p" "$ISS/oauth2/login" | tr -d '\r' >"$T/login.hdr"
	awk 'tolower($1)=="location:"{print $2}' "$T/login.hdr"
}
qparam() { py 'import sys,urllib.parse;print(urllib.parse.parse_qs(urllib.parse.urlparse(sys.argv[1]).query).get(sys.argv[2],[""])[0])' "$1" "$2"; }
exchange() { # CODE [VERIFIER] [REDIRECT] [extra curl args]
	local code=$1 ver=${2:-$VERIFIER} red=${3:-$RURI}; shift 3 2>/dev/null || shift $#
	"${C[@]}" "${BASIC[@]}" -d grant_type=authorization_code --data-urlencode "code=$code" --data-urlencode "redirect_uri=$red" --data-urlencode "code_verifier=$ver" "$@" "$ISS/oauth2/token"
}

# --- discovery and JWKS ---
d=$("${C[@]}" "$ISS/.well-known/openid-configuration")
expect_eq "discovery issuer" "$ISS" "$(jget "$d" issuer)"
expect_eq "discovery: S256 only" '["S256"]' "$(jget "$d" code_challenge_methods_supported)"
expect_eq "discovery: client auth methods" '["client_secret_basic", "tls_client_auth"]' "$(jget "$d" token_endpoint_auth_methods_supported)"
expect_eq "discovery: mtls alias is the SEAL-S token endpoint (RFC 8705 §5)" "$SISS/oauth2/token" "$(jget "$d" mtls_endpoint_aliases token_endpoint)"
expect_eq "discovery: acr" '["3gpp:acr:password"]' "$(jget "$d" acr_values_supported)"
expect_eq "discovery: ES256" '["ES256"]' "$(jget "$d" id_token_signing_alg_values_supported)"
jwks=$("${C[@]}" "$ISS/oauth2/jwks")
expect_eq "JWKS has one ES256 key" "1 EC P-256" "$(py 'import sys,json;k=json.loads(sys.argv[1])["keys"];print(len(k),k[0]["kty"],k[0]["crv"])' "$jwks")"

# --- the login page ---
hdr=$("${C[@]}" -D - -o "$T/page.html" "$(authz_url)" | tr -d '\r')
page=$(cat "$T/page.html")
expect_match "authorize answers 200 with the login page" '^HTTP/[0-9.]+ 200' "$hdr"
expect_match "login page: CSP default-src none, frame-ancestors none" "content-security-policy: default-src 'none'.*form-action 'self' http://127.0.0.1:1;.*frame-ancestors 'none'" "$(printf '%s' "$hdr" | tr 'A-Z' 'a-z')"
expect_match "login page: X-Frame-Options DENY" '[Xx]-[Ff]rame-[Oo]ptions: DENY' "$hdr"
expect_match "login page: no-store, no-referrer" '[Cc]ache-[Cc]ontrol: no-store' "$hdr"
expect_match "login page: form posts to /oauth2/login with a tx" '<form method="post" action="/oauth2/login"><input type="hidden" name="tx" value="[A-Za-z0-9_-]{43}">' "$page"
expect_match "login page: labelled inputs with autocomplete" '<label for="username">.*autocomplete="username".*<label for="password">.*autocomplete="current-password"' "$page"

# --- I2/I3/I5/I6: the code flow ---
loc=$(login alice alice-pass-1)
expect_match "login redirects to redirect_uri with code and state (I3)" "^$RURI\?code=[A-Za-z0-9_-]{43}&state=st-123&iss=" "$loc"
CODE=$(qparam "$loc" code)
tok=$(exchange "$CODE")
AT=$(jget "$tok" access_token); IDT=$(jget "$tok" id_token); RT=$(jget "$tok" refresh_token)
expect_eq "token response: Bearer, expires_in, scope (I6)" "Bearer 60 openid seal:gm seal:km" "$(jget "$tok" token_type) $(jget "$tok" expires_in) $(jget "$tok" scope)"
SUB=$(SG user list | awk '$1=="alice"{print $2}')
expect_match "G5: sub is opaque, 128 random bits, not the user name" '^[A-Za-z0-9_-]{22}$' "${SUB/alice/}"
idc=$(claims "$IDT")
expect_eq "ID token: iss sub aud nonce acr (I7)" "$ISS $SUB app n-456 3gpp:acr:password" "$(jget "$idc" iss) $(jget "$idc" sub) $(jget "$idc" aud) $(jget "$idc" nonce) $(jget "$idc" acr)"
expect_eq "ID token header: ES256, typ JWT, kid" "ES256 JWT True" "$(py 'import sys,json;h=json.loads(sys.argv[1]);print(h["alg"],h["typ"],bool(h.get("kid")))' "$(claims "$IDT" 0)")"
atc=$(claims "$AT")
expect_eq "access token header typ at+jwt" "at+jwt" "$(jget "$(claims "$AT" 0)" typ)"
expect_eq "access token: aud per scope (I8a)" '["sealguard:idm", "sealguard:gm", "sealguard:km"]' "$(jget "$atc" aud)"
expect_eq "access token: client_id scope sub" "app openid seal:gm seal:km $SUB" "$(jget "$atc" client_id) $(jget "$atc" scope) $(jget "$atc" sub)"
expect_eq "access token: val_user_ids (explicit + default)" '{"v2x": "alice@v2x", "v2x-fleet": "alice"}' "$(jget "$atc" val_user_ids)"
expect_eq "access token lives shorter than the ID token (I8)" "60 120" "$(( $(jget "$atc" exp) - $(jget "$atc" iat) )) $(( $(jget "$idc" exp) - $(jget "$idc" iat) ))"
expect_match "access token has jti and gid" '^[A-Za-z0-9_-]{20,} [A-Za-z0-9_-]{20,}$' "$(jget "$atc" jti) $(jget "$atc" gid)"
ui=$("${C[@]}" -H "Authorization: Bearer $AT" "$ISS/oauth2/userinfo")
expect_eq "userinfo: sub, preferred_username" "$SUB alice" "$(jget "$ui" sub) $(jget "$ui" preferred_username)"
# --- I9: refresh rotation ---
ref=$("${C[@]}" "${BASIC[@]}" -d grant_type=refresh_token --data-urlencode "refresh_token=$RT" -d scope=openid "$ISS/oauth2/token")
RT2=$(jget "$ref" refresh_token)
expect_eq "refresh with a narrower scope" "openid" "$(jget "$ref" scope)"
expect_match "refresh rotates the refresh token" '^[A-Za-z0-9_-]{43}$' "$RT2"
[ "$RT2" != "$RT" ] && ok "new refresh token differs" || not_ok "new refresh token differs"
ref=$("${C[@]}" "${BASIC[@]}" -d grant_type=refresh_token --data-urlencode "refresh_token=$RT2" -d resource=sealguard:gm "$ISS/oauth2/token")
expect_eq "RFC 8707 resource narrows aud and scope" '["sealguard:gm"] seal:gm' "$(jget "$(claims "$(jget "$ref" access_token)")" aud) $(jget "$ref" scope)"
RT3=$(jget "$ref" refresh_token)
# refresh token reuse: invalid_grant, and the family is revoked
out=$("${C[@]}" "${BASIC[@]}" -d grant_type=refresh_token --data-urlencode "refresh_token=$RT" "$ISS/oauth2/token")
expect_eq "refresh token reuse -> invalid_grant" invalid_grant "$(jget "$out" error)"
out=$("${C[@]}" "${BASIC[@]}" -d grant_type=refresh_token --data-urlencode "refresh_token=$RT3" "$ISS/oauth2/token")
expect_eq "... and the newest refresh token of the family is revoked" invalid_grant "$(jget "$out" error)"
sleep 0.1
out=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT" "$ISS/oauth2/userinfo")
expect_eq "... and its access tokens are refused at userinfo" 401 "$out"

# --- client credentials over SEAL-S (RFC 8705) ---
cc=$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d client_id=v2x-app "$SISS/oauth2/token")
CCAT=$(jget "$cc" access_token)
ccc=$(claims "$CCAT")
X5T=$(openssl x509 -in "$PKI/val-servers/v2x-app.crt" -outform DER | openssl dgst -sha256 -binary | py 'import sys,base64;print(base64.urlsafe_b64encode(sys.stdin.buffer.read()).rstrip(b"=").decode())')
expect_eq "client_credentials: default VAL scopes + seal:kp" "seal:gm seal:km seal:ipp sdd seal:kp" "$(jget "$cc" scope)"
expect_eq "client_credentials: cnf x5t#S256 binds the certificate" "$X5T" "$(py 'import sys,json;print(json.loads(sys.argv[1])["cnf"]["x5t#S256"])' "$ccc")"
expect_eq "client_credentials: SKeyProv lists its VAL services" '["v2x", "v2x-fleet"]' "$(jget "$ccc" SKeyProv)"
expect_eq "client_credentials: sub and client_id are the VAL server" "v2x-app v2x-app" "$(jget "$ccc" sub) $(jget "$ccc" client_id)"
cc2=$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d client_id=v2x-app -d scope=seal:gm "$SISS/oauth2/token")
expect_eq "client_credentials: scope seal:gm has no SKeyProv" "None" "$(jget "$(claims "$(jget "$cc2" access_token)")" SKeyProv)"
out=$("${C[@]}" "${OTHER[@]}" -w ' %{http_code}' -d grant_type=client_credentials -d client_id=v2x-app "$SISS/oauth2/token")
expect_match "client_credentials with another VAL server's certificate -> 401 invalid_client" '"error":"invalid_client".* 401$' "$out"

# --- introspection (SEAL-S / SEAL-E) and revocation ---
in=$("${C[@]}" "${SRV[@]}" --data-urlencode "token=$CCAT" "$EISS/oauth2/introspect")
expect_eq "introspect on SEAL-E: active + client_id" "True v2x-app" "$(jget "$in" active) $(jget "$in" client_id)"
# SEAL-E without allowed_identities admits the identities of the server's own certificate and
# sdd.peers only: not every certificate of the CA (VAL servers' come from it too)
in=$("${C[@]}" "${VAL[@]}" --data-urlencode "token=$CCAT" "$EISS/oauth2/introspect")
expect_eq "SEAL-E without allowed_identities: a VAL server's certificate is refused (403)" "403 UNAUTHORIZED_IDENTITY" "$(jget "$in" status) $(jget "$in" cause)"
in=$("${C[@]}" "${GM[@]}" --data-urlencode "token=$CCAT" "$EISS/oauth2/introspect")
expect_eq "... so is another SEAL server's until it is listed (gm-1)" "403 UNAUTHORIZED_IDENTITY" "$(jget "$in" status) $(jget "$in" cause)"
in=$("${C[@]}" "${VAL[@]}" --data-urlencode "token=not-a-token" "$SISS/oauth2/introspect")
expect_eq "introspect garbage: inactive" "False" "$(jget "$in" active)"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' --data-urlencode "token=$CCAT" "$ISS/oauth2/introspect")
expect_eq "no introspection on SEAL-UU" 404 "$code"
before=$(date +%s%3N)
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' -d client_id=v2x-app --data-urlencode "token=$CCAT" "$SISS/oauth2/revoke")
expect_eq "RFC 7009 revoke of an access token: 200" 200 "$code"
in=$("${C[@]}" "${SRV[@]}" --data-urlencode "token=$CCAT" "$EISS/oauth2/introspect")
expect_eq "revoked access token is inactive" "False" "$(jget "$in" active)"
rl=$("${C[@]}" "${SRV[@]}" "$EISS/oauth2/revocations?since=$before")
expect_eq "revocation list has the jti" "$(jget "$ccc" jti)" "$(py 'import sys,json;print(" ".join(x["id"] for x in json.loads(sys.argv[1])["jti"]))' "$rl")"
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' "$SISS/oauth2/revocations")
expect_eq "no revocation list on SEAL-S" 404 "$code"
code=$("${C[@]}" "${BASIC[@]}" -o /dev/null -w '%{http_code}' -d token=unknown-token "$ISS/oauth2/revoke")
expect_eq "revoke of an unknown token: 200" 200 "$code"

# --- ss-ipp (I11) ---
IPAT=$(jget "$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d client_id=v2x-app -d scope=seal:ipp "$SISS/oauth2/token")" access_token)
IPP="$SISS/ss-ipp/v1/configurations"
body='{"valSvcConf":[{"valServiceId":"v2x","idList":[{"valUserId":"alice@v2x"},{"valUeId":"ue-7"}]}]}'
validate() { openapi_validate TS29549_SS_IdmParameterProvisioning.yaml "$1" "$2"; }
expect "request body is a valid VALServicesConfig" validate VALServicesConfig "$body"
"${C[@]}" "${VAL[@]}" -D "$T/ipp.hdr" -o "$T/ipp.body" -H "Authorization: Bearer $IPAT" -H 'Content-Type: application/json' -d "$body" "$IPP"
expect_match "ss-ipp create: 201 + Location" "^HTTP/[0-9.]+ 201.*[Ll]ocation: $IPP/[A-Za-z0-9_-]+" "$(tr -d '\r' <"$T/ipp.hdr" | tr '\n' ' ')"
expect "ss-ipp create response is a valid VALServicesConfig" validate VALServicesConfig "$(cat "$T/ipp.body")"
LOCN=$(tr -d '\r' <"$T/ipp.hdr" | awk 'tolower($1)=="location:"{print $2}')
out=$("${C[@]}" "${VAL[@]}" -H "Authorization: Bearer $IPAT" "$LOCN")
expect_eq "ss-ipp get" "$(py 'import sys,json;print(json.dumps(json.loads(sys.argv[1]),sort_keys=True))' "$body")" "$(py 'import sys,json;print(json.dumps(json.loads(sys.argv[1]),sort_keys=True))' "$out")"
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' -X PATCH -H "Authorization: Bearer $IPAT" -H 'Content-Type: application/merge-patch+json' -d '{"valSvcConf":[{"valServiceId":"v2x-fleet","idList":[{"valUserId":"bob"}]}]}' "$LOCN")
expect_eq "ss-ipp patch: 200" 200 "$code"
out=$("${C[@]}" "${VAL[@]}" -H "Authorization: Bearer $IPAT" "$IPP")
expect_eq "ss-ipp list has the patched configuration" "v2x-fleet" "$(py 'import sys,json;print(json.loads(sys.argv[1])[0]["valSvcConf"][0]["valServiceId"])' "$out")"
out=$("${C[@]}" "${VAL[@]}" -w ' %{http_code}' -H "Authorization: Bearer $IPAT" -H 'Content-Type: application/json' -d '{"valSvcConf":[{"valServiceId":"other","idList":[{"valUserId":"x"}]}]}' "$IPP")
expect_match "ss-ipp: a VAL service it does not serve -> 403" ' 403$' "$out"
out=$("${C[@]}" "${VAL[@]}" -w ' %{http_code}' -H "Authorization: Bearer $IPAT" -H 'Content-Type: application/json' -d '{"valSvcConf":[{"valServiceId":"v2x","idList":[{"valUserId":"x","valUeId":"y"}]}]}' "$IPP")
expect_match "ss-ipp: idList entry with both ids -> 400 ProblemDetails" '"status":400.* 400$' "$out"
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(jget "$cc2" access_token)" "$IPP")
expect_eq "ss-ipp with a seal:gm token (aud sealguard:gm) -> 401 invalid_token" 401 "$code"
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $IPAT" "$LOCN")
expect_eq "ss-ipp delete: 204" 204 "$code"
code=$("${C[@]}" "${VAL[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $IPAT" "$LOCN")
expect_eq "ss-ipp get after delete: 404" 404 "$code"

# --- bad input: authorization request (I2, RFC 6749 §4.1.2.1) ---
authz_row() { # NAME WANT_ERROR overrides...
	local name=$1 want=$2; shift 2
	local h loc
	h=$("${C[@]}" -D - -o /dev/null "$(authz_url "$@")" | tr -d '\r')
	loc=$(printf '%s' "$h" | awk 'tolower($1)=="location:"{print $2}')
	if [ "$want" = page ]; then
		expect_match "$name -> 400 error page, no redirect" '^HTTP/[0-9.]+ 400' "$h"
		[ -z "$loc" ] || not_ok "$name: redirected to $loc"
	else
		expect_eq "$name -> $want" "$want" "$(qparam "$loc" error) $(qparam "$loc" state)"
	fi
}
authz_row "unknown client" page client_id=nobody
authz_row "missing client_id" page client_id=
authz_row "missing redirect_uri" page redirect_uri=
authz_row "unregistered redirect_uri" page redirect_uri=http://127.0.0.1:1/cb/x
authz_row "missing response_type" "invalid_request st-123" response_type=
authz_row "response_type=token" "unsupported_response_type st-123" response_type=token
authz_row "missing scope" "invalid_request st-123" scope=
authz_row "scope without openid" "invalid_scope st-123" scope=seal:gm
authz_row "unknown scope" "invalid_scope st-123" "scope=openid admin"
authz_row "scope seal:kp for a UE client" "invalid_scope st-123" "scope=openid seal:kp"
authz_row "missing state" "invalid_request " state=
authz_row "missing acr_values" "invalid_request st-123" acr_values=
authz_row "acr_values without 3gpp:acr:password" "invalid_request st-123" acr_values=urn:other
authz_row "missing code_challenge" "invalid_request st-123" code_challenge=
authz_row "missing code_challenge_method" "invalid_request st-123" code_challenge_method=
authz_row "plain PKCE" "invalid_request st-123" code_challenge_method=plain
authz_row "repeated parameter" "invalid_request st-123" "+scope=openid"

# --- bad input: token endpoint (I5) ---
fresh_code() { qparam "$(login alice alice-pass-1 "$@")" code; }
CODE=$(fresh_code)
out=$(exchange "$CODE" "$(py 'print("x"*50)')")
expect_eq "wrong code_verifier -> invalid_grant" invalid_grant "$(jget "$out" error)"
out=$(exchange "$CODE" "$VERIFIER" "http://127.0.0.1:1/other")
expect_eq "redirect_uri mismatch at the token step -> invalid_grant" invalid_grant "$(jget "$out" error)"
out=$("${C[@]}" -u app:wrong -w ' %{http_code}' -d grant_type=authorization_code --data-urlencode "code=$CODE" --data-urlencode "redirect_uri=$RURI" --data-urlencode "code_verifier=$VERIFIER" -D "$T/h" "$ISS/oauth2/token")
expect_match "wrong client secret -> 401 invalid_client" '"error":"invalid_client".* 401$' "$out"
expect_match "... with WWW-Authenticate: Basic" '[Ww][Ww][Ww]-[Aa]uthenticate: Basic' "$(cat "$T/h")"
out=$("${C[@]}" -u nobody:x -w ' %{http_code}' -d grant_type=authorization_code --data-urlencode "code=$CODE" "$ISS/oauth2/token")
expect_match "unknown client -> 401 invalid_client" '"error":"invalid_client".* 401$' "$out"
out=$("${C[@]}" -w ' %{http_code}' -d grant_type=authorization_code -d client_id=app -d client_secret=s3cret-client-secret-0123456789abcdefghij --data-urlencode "code=$CODE" "$ISS/oauth2/token")
expect_match "client_secret_post -> 401 invalid_client" '"error":"invalid_client".* 401$' "$out"
out=$(exchange "$CODE")
expect_eq "... nothing changed: the code still works once" "Bearer" "$(jget "$out" token_type)"
RTX=$(jget "$out" refresh_token)
out=$(exchange "$CODE")
expect_eq "code reuse -> invalid_grant" invalid_grant "$(jget "$out" error)"
out=$("${C[@]}" "${BASIC[@]}" -d grant_type=refresh_token --data-urlencode "refresh_token=$RTX" "$ISS/oauth2/token")
expect_eq "... and the refresh token of the first exchange is revoked" invalid_grant "$(jget "$out" error)"
CODE=$(fresh_code)
sleep 5.2
out=$(exchange "$CODE")
expect_eq "expired code (code_ttl_s 5) -> invalid_grant" invalid_grant "$(jget "$out" error)"
out=$("${C[@]}" "${BASIC[@]}" -d grant_type=password -d username=alice "$ISS/oauth2/token")
expect_eq "unsupported grant type" unsupported_grant_type "$(jget "$out" error)"
out=$("${C[@]}" "${BASIC[@]}" -w ' %{http_code}' -d grant_type=client_credentials -d client_id=v2x-app "$ISS/oauth2/token")
expect_match "client_credentials on SEAL-UU -> unauthorized_client" '"error":"unauthorized_client".* 400$' "$out"
expect_match "token errors are no-store" '[Cc]ache-[Cc]ontrol: no-store' "$("${C[@]}" -D - -o /dev/null -d grant_type=x "$ISS/oauth2/token")"
# scope widening on refresh
CODE=$(fresh_code "scope=openid seal:gm")
RTW=$(jget "$(exchange "$CODE")" refresh_token)
out=$("${C[@]}" "${BASIC[@]}" -d grant_type=refresh_token --data-urlencode "refresh_token=$RTW" -d "scope=openid seal:gm seal:km" "$ISS/oauth2/token")
expect_eq "scope widening on refresh -> invalid_scope" invalid_scope "$(jget "$out" error)"
out=$("${C[@]}" "${BASIC[@]}" -d grant_type=refresh_token --data-urlencode "refresh_token=$RTW" "$ISS/oauth2/token")
expect_eq "... nothing changed: the refresh token still works" "openid seal:gm" "$(jget "$out" scope)"
RTW=$(jget "$out" refresh_token)
# disabled user: login refused generically, refresh refused
expect "user disable bob" SG user disable bob
sleep 1.2
loc=$(login bob bob-pass-2)
expect_eq "disabled user cannot log in (no redirect)" "" "$loc"
expect_match "... generic message" 'Wrong user name or password' "$(cat "$T/login.body")"
expect "user disable alice" SG user disable alice
out=$("${C[@]}" "${BASIC[@]}" -d grant_type=refresh_token --data-urlencode "refresh_token=$RTW" "$ISS/oauth2/token")
expect_eq "refresh of a disabled account -> invalid_grant (I9)" invalid_grant "$(jget "$out" error)"
expect "user enable alice" SG user enable alice
sleep 1.2

# --- forged tokens at userinfo ---
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
AT=$(jget "$(exchange "$(fresh_code)")" access_token)
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT" "$ISS/oauth2/userinfo")
expect_eq "userinfo with a genuine token: 200" 200 "$code"
for kind in none hs256 kid flip; do
	h=$("${C[@]}" -D - -o /dev/null -H "Authorization: Bearer $(forge "$AT" $kind "$jwks")" "$ISS/oauth2/userinfo" | tr -d '\r')
	expect_match "userinfo refuses a token forged with $kind" '^HTTP/[0-9.]+ 401.*[Ww][Ww][Ww]-[Aa]uthenticate: Bearer realm="sealguard", error="invalid_token"' "$(printf '%s' "$h" | tr '\n' ' ')"
done
h=$("${C[@]}" -D - -o /dev/null "$ISS/oauth2/userinfo" | tr -d '\r')
expect_match "userinfo without a token: 401 Bearer without error" 'Bearer realm="sealguard"$' "$(printf '%s' "$h" | grep -i www-authenticate)"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $IDT" "$ISS/oauth2/userinfo")
expect_eq "an ID token is not an access token (typ)" 401 "$code"

# --- key rotation: the old key stays in the JWKS, new tokens carry the new kid ---
OLDKID=$(jget "$(claims "$AT" 0)" kid)
expect "keys rotate" SG keys rotate
sleep 1.2
jwks2=$("${C[@]}" "$ISS/oauth2/jwks")
expect_eq "after rotation the JWKS has both keys" 2 "$(py 'import sys,json;print(len(json.loads(sys.argv[1])["keys"]))' "$jwks2")"
AT2=$(jget "$(exchange "$(fresh_code)")" access_token)
NEWKID=$(jget "$(claims "$AT2" 0)" kid)
[ -n "$NEWKID" ] && [ "$NEWKID" != "$OLDKID" ] && ok "new tokens are signed by the new key" || not_ok "new tokens are signed by the new key ($OLDKID -> $NEWKID)"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT" "$ISS/oauth2/userinfo")
expect_eq "a token of the previous key still verifies" 200 "$code"
expect_match "keys list shows signing and published" "signing.*published until" "$(SG keys list | tr '\n' ' ')"

# --- G4: wrong password, throttle per account and per address ---
for i in 1 2 3; do loc=$(login alice wrong-$i); done
expect_match "wrong password: generic message, fresh tx" 'Wrong user name or password.*name="tx"' "$(cat "$T/login.body")"
loc=$(login alice alice-pass-1)
expect_match "4th attempt on the account: 429 with Retry-After" '^HTTP/[0-9.]+ 429.*[Rr]etry-[Aa]fter: [0-9]+' "$(tr '\n' ' ' <"$T/login.hdr")"
expect_eq "... even with the right password" "" "$loc"
sleep 1.1
loc=$(login alice alice-pass-1)
expect_match "after the backoff the right password works" '^http://127.0.0.1:1/cb\?code=' "$loc"
# failures for accounts never tried before, until one of them is refused: that refusal is the
# address's (an account's own throttle needs failures of its own). The address has 20 free
# failures and alice left 2 of hers (3 failures, then a success that takes back one), so the
# 19th fresh name is the first refused, or a later one when a loaded machine sent it after the
# backoff of the one before had passed (judged so, not by a login of another account after).
first429=""
for i in $(seq 1 30); do
	login "ghost$i" x >/dev/null
	head -1 "$T/login.hdr" | grep -Eq '^HTTP/[0-9.]+ 429' && { first429=$i; break; }
done
expect_match "20 failures from one address throttle every account from it (the first refused, a fresh name: attempt $first429)" '^(19|2[0-9]|30)$' "$first429"
n=$(SG user list >/dev/null; sqlite3 "$T/state/sealguard.db" "SELECT count(*) FROM audit WHERE action LIKE 'login%' OR action LIKE 'token.%' OR action LIKE 'revoke.%' OR action LIKE 'key.%'" 2>/dev/null || echo 0)
[ "${n:-0}" -gt 10 ] && ok "logins, tokens, revocations and keys are audited ($n rows)" || not_ok "audit rows: $n"
if grep -qF "$VERIFIER" "$T/server.log" || grep -qF "alice-pass-1" "$T/server.log" || grep -qF "$RT2" "$T/server.log"; then not_ok "no secret in the log"; else ok "no secret in the log"; fi

# G4: one client address holds at most 256 pending logins (authorization requests whose login
# page was not answered yet), so it cannot fill the table of all of them and stop every login
U=$(authz_url)
first=0
for i in $(seq 1 300); do
	c=$("${C[@]}" -o /dev/null -w '%{http_code}' "$U")
	[ "$c" = 503 ] && { first=$i; break; }
done
expect_match "pending logins of one address stop at 256: a later authorization request is 503 (the ${first}th here)" '^([1-9][0-9]?|1[0-9][0-9]|2[0-5][0-9])$' "$first"
expect_eq "... while another address gets its login page" 200 "$("${C[@]}" --interface 127.0.0.2 -o /dev/null -w '%{http_code}' "$U")"

expect "graceful stop" sg_stop
sg_done
