# Shared helpers of the integration tests: a private temp dir, free loopback ports, a config
# writer, starting and stopping `sealguard serve`, and pass/fail bookkeeping. Sourced, not run.
set -uo pipefail

SG_BIN=${SG_BIN:?SG_BIN must name the sealguard binary}
SG_SOURCE_DIR=${SG_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
T=$(mktemp -d /tmp/sg-it.XXXXXX)
. "$SG_SOURCE_DIR/scripts/lib/python.sh"
sg_debian_python "$T/bin"
SG_PID=""
PASSED=0
FAILED=0

sg_cleanup() {
	if [ -n "$SG_PID" ] && kill -0 "$SG_PID" 2>/dev/null; then
		kill -KILL "$SG_PID" 2>/dev/null
		wait "$SG_PID" 2>/dev/null
	fi
	if [ "${SG_KEEP_TMP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap sg_cleanup EXIT

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on right now and that this test
# has not been handed before (the kernel may give a just-closed port again: two listeners of one
# configuration would then collide).
free_port() {
	local p
	while :; do
		p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
		grep -qx "$p" "$T/.ports" 2>/dev/null || break
	done
	echo "$p" >>"$T/.ports"
	echo "$p"
}

ok() { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
not_ok() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }

# expect NAME CMD...: the command must succeed.
expect() {
	local name=$1; shift
	if "$@" >"$T/last.out" 2>&1; then ok "$name"; else not_ok "$name"; sed 's/^/     | /' "$T/last.out" | tail -15; fi
}
# refuse NAME CMD...: the command must fail.
refuse() {
	local name=$1; shift
	if "$@" >"$T/last.out" 2>&1; then not_ok "$name (was accepted)"; sed 's/^/     | /' "$T/last.out" | tail -15; else ok "$name"; fi
}
# expect_eq NAME WANT GOT
expect_eq() {
	if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: want '$2', got '$3'"; fi
}
# expect_match NAME REGEX TEXT
expect_match() {
	if printf '%s' "$3" | grep -Eq -- "$2"; then ok "$1"; else not_ok "$1: '$2' not in: $(printf '%s' "$3" | head -c 400)"; fi
}

# py CODE ARGS...: python3 -c.
py() { python3 -c "$@"; }
# jget JSON KEY...: the value at the path of object keys and array indexes (objects and arrays
# printed as sorted JSON; None when absent).
jget() { py 'import sys,json
v=json.loads(sys.argv[1])
for k in sys.argv[2:]:
    v=v[int(k)] if isinstance(v,list) else (v.get(k) if isinstance(v,dict) else None)
print(v if not isinstance(v,(dict,list)) else json.dumps(v,sort_keys=True))' "$@" 2>/dev/null; }

# sg_ports: sets UU, S, E, ADMIN to free ports.
sg_ports() {
	UU=$(free_port); S=$(free_port); E=$(free_port); ADMIN=$(free_port)
}

# sg_write_config FILE [EXTRA_LIMITS_YAML [SEAL_E_LIMITS_YAML]]: the default layout on free
# ports, state in $T/state; the limits lines go to SEAL-UU and SEAL-E.
sg_write_config() {
	local f=$1 limits=${2:-} elimits=${3:-}
	cat >"$f" <<YAML
state_dir: $T/state
workers: 2
log_level: info
admin:
  bind: 127.0.0.1:$ADMIN
reference_points:
  - name: SEAL-UU
    bind: 127.0.0.1:$UU
    tls: {mode: server-auth}
    auth: bearer
    services: [idm, gm, km, sdd]
$limits
  - name: SEAL-S
    bind: 127.0.0.1:$S
    tls: {mode: mutual}
    auth: mtls+bearer
    services: [idm, gm, km, sdd]
  - name: SEAL-E
    bind: 127.0.0.1:$E
    tls: {mode: mutual}
    auth: mtls
    services: [idm, gm, km]
$elimits
YAML
}

. "$SG_SOURCE_DIR/scripts/lib/wait-ready.sh"

# sg_start CONFIG [ARGS...]: starts the server, waits until it is up and ready
# (sg_wait_ready).
sg_start() {
	local conf=$1; shift
	"$SG_BIN" --config "$conf" serve "$@" >"$T/server.log" 2>&1 &
	SG_PID=$!
	sg_wait_ready "$ADMIN" "$SG_PID" && return 0
	echo "server did not start:"; tail -20 "$T/server.log"
	return 1
}

# sg_stop: SIGTERM, and the server must exit 0 (graceful drain) within 15 s.
sg_stop() {
	[ -n "$SG_PID" ] || return 0
	kill -TERM "$SG_PID"
	local rc=0
	for _ in $(seq 1 150); do
		kill -0 "$SG_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$SG_PID" 2>/dev/null; then
		kill -KILL "$SG_PID"; rc=99
	fi
	wait "$SG_PID" 2>/dev/null || rc=$?
	SG_PID=""
	return $rc
}

# sg_done: prints the closing line and exits non-zero on any failure.
sg_done() {
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
	exit $?
}

# openapi_validate FILE.yaml SCHEMA JSON_FILE_OR_STRING: checks a body against a schema of the
# 3GPP OpenAPI files with the validator kept beside the project (../shared); returns 0 when
# valid. When the validator is not there (a checkout without it), prints why and returns 0:
# the schema check is skipped, the behaviour checks still run.
SG_SHARED_DIR=${SG_SHARED_DIR:-$SG_SOURCE_DIR/../shared}
openapi_validate() {
	local v=$SG_SHARED_DIR/tools/openapi-validate-json
	if [ ! -x "$v" ] || ! python3 -c 'import yaml, referencing, openapi_schema_validator' 2>/dev/null; then
		echo "     (schema check of $2 skipped: no OpenAPI validator here)"
		return 0
	fi
	"$v" "$SG_SHARED_DIR/openapi/multi" "$1" "$2" "$3"
}

# --- SEALDD tests ---

# sg_sdd_start EXTRA_SDD_KEYS [VAL_SERVER...]: a server with the sdd role. Writes the
# configuration (fast logins: idm.scrypt_ln 10; the data endpoint on DATA, a free port; the
# extra keys, each line indented as a key under sdd:), makes the development PKI with
# certificates for the named VAL servers (default v2x-app; `pki init --seal-server` gives them
# serverAuth besides clientAuth, as a VAL server's data endpoint is a TLS server) and starts
# the server (SG_UU_LIMITS: a `limits:` line for SEAL-UU, as sg_write_config takes). Sets DATA,
# PKI, CA, C (curl trusting the CA), VAL (v2x-app's certificate and key) and SG (the CLI with
# this configuration).
sg_sdd_start() {
	local extra=$1 vs=() v
	shift
	for v in "${@:-v2x-app}"; do vs+=(--seal-server "$v"); done
	sg_ports
	DATA=$(free_port)
	sg_write_config "$T/sg.yaml" "${SG_UU_LIMITS:-}"
	printf 'idm:\n  scrypt_ln: 10\nsdd:\n  data_bind: 127.0.0.1:%s\n%s\n' "$DATA" "$extra" >>"$T/sg.yaml"
	PKI=$T/state/pki
	CA=$PKI/ca.crt
	C=(curl -s --cacert "$CA")
	VAL=(--cert "$PKI/seal-servers/v2x-app.crt" --key "$PKI/seal-servers/v2x-app.key")
	SG() { "$SG_BIN" --config "$T/sg.yaml" "$@"; }
	SG pki init --dir "$PKI" "${vs[@]}" >/dev/null
	sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }
}

# sg_wait_port PORT: 0 once something listens on 127.0.0.1:PORT, 1 when nothing did within 5 s.
sg_wait_port() {
	for _ in $(seq 1 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# sg_echo_start PORT: `sealguard dd echo-server` on 127.0.0.1:PORT as v2x-app's VAL server
# endpoint (mutual TLS); sets ECHO_PID; fails when the port does not open within 5 s.
sg_echo_start() {
	"$SG_BIN" --config "$T/sg.yaml" dd echo-server --bind "127.0.0.1:$1" "${VAL[@]}" --cacert "$CA" 2>>"$T/echo.log" &
	ECHO_PID=$!
	sg_wait_port "$1"
}

# sg_sdd_provision ECHO_PORT USER...: the users (password USER-pass-1 in $T/USER.pw, VAL user
# USER@v2x), the client ue-app, the VAL server v2x-app serving v2x, its transmission of v2x to
# the echo endpoint on ECHO_PORT (request-trans over SEAL-S), and each user logged in with
# scope "openid sdd" (tokens in $T/USER.tokens). SG_SDD_MORE="--val-service v2x-u" registers
# more VAL services for v2x-app.
sg_sdd_provision() {
	local echo_port=$1 u
	shift
	for u in "$@"; do
		printf '%s-pass-1\n' "$u" >"$T/$u.pw"
		expect "user add $u" SG user add "$u" --password-file "$T/$u.pw" --val-user-id "v2x=$u@v2x"
	done
	expect "client add ue-app" SG client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$T/ue.secret"
	# shellcheck disable=SC2086 # SG_SDD_MORE: more "--val-service NAME" options, word-split
	expect "valserver add v2x-app" SG valserver add v2x-app --identity DNS:v2x-app --val-service v2x ${SG_SDD_MORE:-}
	sleep 1.2
	local vt tr
	vt=$(jget "$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d resource=sealguard:sdd -d client_id=v2x-app "https://localhost:$S/oauth2/token")" access_token)
	tr="{\"valServiceId\":\"v2x\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$echo_port}}"
	expect_match "request-trans for v2x" '"ddServerConnInfo"' "$("${C[@]}" "${VAL[@]}" -H "Authorization: Bearer $vt" -H 'Content-Type: application/json' -d "$tr" "https://localhost:$S/sdd-trans/v1/regular/request-trans")"
	for u in "$@"; do
		expect "$u logs in" SG login --issuer "https://localhost:$UU" --client-id ue-app --client-secret-file "$T/ue.secret" --username "$u" --password-file "$T/$u.pw" --cacert "$CA" --token-cache "$T/$u.tokens" --scope "openid sdd"
	done
}

# sg_notif_start PORT SANS LOG: a connection status notification endpoint (TS 29.548
# ConnStatusNotif) on 127.0.0.1:PORT with mutual TLS and a certificate issued for SANS (e.g.
# "DNS:localhost,DNS:v2x-app": the notifUri's host and the subscribing VAL server), answering
# 204; each POST body is one line of LOG, the client certificate's subjectAltName one line of
# LOG.peer. Sets NOTIF_PID; fails when it does not listen within 5 s.
sg_notif_start() {
	local port=$1 sans=$2 log=$3 crt
	crt=$T/notif-$port
	"$SG_BIN" --config "$T/sg.yaml" pki issue --dir "$PKI" --san "$sans" --server-auth --out "$crt" >/dev/null || return 1
	python3 - "$port" "$crt.crt" "$crt.key" "$CA" "$log" 2>/dev/null <<'PY' &
import http.server,ssl,sys,json
port,cert,key,ca,log=int(sys.argv[1]),sys.argv[2],sys.argv[3],sys.argv[4],sys.argv[5]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n=int(self.headers.get("content-length","0")); b=self.rfile.read(n)
        peer=self.connection.getpeercert()
        with open(log,"a") as f: f.write(json.dumps(json.loads(b))+"\n")
        with open(log+".peer","a") as f: f.write(str(peer.get("subjectAltName"))+"\n")
        self.send_response(204); self.end_headers()
    def log_message(self,*a): pass
ctx=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert,key); ctx.load_verify_locations(ca); ctx.verify_mode=ssl.CERT_REQUIRED
s=http.server.HTTPServer(("127.0.0.1",port),H); s.socket=ctx.wrap_socket(s.socket,server_side=True); s.serve_forever()
PY
	NOTIF_PID=$!
	sg_wait_port "$port"
}
