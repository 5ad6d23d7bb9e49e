#!/usr/bin/env bash
# Group management (TS 29.549 SS_GroupManagement, ss-gm/v1; TS 23.434 §10.3) end to end through
# `sealguard serve`: a VAL server with a certificate-bound client-credentials token runs every
# operation over SEAL-S with curl (each response body checked against the OpenAPI schema); the
# VAL-server rules (only groups of its own VAL services); a UE logged in with `sealguard login`
# reads over SEAL-UU (GM-UU) only the group it is a member of and cannot write; bad bodies and
# merge patches change nothing; documents survive a restart; `sealguard valserver token` and
# `sealguard call`.
. "$(dirname "$0")/lib/common.sh"

sg_ports
sg_write_config "$T/sg.yaml"
cat >>"$T/sg.yaml" <<YAML
idm:
  scrypt_ln: 10
gm:
  max_documents_per_server: 3
  max_bytes_per_server: 4096
  max_members: 3
YAML
PKI=$T/state/pki
SG() { "$SG_BIN" --config "$T/sg.yaml" "$@"; }
SG pki init --dir "$PKI" --val-server v2x-app --val-server kiosk-app --val-server v2x-b >/dev/null
sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }
CA=$PKI/ca.crt
ISS=https://localhost:$UU
SISS=https://localhost:$S
VAL=(--cert "$PKI/val-servers/v2x-app.crt" --key "$PKI/val-servers/v2x-app.key")
KIOSK=(--cert "$PKI/val-servers/kiosk-app.crt" --key "$PKI/val-servers/kiosk-app.key")
VB=(--cert "$PKI/val-servers/v2x-b.crt" --key "$PKI/val-servers/v2x-b.key")
C=(curl -s --cacert "$CA")
GMS=$SISS/ss-gm/v1/group-documents
GMU=$ISS/ss-gm/v1/group-documents

canon() { py 'import sys,json;print(json.dumps(json.loads(sys.argv[1]),sort_keys=True))' "$1"; }
# schema FILE SCHEMA JSON: the JSON must be a valid SCHEMA of FILE
schema() { printf '%s' "$3" >"$T/v.json"; openapi_validate "$1" "$2" "$T/v.json"; }
gmdoc() { schema TS29549_SS_GroupManagement.yaml VALGroupDocument "$1"; }
problem() { schema TS29122_CommonData.yaml ProblemDetails "$1"; }
# every item of a JSON array is a valid VALGroupDocument
gmlist() {
	local n i
	n=$(py 'import sys,json;a=json.loads(sys.argv[1]);assert isinstance(a,list);print(len(a))' "$1") || return 1
	for ((i = 0; i < n; i++)); do gmdoc "$(jget "$1" "$i")" || return 1; done
}
# req NAME CURL_ARGS...: runs curl, sets CODE, BODY, HDRS
req() {
	"${C[@]}" -D "$T/h" -o "$T/b" "$@"
	CODE=$(awk 'NR==1{print $2}' "$T/h")
	BODY=$(cat "$T/b")
	HDRS=$(tr -d '\r' <"$T/h")
}

# --- registry, next to the running server ---
printf 'alice-pass-1\n' >"$T/alice.pw"
printf 'bob-pass-2\n' >"$T/bob.pw"
expect "user add alice (VAL user id alice@v2x for v2x)" SG user add alice --password-file "$T/alice.pw" --val-user-id v2x=alice@v2x
expect "user add bob" SG user add bob --password-file "$T/bob.pw"
expect "client add ue-app (SIM-C)" SG client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$T/ue.secret"
expect "valserver add v2x-app (VAL service v2x)" SG valserver add v2x-app --identity DNS:v2x-app --val-service v2x
expect "valserver add kiosk-app (VAL service kiosk)" SG valserver add kiosk-app --identity DNS:kiosk-app --val-service kiosk
expect "valserver add v2x-b (VAL service v2x too)" SG valserver add v2x-b --identity DNS:v2x-b --val-service v2x
sleep 1.2 # the running server follows the store generation

