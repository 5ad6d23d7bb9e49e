#!/usr/bin/env bash
# K5, group keys (TS 33.434 §5.3; TS 23.434 §10.3, SEAL-X1) end to end through `sealguard serve`:
# the KM server learns VAL group membership from the group management server over SEAL-E
# (mutual TLS, its own certificate; gm's read-only SEAL-X1 route); a member gets the current
# group key over KM-UU encrypted to its SKM-C key (decrypted here by an independent JWE
# implementation, python `cryptography`); a non-member is refused; adding and removing members
# rotates the key (new version, new bytes); `sealguard key group-get` (client/skmc.h) does the
# member's request from the command line; the GM server reads the current key over SEAL-X1;
# other certificates are refused on SEAL-E; the reserved VAL service id is refused on KM-S;
# the database and the log hold no group key bytes.
. "$(dirname "$0")/lib/common.sh"

sg_ports
sg_write_config "$T/sg.yaml"
# SEAL-E (the last listener) admits only the SEAL servers' certificate (R4)
cat >>"$T/sg.yaml" <<YAML
    allowed_identities: ["DNS:localhost"]
idm:
  scrypt_ln: 10
km:
  max_keys_per_service: 2
  max_keys_per_target: 1
YAML
PKI=$T/state/pki
DB=$T/state/sealguard.db
SG() { "$SG_BIN" --config "$T/sg.yaml" "$@"; }
SG pki init --dir "$PKI" --val-server v2x-app >/dev/null
sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }
CA=$PKI/ca.crt
ISS=https://localhost:$UU
SISS=https://localhost:$S
EISS=https://localhost:$E
VAL=(--cert "$PKI/val-servers/v2x-app.crt" --key "$PKI/val-servers/v2x-app.key")
SRV=(--cert "$PKI/server.crt" --key "$PKI/server.key")
C=(curl -s --cacert "$CA")
GMS=$SISS/ss-gm/v1/group-documents
GREQ=$ISS/km/v1/group-key-requests
X1=$EISS/km/v1/group-keys

