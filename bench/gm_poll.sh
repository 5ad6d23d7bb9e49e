#!/usr/bin/env bash
# The key management server's membership poll of the group management server (K5, SEAL-X1;
# docs/km-protocol.md): what one poll costs over SEAL-E with GROUPS group documents of MEMBERS
# members each, as whole documents (RetrieveValGroupDocs as before), as the membership view
# (group-members=true) and as the 304 of a poll while nothing changed (If-None-Match), all on
# one keep-alive connection of curl with the SEAL server certificate. Prints bytes per answer
# and milliseconds per poll (the mean over REQS polls).
#   usage: bench/gm_poll.sh PATH/TO/sealguard [GROUPS] [MEMBERS] [REQS]
set -uo pipefail
SG=$(realpath "${1:?usage: gm_poll.sh PATH/TO/sealguard [GROUPS] [MEMBERS] [REQS]}")
GROUPS_N=${2:-1000}
MEMBERS=${3:-20}
REQS=${4:-50}
T=$(mktemp -d /tmp/sg-bench-gm.XXXXXX)
SGPID=""
cleanup() { [ -n "$SGPID" ] && kill "$SGPID" 2>/dev/null; sleep 0.3; rm -rf "$T"; }
trap cleanup EXIT
for tool in curl sqlite3 python3; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing"; exit 1; }
done
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UU=$(port); S=$(port); E=$(port); ADMIN=$(port)
cat >"$T/sg.yaml" <<YAML
state_dir: $T/state
workers: 2
log_level: warn
access_log: 0
admin: {bind: 127.0.0.1:$ADMIN}
gm: {max_documents_per_server: 1000000, max_bytes_per_server: 1073741824}
reference_points:
  - {name: SEAL-UU, bind: 127.0.0.1:$UU, tls: {mode: server-auth}, auth: bearer, services: [idm, gm]}
  - {name: SEAL-S, bind: 127.0.0.1:$S, tls: {mode: mutual}, auth: mtls+bearer, services: [idm, gm]}
  - {name: SEAL-E, bind: 127.0.0.1:$E, tls: {mode: mutual}, auth: mtls, services: [idm, gm],
     limits: {requests_per_second: 1000000, request_burst: 1000000}}
YAML
PKI=$T/state/pki
"$SG" --config "$T/sg.yaml" pki init --dir "$PKI" >/dev/null
"$SG" --config "$T/sg.yaml" serve --roles idm,gm >"$T/sg.log" 2>&1 &
SGPID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.1; done
# the documents go straight into the store (as VAL servers would have written them through
# ss-gm); its group-document generation makes the running server load them
python3 - "$T/state/sealguard.db" "$GROUPS_N" "$MEMBERS" <<'PY'
import json, sqlite3, sys
db, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db)
rows = []
for g in range(n):
    doc = {"valGroupId": "fleet-%d" % g, "grpDesc": "group %d of the bench fleet" % g,
           "members": [{"valUserId": "user-%d-%d@v2x" % (g, i)} for i in range(m)],
           "valGrpConf": "c" * 200, "valServiceIds": ["v2x"],
           "locInfo": {"cellId": "cell-%d" % g, "trackingAreaId": "ta-%d" % g}}
    body = json.dumps(doc, separators=(",", ":"))
    rows.append(("doc-%06d" % g, "bench-val", doc["valGroupId"], body, 0, 0, len(body.encode())))
c.executemany("INSERT INTO gm_docs (doc_id, owner, val_group_id, body, created_at, updated_at, size)"
              " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
c.commit()
PY
URL=https://localhost:$E/ss-gm/v1/group-documents
C=(curl -s --cacert "$PKI/ca.crt" --cert "$PKI/server.crt" --key "$PKI/server.key")
n=0
for _ in $(seq 100); do
	n=$("${C[@]}" "$URL" | python3 -c 'import json,sys;print(len(json.load(sys.stdin)))')
	[ "$n" = "$GROUPS_N" ] && break
	sleep 0.1
done
[ "$n" = "$GROUPS_N" ] || { echo "bench: the server holds $n documents, not $GROUPS_N"; exit 1; }
ETAG=$("${C[@]}" -D - -o /dev/null "$URL?group-members=true" | awk 'tolower($1)=="etag:"{print $2}' | tr -d '\r')
# one keep-alive connection, REQS polls: mean ms per poll and bytes per answer
poll() {
	local urls=() i
	for ((i = 0; i < REQS; i++)); do urls+=(-o /dev/null "$1"); done
	"${C[@]}" "${@:2}" -w '%{size_download} %{time_total} %{http_code}\n' "${urls[@]}" |
		awk '{b=$1; t+=$2; c=$3} END{printf "%9d bytes  %8.2f ms per poll  (HTTP %s)\n", b, 1000*t/NR, c}'
}
echo "gm poll bench: $GROUPS_N group documents of $MEMBERS members, $REQS polls each, one connection"
printf '  whole documents (before)     '; poll "$URL"
printf '  membership view              '; poll "$URL?group-members=true"
printf '  unchanged, If-None-Match     '; poll "$URL?group-members=true" -H "If-None-Match: $ETAG"