# --- VAL server tokens: client credentials over SEAL-S, one per service (RFC 8707) ---
tok() { jget "$("${C[@]}" "$@" -d grant_type=client_credentials -d resource=sealguard:gm "$SISS/oauth2/token")" access_token; }
VT=$(tok "${VAL[@]}" -d client_id=v2x-app)
KT=$(tok "${KIOSK[@]}" -d client_id=kiosk-app)
expect_match "v2x-app got a token for sealguard:gm" '^ey' "$VT"
expect_match "kiosk-app got a token for sealguard:gm" '^ey' "$KT"
AV=(-H "Authorization: Bearer $VT")
AK=(-H "Authorization: Bearer $KT")
BT_=$(tok "${VB[@]}" -d client_id=v2x-b)
AB=(-H "Authorization: Bearer $BT_")
JS=(-H 'Content-Type: application/json')
MP=(-H 'Content-Type: application/merge-patch+json')

# --- CreateValGroupDoc ---
G1='{"valGroupId":"fleet-1","grpDesc":"north fleet","members":[{"valUserId":"alice@v2x"},{"valUeId":"ue-9"}],"valGrpConf":"conf-a","valServiceIds":["v2x"],"suppFeat":"0","extGrpId":"fleet-1@example.com","vendorExtension":{"x":1}}'
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$G1" "$GMS"
expect_eq "create: 201" 201 "$CODE"
LOC1=$(printf '%s\n' "$HDRS" | awk 'tolower($1)=="location:"{print $2}')
expect_match "create: Location is {apiRoot}/ss-gm/v1/group-documents/{groupDocId}" "^https://localhost:$S/ss-gm/v1/group-documents/[A-Za-z0-9_-]{22}$" "$LOC1"
expect "create: the body is a VALGroupDocument" gmdoc "$BODY"
expect_eq "create: the document as sent, unknown attributes ignored" "$(canon "$(py 'import sys,json;d=json.loads(sys.argv[1]);d.pop("vendorExtension");print(json.dumps(d))' "$G1")")" "$(canon "$BODY")"
ID1=${LOC1##*/}
G2='{"valGroupId":"fleet-2","members":[{"valUserId":"carol@v2x"}],"valServiceIds":["v2x"]}'
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "$G2" "$GMS"
expect_eq "create a second group (alice not in it): 201" 201 "$CODE"
LOC2=$(printf '%s\n' "$HDRS" | awk 'tolower($1)=="location:"{print $2}')
ID2=${LOC2##*/}
G3='{"valGroupId":"kiosk-1","members":[{"valUserId":"alice"}],"valServiceIds":["kiosk"]}'
req "${KIOSK[@]}" "${AK[@]}" "${JS[@]}" -d "$G3" "$GMS"
expect_eq "kiosk-app creates a kiosk group: 201" 201 "$CODE"
ID3=$(printf '%s\n' "$HDRS" | awk 'tolower($1)=="location:"{print $2}'); ID3=${ID3##*/}

# --- bad creations: clear ProblemDetails, nothing written ---
count() { "${C[@]}" "${VAL[@]}" "${AV[@]}" "$GMS" | py 'import sys,json;print(len(json.load(sys.stdin)))'; }
N0=$(count)
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"grpDesc":"no id","members":[],"valServiceIds":["v2x"]}' "$GMS"
expect_eq "create without valGroupId: 400" 400 "$CODE"
expect "... as a ProblemDetails" problem "$BODY"
expect_eq "... invalidParams name /valGroupId and /members" "/valGroupId /members" "$(py 'import sys,json;print(" ".join(p["param"] for p in json.loads(sys.argv[1])["invalidParams"]))' "$BODY")"
expect_match "... cause INVALID_MSG_FORMAT, application/problem+json" 'INVALID_MSG_FORMAT.*|' "$(jget "$BODY" cause)|$(printf '%s' "$HDRS" | grep -i '^content-type: application/problem+json')"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":"x","members":[{"valUserId":"a","valUeId":"b"}],"valServiceIds":["v2x"]}' "$GMS"
expect_eq "create with a member naming both valUserId and valUeId: 400" "400 /members/0" "$CODE $(jget "$BODY" invalidParams 0 param)"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":"x","valServiceIds":["kiosk"]}' "$GMS"
expect_eq "create for a VAL service v2x-app does not serve: 403" "403 OPERATION_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":"x"}' "$GMS"
expect_eq "create without valServiceIds (belongs to no VAL service): 403" 403 "$CODE"
req "${VAL[@]}" "${AV[@]}" -H 'Content-Type: text/plain' -d '{"valGroupId":"x","valServiceIds":["v2x"]}' "$GMS"
expect_eq "create with Content-Type text/plain: 415" 415 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":' "$GMS"
expect_eq "create with malformed JSON: 400" 400 "$CODE"
py 'print("{\"valGroupId\":\"big\",\"valServiceIds\":[\"v2x\"],\"grpDesc\":\"" + "a"*1100000 + "\"}")' >"$T/big.json"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" --data-binary @"$T/big.json" "$GMS"
expect_eq "create larger than the listener's max_body_bytes: 413" 413 "$CODE"
req "${KIOSK[@]}" "${AK[@]}" "${JS[@]}" -d '{"valGroupId":"fleet-1","members":[{"valUserId":"alice"}],"valServiceIds":["kiosk"]}' "$GMS"
expect_eq "kiosk-app creates a group of v2x-app's valGroupId (fleet-1): 403, the group's key stays its members'" "403 OPERATION_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"
expect_eq "refused creations wrote nothing" "$N0" "$(count)"

# --- quotas of one VAL server (gm.max_documents_per_server 3, max_bytes_per_server 4096,
# max_members 3 here): clear refusals, nothing written; the others' share untouched ---
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":"crowd","members":[{"valUserId":"a"},{"valUserId":"b"},{"valUserId":"c"},{"valUeId":"d"}],"valServiceIds":["v2x"]}' "$GMS"
expect_eq "create with 4 members (max_members 3): 400 /members" "400 INVALID_MSG_FORMAT /members" "$CODE $(jget "$BODY" cause) $(jget "$BODY" invalidParams 0 param)"
expect "... as a ProblemDetails" problem "$BODY"
BIG=$(py 'print("d"*3800)')
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d "{\"valGroupId\":\"bulky\",\"grpDesc\":\"$BIG\",\"valServiceIds\":[\"v2x\"]}" "$GMS"
expect_eq "create taking v2x-app past 4096 bytes of documents: 429 TOO_MANY_REQUESTS" "429 TOO_MANY_REQUESTS" "$CODE $(jget "$BODY" cause)"
expect "... as a ProblemDetails" problem "$BODY"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":"third","valServiceIds":["v2x"]}' "$GMS"
expect_eq "a third document (max_documents_per_server 3): 201" 201 "$CODE"
LOCT=$(printf '%s\n' "$HDRS" | awk 'tolower($1)=="location:"{print $2}')
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -d '{"valGroupId":"fourth","valServiceIds":["v2x"]}' "$GMS"
expect_eq "a fourth: 429 TOO_MANY_REQUESTS" "429 TOO_MANY_REQUESTS" "$CODE $(jget "$BODY" cause)"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -X PUT -d '{"valGroupId":"third","grpDesc":"replaced in place","valServiceIds":["v2x"]}' "$LOCT"
expect_eq "replacing one of the three (its own size not counted twice): 200" 200 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${MP[@]}" -X PATCH -d "{\"grpDesc\":\"$BIG\"}" "$LOCT"
expect_eq "a merge patch growing it past the size quota: 429" 429 "$CODE"
req "${VB[@]}" "${AB[@]}" "${MP[@]}" -X PATCH -d "{\"grpDesc\":\"$BIG\"}" "$LOCT"
expect_eq "... also from v2x-b, which serves v2x too and has no documents: the quota is the creator's" "429 TOO_MANY_REQUESTS" "$CODE $(jget "$BODY" cause)"
req "${VB[@]}" "${AB[@]}" "${MP[@]}" -X PATCH -d '{"grpDesc":"edited by v2x-b"}' "$LOCT"
expect_eq "... while a small edit by v2x-b goes through: 200" 200 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${MP[@]}" -X PATCH -d '{"members":[{"valUserId":"a"},{"valUserId":"b"},{"valUserId":"c"},{"valUserId":"d"}]}' "$LOCT"
expect_eq "a merge patch to 4 members: 400 /members" "400 /members" "$CODE $(jget "$BODY" invalidParams 0 param)"
req "${KIOSK[@]}" "${AK[@]}" "${JS[@]}" -d '{"valGroupId":"kiosk-2","valServiceIds":["kiosk"]}' "$GMS"
expect_eq "kiosk-app still creates (its own quota): 201" 201 "$CODE"
KLOC=$(printf '%s\n' "$HDRS" | awk 'tolower($1)=="location:"{print $2}')
req "${VAL[@]}" "${AV[@]}" "$LOCT"
expect_eq "the refused writes changed nothing" "third edited by v2x-b" "$(jget "$BODY" valGroupId) $(jget "$BODY" grpDesc)"
req "${VAL[@]}" "${AV[@]}" -X DELETE "$LOCT"
expect_eq "deleting the third: 204" 204 "$CODE"
req "${KIOSK[@]}" "${AK[@]}" -X DELETE "$KLOC"
expect_eq "kiosk-app deletes kiosk-2: 204" 204 "$CODE"
expect_eq "after the quota section v2x-app has its two documents again" "$N0" "$(count)"

# --- RetrieveValGroupDocs with its filters ---
req "${VAL[@]}" "${AV[@]}" "$GMS"
expect_eq "list: 200" 200 "$CODE"
expect "list: an array of VALGroupDocument" gmlist "$BODY"
expect_eq "list: v2x-app sees its two v2x groups, not kiosk's" "fleet-1 fleet-2" "$(py 'import sys,json;print(" ".join(sorted(d["valGroupId"] for d in json.loads(sys.argv[1]))))' "$BODY")"
req "${VAL[@]}" "${AV[@]}" "$GMS?val-group-id=fleet-2"
expect_eq "list ?val-group-id=fleet-2" "200 fleet-2 1" "$CODE $(jget "$BODY" 0 valGroupId) $(py 'import sys,json;print(len(json.loads(sys.argv[1])))' "$BODY")"
req "${VAL[@]}" "${AV[@]}" "$GMS?val-service-id=v2x&val-group-id=fleet-1"
expect_eq "list ?val-service-id=v2x&val-group-id=fleet-1" "200 fleet-1" "$CODE $(jget "$BODY" 0 valGroupId)"
req "${VAL[@]}" "${AV[@]}" "$GMS?val-service-id=kiosk"
expect_eq "list ?val-service-id=kiosk for v2x-app: empty" "200 []" "$CODE $BODY"
req "${VAL[@]}" "${AV[@]}" "$GMS?val-group-id="
expect_eq "list with an empty filter: 400 INVALID_QUERY_PARAM" "400 INVALID_QUERY_PARAM" "$CODE $(jget "$BODY" cause)"

# --- RetrieveIndValGroupDoc ---
req "${VAL[@]}" "${AV[@]}" "$LOC1"
expect_eq "get: 200" 200 "$CODE"
expect "get: a VALGroupDocument" gmdoc "$BODY"
expect_eq "get: the stored document" "fleet-1 conf-a" "$(jget "$BODY" valGroupId) $(jget "$BODY" valGrpConf)"
req "${VAL[@]}" "${AV[@]}" "$LOC1?group-members=true"
expect_eq "get ?group-members=true: valGroupId + members" '["members", "valGroupId"]' "$(py 'import sys,json;print(json.dumps(sorted(json.loads(sys.argv[1]))))' "$BODY")"
expect "... a VALGroupDocument" gmdoc "$BODY"
req "${VAL[@]}" "${AV[@]}" "$LOC1?group-configuration=true&group-members=false"
expect_eq "get ?group-configuration=true: valGroupId + valGrpConf" '["valGroupId", "valGrpConf"]' "$(py 'import sys,json;print(json.dumps(sorted(json.loads(sys.argv[1]))))' "$BODY")"
req "${VAL[@]}" "${AV[@]}" "$LOC1?group-members=yes"
expect_eq "get ?group-members=yes: 400" 400 "$CODE"
req "${VAL[@]}" "${AV[@]}" "$GMS/doesnotexist"
expect_eq "get an unknown id: 404 RESOURCE_NOT_FOUND" "404 RESOURCE_NOT_FOUND" "$CODE $(jget "$BODY" cause)"
expect "... as a ProblemDetails" problem "$BODY"
req "${KIOSK[@]}" "${AK[@]}" "$LOC1"
expect_eq "kiosk-app reads a v2x group: 404" 404 "$CODE"

# --- UpdateIndValGroupDoc (PUT) ---
G1b='{"valGroupId":"fleet-1","grpDesc":"north fleet, renamed","members":[{"valUserId":"alice@v2x"},{"valUserId":"dave@v2x"}],"valGrpConf":"conf-b","valServiceIds":["v2x"]}'
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -X PUT -d "$G1b" "$LOC1"
expect_eq "put: 200" 200 "$CODE"
expect "put: a VALGroupDocument" gmdoc "$BODY"
expect_eq "put: replaced" "$(canon "$G1b")" "$(canon "$BODY")"
req "${VAL[@]}" "${AV[@]}" "$LOC1"
expect_eq "get after put" "$(canon "$G1b")" "$(canon "$BODY")"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -X PUT -d "$G1b" "$GMS/doesnotexist"
expect_eq "put to an unknown id: 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -X PUT -d '{"valGroupId":"fleet-1","valServiceIds":["v2x"],"members":[]}' "$LOC1"
expect_eq "put with members []: 400" 400 "$CODE"
req "${KIOSK[@]}" "${AK[@]}" "${JS[@]}" -X PUT -d "$G3" "$LOC1"
expect_eq "kiosk-app replaces a v2x group: 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -X PUT -d '{"valGroupId":"fleet-2","valServiceIds":["v2x"]}' "$LOC1"
expect_eq "put taking another group's valGroupId (fleet-2): 403" "403 OPERATION_NOT_ALLOWED" "$CODE $(jget "$BODY" cause)"
req "${VAL[@]}" "${AV[@]}" "$LOC1"
expect_eq "refused puts changed nothing" "$(canon "$G1b")" "$(canon "$BODY")"

# --- ModifyIndValGroupDoc (PATCH, RFC 7396 merge patch) ---
req "${VAL[@]}" "${AV[@]}" "${MP[@]}" -X PATCH -d '{"grpDesc":null,"valGrpConf":"conf-c","locInfo":{"cellId":"c-17"}}' "$LOC1"
expect_eq "patch: 200" 200 "$CODE"
expect "patch: a VALGroupDocument" gmdoc "$BODY"
expect_eq "patch: grpDesc removed, valGrpConf replaced, locInfo added" "None conf-c c-17 2" "$(jget "$BODY" grpDesc) $(jget "$BODY" valGrpConf) $(jget "$BODY" locInfo cellId) $(py 'import sys,json;print(len(json.loads(sys.argv[1])["members"]))' "$BODY")"
PATCHED=$(canon "$BODY")
req "${VAL[@]}" "${AV[@]}" "${MP[@]}" -X PATCH -d '{"valGroupId":null}' "$LOC1"
expect_eq "patch deleting the required valGroupId: 400 /valGroupId" "400 /valGroupId" "$CODE $(jget "$BODY" invalidParams 0 param)"
expect "... as a ProblemDetails" problem "$BODY"
req "${VAL[@]}" "${AV[@]}" "${MP[@]}" -X PATCH -d '{"members":[],"grpDesc":"x"}' "$LOC1"
expect_eq "patch making members empty: 400" 400 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${MP[@]}" -X PATCH -d '{"valServiceIds":["v2x","kiosk"]}' "$LOC1"
expect_eq "patch adding a VAL service v2x-app does not serve: 403" 403 "$CODE"
req "${VAL[@]}" "${AV[@]}" "${JS[@]}" -X PATCH -d '{"grpDesc":"x"}' "$LOC1"
expect_eq "patch as application/json: 415" 415 "$CODE"
req "${VAL[@]}" "${AV[@]}" "$LOC1"
expect_eq "refused patches changed nothing" "$PATCHED" "$(canon "$BODY")"

# --- GM-UU: a UE reads only the groups it is a member of (SEAL-UU) ---
login() { SG login --issuer "$ISS" --client-id ue-app --client-secret-file "$T/ue.secret" --username "$1" --password-file "$T/$1.pw" --cacert "$CA" --token-cache "$T/$1.tokens" --scope "openid seal:gm" >/dev/null; }
expect "alice logs in (sealguard login)" login alice
expect "bob logs in" login bob
AT=$(py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/alice.tokens")
BT=$(py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/bob.tokens")
req -H "Authorization: Bearer $AT" "$GMU"
expect_eq "alice lists over SEAL-UU: fleet-1 (v2x, as alice@v2x) and kiosk-1 (as alice), not fleet-2" "200 fleet-1 kiosk-1" "$CODE $(py 'import sys,json;print(" ".join(sorted(d["valGroupId"] for d in json.loads(sys.argv[1]))))' "$BODY")"
req -H "Authorization: Bearer $AT" "$GMU?val-service-id=v2x"
expect_eq "alice lists ?val-service-id=v2x: fleet-1" "200 fleet-1 1" "$CODE $(jget "$BODY" 0 valGroupId) $(py 'import sys,json;print(len(json.loads(sys.argv[1])))' "$BODY")"
expect "... an array of VALGroupDocument" gmlist "$BODY"
req -H "Authorization: Bearer $AT" "$GMU/$ID1"
expect_eq "alice reads fleet-1: 200" "200 $PATCHED" "$CODE $(canon "$BODY")"
req -H "Authorization: Bearer $AT" "$GMU/$ID2"
expect_eq "alice reads fleet-2 (not a member): 404" 404 "$CODE"
req -H "Authorization: Bearer $AT" "$GMU/$ID3"
expect_eq "alice reads kiosk-1 (member as her kiosk id 'alice'): 200" "200 kiosk-1" "$CODE $(jget "$BODY" valGroupId)"
req -H "Authorization: Bearer $BT" "$GMU"
expect_eq "bob lists: nothing" "200 []" "$CODE $BODY"
req -H "Authorization: Bearer $BT" "$GMU/$ID1"
expect_eq "bob reads fleet-1 (not a member): 404" 404 "$CODE"
req -H "Authorization: Bearer $AT" "${JS[@]}" -d "$G2" "$GMU"
expect_eq "a UE cannot create over SEAL-UU: 405" 405 "$CODE"
req -H "Authorization: Bearer $AT" -X DELETE "$GMU/$ID1"
expect_eq "a UE cannot delete over SEAL-UU: 405" 405 "$CODE"
req -H "Authorization: Bearer $AT" "${MP[@]}" -X PATCH -d '{"grpDesc":"x"}' "$GMU/$ID1"
expect_eq "a UE cannot patch over SEAL-UU: 405" 405 "$CODE"
req "$GMU/$ID1"
expect_eq "no token on SEAL-UU: 401" 401 "$CODE"
req "${VAL[@]}" -H "Authorization: Bearer $AT" "$GMS"
expect_match "a UE token on SEAL-S is refused" '^40[13]$' "$CODE"
req -H "Authorization: Bearer $VT" "$GMU"
expect_match "a VAL server token on SEAL-UU is refused" '^40[13]$' "$CODE"

# --- DeleteIndValGroupDoc ---
req "${KIOSK[@]}" "${AK[@]}" -X DELETE "$LOC1"
expect_eq "kiosk-app deletes a v2x group: 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X DELETE "$LOC1"
expect_eq "delete: 204" "204 " "$CODE $BODY"
req "${VAL[@]}" "${AV[@]}" "$LOC1"
expect_eq "get after delete: 404" 404 "$CODE"
req "${VAL[@]}" "${AV[@]}" -X DELETE "$LOC1"
expect_eq "delete again: 404" 404 "$CODE"
req -H "Authorization: Bearer $AT" "$GMU"
expect_eq "alice's list follows the delete: only kiosk-1 left" "200 kiosk-1" "$CODE $(jget "$BODY" 0 valGroupId)"

# --- persisted: a restart keeps the documents ---
expect "server stops cleanly" sg_stop
sg_start "$T/sg.yaml" || not_ok "server restart"
req "${VAL[@]}" "${AV[@]}" "$LOC2"
expect_eq "after a restart: fleet-2 is still there" "200 fleet-2" "$CODE $(jget "$BODY" valGroupId)"
req "${VAL[@]}" "${AV[@]}" "$LOC1"
expect_eq "after a restart: the deleted fleet-1 stays deleted" 404 "$CODE"

# --- the VAL-server SDK on the command line ---
out=$(SG valserver token --name v2x-app 2>&1)
expect_eq "valserver token exits 0" 0 "$?"
flat=$(printf '%s' "$out" | tr '\n' ' ')
expect_match "valserver token: discovered the SEAL-S token endpoint" "from $SISS/oauth2/token" "$flat"
expect_match "valserver token: claims with client_id and cnf" '"client_id": "v2x-app".*"cnf": \{ *"x5t#S256"' "$flat"
if printf '%s' "$out" | grep -Eq 'ey[A-Za-z0-9_-]{10,}\.ey'; then not_ok "valserver token hides the token"; else ok "valserver token hides the token"; fi
RAW=$(SG valserver token --name v2x-app --resource sealguard:gm --token-url "$SISS/oauth2/token" --raw)
expect_match "valserver token --raw prints a JWT" '^ey[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$' "$RAW"
req "${VAL[@]}" -H "Authorization: Bearer $RAW" "$LOC2"
expect_eq "... that ss-gm accepts" 200 "$CODE"
out=$(SG valserver token --name v2x-app --cert "$PKI/val-servers/kiosk-app.crt" --key "$PKI/val-servers/kiosk-app.key" 2>&1)
expect_match "valserver token with another VAL server's certificate: invalid_client" 'invalid_client' "$out"
out=$(SG call GET "$GMS?val-group-id=fleet-2" --name v2x-app 2>&1)
expect_eq "call GET exits 0" 0 "$?"
expect_match "call GET prints the status line" '^HTTP/[0-9.]+ 200' "$out"
expect_eq "call GET prints the body" fleet-2 "$(jget "$(printf '%s\n' "$out" | sed '1,/^$/d')" 0 valGroupId)"
printf '%s' '{"valGroupId":"via-call","valServiceIds":["v2x"],"members":[{"valUserId":"alice@v2x"}]}' >"$T/g.json"
out=$(SG call POST "$GMS" --name v2x-app --body "$T/g.json" 2>&1)
expect_match "call POST creates: 201 + Location" "^HTTP/[0-9.]+ 201 Location: $GMS/[A-Za-z0-9_-]+ " "$(printf '%s' "$out" | tr '\n' ' ')"
LOCC=$(printf '%s\n' "$out" | awk '$1=="Location:"{print $2}')
printf '%s' '{"valGroupId":null}' >"$T/p.json"
out=$(SG call PATCH "$LOCC" --name v2x-app --body "$T/p.json" 2>&1)
expect_eq "call PATCH (merge-patch+json by default) refused: exit 1" "1" "$?"
expect_match "... with the 400 ProblemDetails" '^HTTP/[0-9.]+ 400' "$out"
out=$(SG call DELETE "$LOCC" --name v2x-app 2>&1)
expect_match "call DELETE: 204" '^HTTP/[0-9.]+ 204' "$out"
out=$(SG call GET "$GMS" --name kiosk-app --http2 2>&1)
expect_match "call over HTTP/2 as kiosk-app sees only kiosk-1" '^HTTP/2 200.*kiosk-1' "$(printf '%s' "$out" | tr '\n' ' ')"
out=$(SG call GET "http://localhost:$S/" --name v2x-app 2>&1)
expect_match "call refuses a plain-http URL" 'https' "$out"
if grep -Eq 'ey[A-Za-z0-9_-]{20,}\.ey' "$T/server.log"; then not_ok "server log never shows a token"; else ok "server log never shows a token"; fi
sg_done
