#!/usr/bin/env bash
# SIM-C end to end: `sealguard login` against a running `sealguard serve` (TS 33.434 Annex A):
# users and clients registered with the CLI next to the running server, a successful login
# (PKCE, state, nonce, ID token validation) with tokens cached in a 0600 file, refused logins
# (wrong password, wrong client secret, disabled user, unregistered redirect URI, unknown
# client, another CA), `token show`, `token refresh` (rotation; the old refresh token is then
# refused; no scope widening). The I4 state check is proven by tests/unit/test_simc.c.
. "$(dirname "$0")/lib/common.sh"

sg_ports
sg_write_config "$T/sg.yaml"
sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }
CA=$T/state/pki/ca.crt
ISSUER=https://localhost:$UU
SG=("$SG_BIN" --config "$T/sg.yaml")
CACHE=$T/cache/tokens.json
RURI=http://127.0.0.1/callback

# --- registry, next to the running server ---
printf 'correct horse battery\n' >"$T/alice.pw"
printf 'wrong horse\n' >"$T/wrong.pw"
expect "user add alice" "${SG[@]}" user add alice --password-file "$T/alice.pw" --val-user-id v2x=alice@v2x.example
expect "client add ue-app (secret generated)" "${SG[@]}" client add ue-app --redirect-uri "$RURI" --secret-file "$T/ue.secret"
expect_eq "the generated client secret file is 0600" 600 "$(stat -c %a "$T/ue.secret")"
sleep 1.2 # the running server reloads its registry cache when the generation changes
out=$(curl -s --cacert "$CA" "$ISSUER/.well-known/openid-configuration")
expect_match "discovery names the issuer" "\"issuer\": *\"$ISSUER\"" "$out"
USERINFO=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("userinfo_endpoint",""))' 2>/dev/null)

login() { # login [EXTRA ARGS...]
	"${SG[@]}" login --issuer "$ISSUER" --client-id ue-app --client-secret-file "$T/ue.secret" \
		--username alice --password-file "$T/alice.pw" --cacert "$CA" --token-cache "$CACHE" "$@"
}

# --- success ---
out=$( (umask 000; login) 2>&1)
rc=$?
expect_eq "login succeeds" 0 "$rc"
expect_match "login prints a summary" 'logged in as alice \(sub [A-Za-z0-9_-]{22}\)' "$out"
expect_match "the ID token was validated" 'ID token \(validated\) expires' "$out"
expect_eq "token cache is 0600 (even with umask 000)" 600 "$(stat -c %a "$CACHE" 2>/dev/null)"
AT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_token"])' "$CACHE" 2>/dev/null)
RT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["refresh_token"])' "$CACHE" 2>/dev/null)
expect_match "the cache holds an access token and a refresh token" '^ey.+ .+$' "$AT $RT"
if [ -z "$AT" ] || printf '%s' "$out" | grep -qF -- "$AT"; then not_ok "login never prints the access token"; else ok "login never prints the access token"; fi
sub=$(printf '%s' "$out" | sed -n 's/.*(sub \([A-Za-z0-9_-]*\)).*/\1/p')
expect_match "the sub is the one the registry assigned" "^alice +${sub:-NONE} " "$("${SG[@]}" user list)"

# --- token show ---
out=$("$SG_BIN" token show --token-cache "$CACHE" 2>&1)
expect_eq "token show exits 0" 0 "$?"
flat=$(printf '%s' "$out" | tr '\n' ' ')
expect_match "token show: ID token iss" "ID token claims: \{.*\"iss\": \"$ISSUER\"" "$flat"
expect_match "token show: ID token aud is the client" "ID token claims: \{.*\"aud\": (\"ue-app\"|\[[^]]*\"ue-app\")" "$flat"
expect_match "token show: ID token has the nonce" "ID token claims: \{.*\"nonce\": \"" "$flat"
expect_match "token show: access token scope" "access token claims: \{.*\"scope\": \"openid seal:gm seal:km sdd\"" "$flat"
expect_match "token show: access token client_id" "access token claims: \{.*\"client_id\": \"ue-app\"" "$flat"
expect_match "token show: expiry" 'access token expires .* \(in [0-9]+ s\)' "$flat"
if [ -z "$AT" ] || printf '%s' "$out" | grep -qF -- "$AT"; then not_ok "token show hides the raw tokens"; else ok "token show hides the raw tokens"; fi
out=$("$SG_BIN" token show --raw --token-cache "$CACHE" 2>&1)
if [ -n "$AT" ] && printf '%s' "$out" | grep -qF -- "$AT"; then ok "token show --raw prints them"; else not_ok "token show --raw prints them"; fi
out=$(curl -s --cacert "$CA" -H "Authorization: Bearer $AT" "$USERINFO")
expect_match "userinfo answers for the access token" "\"sub\": *\"${sub:-NONE}\"" "$out"