req() {
	: >"$T/b" # curl leaves the file alone when there is no body
	"${C[@]}" -D "$T/h" -o "$T/b" "$@"
	CODE=$(awk 'NR==1{print $2}' "$T/h")
	BODY=$(cat "$T/b")
}
sql() { py 'import sqlite3,sys;c=sqlite3.connect("file:"+sys.argv[1]+"?mode=ro",uri=True);print(c.execute(sys.argv[2]).fetchone()[0])' "$DB" "$1"; }
# open JWE PRIVJWKFILE: decrypts a compact JWE (ECDH-ES + A256GCM, RFC 7518 §4.6) and prints
# the plaintext's "version key valGroupId"
open_jwe() { py 'import sys,json,base64,hashlib
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
d=lambda s: base64.urlsafe_b64decode(s+"="*(-len(s)%4))
jwk=json.load(open(sys.argv[2]))
priv=ec.derive_private_key(int.from_bytes(d(jwk["d"]),"big"),ec.SECP256R1())
h,ek,iv,ct,tag=sys.argv[1].split(".")
hd=json.loads(d(h)); assert hd["alg"]=="ECDH-ES" and hd["enc"]=="A256GCM" and ek==""
p=hd["epk"]
pub=ec.EllipticCurvePublicNumbers(int.from_bytes(d(p["x"]),"big"),int.from_bytes(d(p["y"]),"big"),ec.SECP256R1()).public_key()
z=priv.exchange(ec.ECDH(),pub)
L=lambda b: len(b).to_bytes(4,"big")+b
k=hashlib.sha256((1).to_bytes(4,"big")+z+L(b"A256GCM")+L(d(hd.get("apu","")))+L(d(hd.get("apv","")))+(256).to_bytes(4,"big")).digest()
r=json.loads(AESGCM(k).decrypt(d(iv),d(ct)+d(tag),h.encode()))
print(r["version"],r["key"],r["valGroupId"])' "$@"; }
KEYS=() # every group key seen (base64url), for the at-rest scan

# --- registry, logins, SKM-C keys -----------------------------------------------------------
printf 'alice-pass-1\n' >"$T/alice.pw"
printf 'bob-pass-2\n' >"$T/bob.pw"
expect "user add alice (v2x=alice@v2x)" SG user add alice --password-file "$T/alice.pw" --val-user-id v2x=alice@v2x
expect "user add bob (v2x=bob@v2x)" SG user add bob --password-file "$T/bob.pw" --val-user-id v2x=bob@v2x
expect "client add ue-app" SG client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$T/ue.secret"
expect "valserver add v2x-app (v2x, key provisioning)" SG valserver add v2x-app --identity DNS:v2x-app --val-service v2x --key-provisioning
sleep 1.2
login() { SG login --issuer "$ISS" --client-id ue-app --client-secret-file "$T/ue.secret" --username "$1" --password-file "$T/$1.pw" --cacert "$CA" --token-cache "$T/$1.tokens" --scope "openid seal:km" >/dev/null; }
expect "alice logs in with seal:km" login alice
expect "bob logs in with seal:km" login bob
at() { py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/$1.tokens"; }
AT=$(at alice); BT=$(at bob)
expect "alice registers her SKM-C key" SG key register --token-cache "$T/alice.tokens"
expect "bob registers his SKM-C key" SG key register --token-cache "$T/bob.tokens"
GT=$(jget "$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d client_id=v2x-app -d resource=sealguard:gm "$SISS/oauth2/token")" access_token)
expect_match "v2x-app token for sealguard:gm" '^ey' "$GT"
JS=(-H 'Content-Type: application/json')
MP=(-H 'Content-Type: application/merge-patch+json')
AV=(-H "Authorization: Bearer $GT")

# gkey TOKEN USER: the group key request of a UE; prints "CODE version key valGroupId" (200) or
# "CODE cause"
gkey() {
	req -H "Authorization: Bearer $1" "${JS[@]}" -d "{\"valGroupId\":\"${3:-fleet-7}\"}" "$GREQ"
	if [ "$CODE" = 200 ]; then
		echo "$CODE $(open_jwe "$(jget "$BODY" keyRecords 0 keyInfo)" "$T/$2.tokens.skmc.jwk")"
	else
		echo "$CODE $(jget "$BODY" cause)"
	fi
}
# waitfor VERSION TOKEN USER: polls until the UE gets that version (the KM server reads the GM
# server every 500 ms); prints the last answer
waitfor() {
	local out i
	for i in $(seq 1 30); do
		out=$(gkey "$2" "$3")
		[ "$(echo "$out" | awk '{print $2}')" = "$1" ] && break
		sleep 0.2
	done
	echo "$out"
}

# --- the VAL server creates a group with alice -----------------------------------------------
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":"fleet-7","grpDesc":"seventh","members":[{"valUserId":"alice@v2x"}],"valGrpConf":"c-7","valServiceIds":["v2x"]}' "$GMS"
expect_eq "v2x-app creates VAL group fleet-7 with alice: 201" 201 "$CODE"
DOC=$(jget "$BODY" resUri 2>/dev/null)
LOC=$(awk 'tolower($1)=="location:"{print $2}' "$T/h" | tr -d '\r')
out=$(waitfor 1 "$AT" alice)
expect_match "alice gets group key version 1, decrypted with her SKM-C key" '^200 1 [A-Za-z0-9_-]{43} fleet-7$' "$out"
KA1=$(echo "$out" | awk '{print $3}'); KEYS+=("$KA1")
BODY=$(cat "$T/b") # the last answer (gkey ran in a subshell)
expect_match "... a compact JWE" '^ey[^.]*\.\.[^.]+\.[^.]+\.[^.]+$' "$(jget "$BODY" keyRecords 0 keyInfo)"
expect_match "... the envelope names the key and version, the key only in the JWE" '^grp-[0-9a-f]{32} 1 fleet-7$' "$(jget "$BODY" keyRecords 0 payloadId) $(jget "$BODY" keyRecords 0 version) $(jget "$BODY" valGroupId)"
if printf '%s' "$BODY" | grep -qF "$KA1"; then not_ok "the KM-UU response holds no plaintext key"; else ok "the KM-UU response holds no plaintext key"; fi
expect_eq "bob's SKM-C key does not open alice's JWE" 1 "$(open_jwe "$(jget "$BODY" keyRecords 0 keyInfo)" "$T/bob.tokens.skmc.jwk" >/dev/null 2>&1; echo $?)"
expect_eq "alice again: the same version and key (no rotation without a change)" "200 1 $KA1 fleet-7" "$(gkey "$AT" alice)"
expect_eq "bob, not a member: 403 TARGET_NOT_ALLOWED" "403 TARGET_NOT_ALLOWED" "$(gkey "$BT" bob)"
refuse "sealguard key group-get: bob, not a member, is refused (non-zero exit)" SG key group-get --group fleet-7 --token-cache "$T/bob.tokens"
expect_eq "alice asking for an unknown group: answered alike" "403 TARGET_NOT_ALLOWED" "$(gkey "$AT" alice no-such-group)"
req "${JS[@]}" -d '{"valGroupId":"fleet-7"}' "$GREQ"
expect_eq "no token: 401" 401 "$CODE"
req -H "Authorization: Bearer $AT" "${JS[@]}" -d '{"valGroupId":""}' "$GREQ"
expect_eq "empty valGroupId: 400 INVALID_MSG_FORMAT" "400 INVALID_MSG_FORMAT" "$CODE $(jget "$BODY" cause)"
req -H "Authorization: Bearer $AT" "${JS[@]}" -d '{"valGroupId":"fleet-7","valServiceId":"v2x"}' "$GREQ"
expect_eq "an unknown member: 400 INVALID_MSG_FORMAT" "400 INVALID_MSG_FORMAT" "$CODE $(jget "$BODY" cause)"
VT=$(jget "$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d client_id=v2x-app -d scope=seal:km -d resource=sealguard:km "$SISS/oauth2/token")" access_token)
req "${VAL[@]}" -H "Authorization: Bearer $VT" "$SISS/ss-kir/v1/key-records?val-service-id=sealguard:val-group"
expect_eq "ss-kir for the reserved group namespace: 403 VAL_SERVICE_NOT_ALLOWED" "403 VAL_SERVICE_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"
req -H "Authorization: Bearer $AT" "${JS[@]}" -d '{"valServiceId":"sealguard:val-group"}' "$ISS/km/v1/key-requests"
expect_eq "a KM-UU request for the reserved namespace: 403" "403 VAL_SERVICE_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"

# --- SEAL-X1: the GM server's reads -----------------------------------------------------------
req "${SRV[@]}" "$EISS/ss-gm/v1/group-documents?val-group-id=fleet-7"
expect_eq "SEAL-E read of the group documents with the SEAL server certificate: 200, fleet-7" "200 fleet-7" "$CODE $(jget "$BODY" 0 valGroupId)"
MV=$EISS/ss-gm/v1/group-documents?group-members=true
req "${SRV[@]}" "$MV"
expect_eq "SEAL-E membership view (what the KM server reads): valGroupId, valServiceIds, members by id" '[{"members": [{"valUserId": "alice@v2x"}], "valGroupId": "fleet-7", "valServiceIds": ["v2x"]}]' "$(py 'import sys,json;print(json.dumps(json.loads(sys.argv[1]),sort_keys=True))' "$BODY")"
ET=$(awk 'tolower($1)=="etag:"{print $2}' "$T/h" | tr -d '\r')
expect_match "... with an ETag" '^"[A-Za-z0-9_-]+-[0-9]+-m[0-9a-f]{16}"$' "$ET"
req "${SRV[@]}" -H "If-None-Match: $ET" "$EISS/ss-gm/v1/group-documents"
expect_eq "... that the whole documents (another representation) do not match: 200" 200 "$CODE"
req "${SRV[@]}" -H "If-None-Match: $ET" "$MV"
expect_eq "... polled with that ETag in If-None-Match: 304 without a body" "304 " "$CODE $BODY"
expect_eq "... and without Content-Length (RFC 9110)" 0 "$(grep -ci '^content-length' "$T/h")"
req "${VAL[@]}" "$EISS/ss-gm/v1/group-documents"
expect_eq "... with a VAL server's certificate: 403 UNAUTHORIZED_IDENTITY" "403 UNAUTHORIZED_IDENTITY" "$CODE $(jget "$BODY" cause)"
req "${SRV[@]}" "${JS[@]}" -d '{"valGroupId":"x","valServiceIds":["v2x"]}' "$EISS/ss-gm/v1/group-documents"
expect_match "... read-only: POST on SEAL-E refused" '^40[45]$' "$CODE"
req "${SRV[@]}" "$X1/fleet-7"
expect_eq "SEAL-X1: the GM server reads group key version 1 (the same key)" "200 1 $KA1" "$CODE $(jget "$BODY" version) $(jget "$BODY" key)"
expect_eq "... Cache-Control: no-store" 1 "$(grep -ci '^cache-control: no-store' "$T/h")"
req "${VAL[@]}" "$X1/fleet-7"
expect_eq "SEAL-X1 with a VAL server's certificate: 403" 403 "$CODE"
if "${C[@]}" -o /dev/null "$X1/fleet-7" 2>/dev/null; then not_ok "SEAL-X1 without a client certificate refused"; else ok "SEAL-X1 without a client certificate refused"; fi
req "${SRV[@]}" "$X1/no-such-group"
expect_eq "SEAL-X1 for an unknown group: 403 TARGET_NOT_ALLOWED" "403 TARGET_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"

# --- adding bob rotates the key ---------------------------------------------------------------
req "${VAL[@]}" "${AV[@]}" "${MP[@]}" -X PATCH -d '{"members":[{"valUserId":"alice@v2x"},{"valUserId":"bob@v2x"}]}' "$LOC"
expect_eq "v2x-app adds bob: 200" 200 "$CODE"
req "${SRV[@]}" -H "If-None-Match: $ET" "$MV"
expect_eq "the membership view after the change: 200 with a new ETag, bob in it" "200 new 2" "$CODE $([ "$(awk 'tolower($1)=="etag:"{print $2}' "$T/h" | tr -d '\r')" != "$ET" ] && echo new) $(py 'import sys,json;print(len(json.loads(sys.argv[1])[0]["members"]))' "$BODY")"
out=$(waitfor 2 "$BT" bob)
expect_match "bob, now a member, gets version 2" '^200 2 [A-Za-z0-9_-]{43} fleet-7$' "$out"
KB2=$(echo "$out" | awk '{print $3}'); KEYS+=("$KB2")
if [ "$KB2" != "$KA1" ]; then ok "... a new key (not version 1's)"; else not_ok "... a new key (not version 1's)"; fi
expect_match "sealguard key group-get: bob gets the current version 2 and its key" "^grp-[0-9a-f]{32} v2 group=fleet-7 valid from [^ ]+ key=$KB2\$" "$(SG key group-get --group fleet-7 --token-cache "$T/bob.tokens" 2>&1)"
expect_eq "alice gets version 2 too, the same key" "200 2 $KB2 fleet-7" "$(gkey "$AT" alice)"
expect_eq "audit: one rotation by the SKM-S on SEAL-X1" "1 skms SEAL-X1" "$(sql "SELECT count(*) || ' ' || min(actor) || ' ' || min(refpoint) FROM audit WHERE action='km.group.rotate'")"

# --- removing alice rotates it again ----------------------------------------------------------
req "${VAL[@]}" "${AV[@]}" "${MP[@]}" -X PATCH -d '{"members":[{"valUserId":"bob@v2x"}]}' "$LOC"
expect_eq "v2x-app removes alice: 200" 200 "$CODE"
out=$(waitfor 3 "$BT" bob)
expect_match "bob gets version 3" '^200 3 [A-Za-z0-9_-]{43} fleet-7$' "$out"
KB3=$(echo "$out" | awk '{print $3}'); KEYS+=("$KB3")
if [ "$KB3" != "$KB2" ] && [ "$KB3" != "$KA1" ]; then ok "... a new key"; else not_ok "... a new key"; fi
expect_eq "alice, removed: 403 TARGET_NOT_ALLOWED" "403 TARGET_NOT_ALLOWED" "$(gkey "$AT" alice)"
req "${SRV[@]}" "$X1/fleet-7"
expect_eq "SEAL-X1: the GM server reads version 3" "200 3 $KB3" "$CODE $(jget "$BODY" version) $(jget "$BODY" key)"
expect_eq "only the current version is in force (older ones superseded)" "3 1" "$(sql "SELECT count(*) FROM km_keys WHERE target_kind='group'") $(sql "SELECT count(*) FROM km_keys WHERE target_kind='group' AND superseded_at=0")"
expect_eq "audit: alice's retrievals on KM-UU, the GM server's on SEAL-X1" "3 2" "$(sql "SELECT count(*) FROM audit WHERE action='km.group.retrieve' AND actor=(SELECT actor FROM audit WHERE action='km.group.retrieve' ORDER BY id LIMIT 1)") $(sql "SELECT count(*) FROM audit WHERE action='km.group.x1' AND refpoint='SEAL-X1/SEAL-E'")"

# --- key quotas (km.max_keys_per_service 2, max_keys_per_target 1 here): group keys are the
# KM server's own and count in neither ---
PT=$(jget "$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d client_id=v2x-app -d "scope=seal:km seal:kp" -d resource=sealguard:km "$SISS/oauth2/token")" access_token)
kpp() { req "${VAL[@]}" -H "Authorization: Bearer $PT" "${JS[@]}" -d "$1" "$SISS/ss-kpp/v1/request"; }
nk() { sql "SELECT count(*) FROM km_keys WHERE val_service = 'v2x'"; }
kpp '{"skmcUri":"urn:x","valServiceId":"v2x","payloadId":"svc-a"}'
expect_eq "a service key of v2x: 200" 200 "$CODE"
kpp '{"skmcUri":"urn:x","valServiceId":"v2x","payloadId":"svc-b"}'
expect_eq "a second service key (max_keys_per_target 1): 429 TOO_MANY_REQUESTS" "429 TOO_MANY_REQUESTS" "$CODE $(jget "$BODY" cause)"
expect_match "... the detail names the limit" 'the most it may have' "$(jget "$BODY" detail)"
kpp '{"skmcUri":"urn:x","valServiceId":"v2x","payloadId":"alice-a","valTgtUe":{"valUserId":"alice@v2x"}}'
expect_eq "a key of alice@v2x: 200" 200 "$CODE"
kpp '{"skmcUri":"urn:x","valServiceId":"v2x","payloadId":"bob-a","valTgtUe":{"valUserId":"bob@v2x"}}'
expect_eq "a key of bob@v2x, the service's third (max_keys_per_service 2): 429" "429 TOO_MANY_REQUESTS" "$CODE $(jget "$BODY" cause)"
expect_eq "the refused ones stored nothing" 2 "$(nk)"
kpp '{"skmcUri":"urn:x","valServiceId":"v2x","payloadId":"svc-a"}'
expect_eq "rotating svc-a (a new version of a key, not a new key): 200" 200 "$CODE"
expect_eq "... 3 versions stored, 2 current" "3 2" "$(nk) $(sql "SELECT count(*) FROM km_keys WHERE val_service = 'v2x' AND superseded_at = 0")"

# --- deleting the group: nobody gets its key --------------------------------------------------
req "${VAL[@]}" "${AV[@]}" -X DELETE "$LOC"
expect_eq "v2x-app deletes the group: 204" 204 "$CODE"
out=""
for _ in $(seq 1 30); do out=$(gkey "$BT" bob); [ "$out" = "403 TARGET_NOT_ALLOWED" ] && break; sleep 0.2; done
expect_eq "bob after the deletion: 403 TARGET_NOT_ALLOWED" "403 TARGET_NOT_ALLOWED" "$out"
for _ in $(seq 1 30); do [ "$(sql "SELECT count(*) FROM km_keys WHERE target_kind='group' AND superseded_at=0")" = 0 ] && break; sleep 0.2; done
expect_eq "the deleted group's key is retired (superseded: the upkeep deletes it a day later), audited" "0 1" "$(sql "SELECT count(*) FROM km_keys WHERE target_kind='group' AND superseded_at=0") $(sql "SELECT count(*) FROM audit WHERE action='km.group.retire'")"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":"fleet-7","members":[{"valUserId":"bob@v2x"}],"valServiceIds":["v2x"]}' "$GMS"
expect_eq "v2x-app creates fleet-7 again: 201" 201 "$CODE"
LOC=$(awk 'tolower($1)=="location:"{print $2}' "$T/h" | tr -d '\r')
out=$(waitfor 4 "$BT" bob)
expect_match "bob gets a new key for it, version 4 (the retired one is never released again)" '^200 4 [A-Za-z0-9_-]{43} fleet-7$' "$out"
KB4=$(echo "$out" | awk '{print $3}'); KEYS+=("$KB4")
if [ "$KB4" != "$KB3" ]; then ok "... not version 3's bytes"; else not_ok "... not version 3's bytes"; fi
req "${VAL[@]}" "${AV[@]}" -X DELETE "$LOC"
expect_eq "... and deletes it again: 204" 204 "$CODE"

# --- a group deleted while the KM server was down: its key is retired at the next start ------
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":"fleet-9","members":[{"valUserId":"bob@v2x"}],"valServiceIds":["v2x"]}' "$GMS"
expect_eq "v2x-app creates fleet-9: 201" 201 "$CODE"
cur9() { sql "SELECT count(*) FROM km_keys WHERE target_kind='group' AND target='fleet-9' AND superseded_at=0"; }
for _ in $(seq 1 30); do [ "$(cur9)" = 1 ] && break; sleep 0.2; done
expect_eq "... the KM server keyed it" 1 "$(cur9)"
expect "server stops cleanly" sg_stop
# the KM server's polls of the membership view so far: answered 304 while nothing changed
N304=$(grep -c '"path":"/ss-gm/v1/group-documents","status":304' "$T/server.log")
expect_match "the KM server's polls of unchanged membership get 304 ($N304 of them)" '^[1-9]' "$N304"
sqlite3 "$DB" "DELETE FROM gm_docs WHERE val_group_id = 'fleet-9'"
sg_start "$T/sg.yaml" || not_ok "server restart"
for _ in $(seq 1 50); do [ "$(cur9)" = 0 ] && break; sleep 0.2; done
expect_eq "fleet-9 deleted while the server was down: its key is retired after the start" 0 "$(cur9)"

# --- at rest: no group key bytes in the database, its WAL or the log --------------------------
scan() {
	py 'import sys,base64
keys=[base64.urlsafe_b64decode(k+"="*(-len(k)%4)) for k in sys.argv[1].split()]
data=b"".join(open(f,"rb").read() for f in sys.argv[2:])
for k in keys:
    for f in [k,base64.b64encode(k),base64.b64encode(k).rstrip(b"="),base64.urlsafe_b64encode(k).rstrip(b"="),k.hex().encode(),k.hex().upper().encode()]:
        if f in data: print("FOUND", f[:12])' "${KEYS[*]}" "$@"
}
WAL=()
[ -f "$DB-wal" ] && WAL=("$DB-wal")
expect_eq "scanned ${#KEYS[@]} group keys: none in the database, its WAL or the log" "" "$(scan "$DB" "${WAL[@]}" "$T/server.log")"
expect_eq "sealed group keys are 60 bytes (32 + nonce + tag)" 60 "$(sql "SELECT max(length(sealed)) FROM km_keys WHERE target_kind='group'")"

expect "server stops cleanly" sg_stop
sg_done