# --- refresh (I9) ---
cp "$CACHE" "$T/cache.before-refresh"
out=$("$SG_BIN" token refresh --token-cache "$CACHE" 2>&1)
expect_eq "token refresh exits 0" 0 "$?"
expect_match "token refresh rotates the refresh token" 'refresh token: rotated' "$out"
RT2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["refresh_token"])' "$CACHE")
AT2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["access_token"])' "$CACHE")
[ "$RT2" != "$RT" ] && [ -n "$RT2" ] && ok "the new refresh token is in the cache" || not_ok "the new refresh token is in the cache"
[ "$AT2" != "$AT" ] && ok "a new access token is in the cache" || not_ok "a new access token is in the cache"
expect_eq "token cache stays 0600 after refresh" 600 "$(stat -c %a "$CACHE")"
out=$("$SG_BIN" token refresh --token-cache "$T/cache.before-refresh" 2>&1)
expect_match "the rotated-out refresh token is refused (reuse)" 'invalid_grant' "$out"
out=$("$SG_BIN" token refresh --token-cache "$CACHE" 2>&1)
expect_match "reuse revoked the whole family: the newest refresh token is refused too" 'invalid_grant' "$out"

# scope: narrower on refresh is fine, wider is refused
expect "login again with scope openid seal:gm" login --scope "openid seal:gm"
out=$("$SG_BIN" token refresh --scope "openid seal:gm sdd" --token-cache "$CACHE" 2>&1)
expect_match "refresh cannot widen the scope" 'invalid_scope' "$out"
out=$("$SG_BIN" token refresh --scope "openid" --token-cache "$CACHE" 2>&1)
expect_match "refresh may narrow the scope" 'refreshed: scope openid$|refreshed: scope openid ' "$out"

# --- refusals; each leaves the cache as it was ---
sum=$(sha256sum "$CACHE")
out=$(login --password-file "$T/wrong.pw" 2>&1)
expect_eq "wrong password: exit 1" 1 "$?"
expect_match "wrong password: generic message" 'login refused: wrong user name or password' "$out"
head -c 43 /dev/urandom | base64 | tr -d '\n=/+' >"$T/bad.secret"
out=$(login --client-secret-file "$T/bad.secret" 2>&1)
expect_match "wrong client secret: invalid_client" 'invalid_client' "$out"
out=$("${SG[@]}" login --issuer "$ISSUER" --client-id nobody --client-secret-file "$T/ue.secret" --username alice --password-file "$T/alice.pw" --cacert "$CA" --token-cache "$CACHE" 2>&1)
expect_match "unknown client: refused" 'login failed' "$out"
out=$(login --redirect-uri http://127.0.0.1/other 2>&1)
expect_match "unregistered redirect URI: refused" 'login failed' "$out"
expect "user disable alice (server running)" "${SG[@]}" user disable alice
sleep 1.2 # the server reloads the registry when its generation changes
out=$(login 2>&1)
expect_match "disabled user: refused" 'login failed' "$out"
expect "user enable alice" "${SG[@]}" user enable alice
"$SG_BIN" pki init --dir "$T/other" >/dev/null
out=$(login --cacert "$T/other/ca.crt" 2>&1)
expect_match "a SIM-S certificate from another CA is refused (I12)" 'login failed' "$out"
out=$("${SG[@]}" login --issuer "http://localhost:$UU" --client-id ue-app --client-secret-file "$T/ue.secret" --username alice --password-file "$T/alice.pw" --token-cache "$CACHE" 2>&1)
expect_match "an http issuer is refused" 'https' "$out"
expect_eq "refused logins left the cache alone" "$sum" "$(sha256sum "$CACHE")"

# --- password from stdin; user enabled again works ---
sleep 1.2
out=$("${SG[@]}" login --issuer "$ISSUER" --client-id ue-app --client-secret-file "$T/ue.secret" --username alice --password-file - --cacert "$CA" --token-cache "$CACHE" <"$T/alice.pw" 2>&1)
expect_match "password from stdin, after enable" 'logged in as alice' "$out"
out=$(login </dev/null --password-file /nonexistent 2>&1)
expect_match "missing password file" 'password file /nonexistent' "$out"
alive=$(curl -s --cacert "$CA" "https://localhost:$UU/healthz")
expect_eq "server still serves" '{"status":"pass"}' "$alive"
sg_done
