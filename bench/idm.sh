#!/usr/bin/env bash
# bench/idm.sh: sealguard's identity management (SIM-S) against two OpenID Connect providers,
# glewlwyd (Debian, C) and oidc-provider (npm, certified, Node.js), in one script, on the same
# loopback, with the same certificate (ECDSA P-256, TLS on every server), ES256 tokens, access
# logs off, and the same load client (bench/idm_load.c: HTTP/1.1 keep-alive, C connections on
# one thread). Prints each measurement and sealguard's ratio to the faster peer:
#   (1) client_credentials tokens/s
#       sealguard: VAL server over mutual TLS on SEAL-S (RFC 8705 tls_client_auth);
#       peers: client_secret_basic (the connection is kept alive, so mTLS would only change
#       the one handshake per connection)
#   (2) authorization-code exchanges/s: codes pre-generated through each server's real flow
#       (authorize + login), then timed: code + PKCE verifier, client_secret_basic
#   (3) introspections/s (RFC 7662) of a valid access token
#       sealguard: SEAL-S, VAL server certificate; glewlwyd: client_secret_basic, its ES256 JWT;
#       oidc-provider: client_secret_basic, an opaque token (it cannot introspect its JWTs)
#   (4) sealguard logins/s (POST /oauth2/login, scrypt ln=14 r=8 p=1, the default), with
#       pre-fetched login transactions, one user per connection (the per-account throttle
#       runs one check per account at a time)
# usage: bench/idm.sh PATH/TO/sealguard [DURATION_S]
#   env: CONNS (32), SG_CODES (20000), OP_CODES (3000), GL_CODES (600), LOGINS (240),
#        LOGIN_CONNS (8), PERF=1 (perf record -g on sealguard during (1)-(3) and (4), reports in
#        $PERF_OUT.PHASE.txt, perf data in $PERF_OUT.PHASE.data, PERF_OUT default /tmp/sg-idm-perf; PERF_CG=dwarf
#        PERF_HZ=199 for call graphs through libraries built without frame pointers), ONLY=sealguard (skip the peers:
#        for profiling, never for a comparison)
# Each sealguard phase also prints the CPU of the sealguard process per thread and the machine's.
set -uo pipefail
SG=$(realpath "${1:?usage: idm.sh PATH/TO/sealguard [DURATION_S]}")
DUR=${2:-10}
CONNS=${CONNS:-32}
SG_CODES=${SG_CODES:-20000}; OP_CODES=${OP_CODES:-3000}; GL_CODES=${GL_CODES:-600}
LOGINS=${LOGINS:-240}; LOGIN_CONNS=${LOGIN_CONNS:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/sg-idm-bench.XXXXXX)
. "$(dirname "$0")/../scripts/lib/python.sh"
sg_debian_python "$T/bin"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.5; rm -rf "$T"; }
trap cleanup EXIT
for tool in cc openssl python3 curl node npm sqlite3; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing (run scripts/install-deps.sh --bench)"; exit 1; }
done
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0>0 && a+0>0) printf "%.2f", a/b; else print "n/a" }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN{ a+=0; b+=0; print (a>b)?a:b }'; }
rps() { sed -n 's/.*rps=\([0-9]*\).*/\1/p' | tail -1; }
wait_https() { # URL PID NAME
	for _ in $(seq 100); do
		curl -sk -o /dev/null "$1" && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	return 1
}

cc -O2 -o "$T/idm_load" "$HERE/idm_load.c" -lssl -lcrypto || { echo "bench: cannot build idm_load"; exit 1; }
LOAD=$T/idm_load

# --- one PKI for all: the server certificate (ECDSA P-256, SAN localhost/127.0.0.1) ---
"$SG" pki init --dir "$T/pki" --val-server bench-val >/dev/null
PKI=$T/pki
VALC=(-C "$PKI/val-servers/bench-val.crt" -K "$PKI/val-servers/bench-val.key")
openssl ecparam -genkey -name prime256v1 -noout -out "$T/sig.key" && openssl ec -in "$T/sig.key" -pubout -out "$T/sig.pub" 2>/dev/null
RURI=https://127.0.0.1:1/cb
SECRET=bench-secret-0123456789abcdefghij
BASIC="Authorization: Basic $(printf 'bench:%s' "$SECRET" | base64 -w0)"
printf '%s\n' "$SECRET" >"$T/secret"; chmod 600 "$T/secret"
codes() { # KIND BASE N AUTH_PATH SCOPE USERS OUT
	CLIENT_ID=bench REDIRECT_URI=$RURI AUTH_PATH=$4 SCOPE=$5 USERS=$6 \
		node "$HERE/idm_codes.mjs" codes "$1" "$2" "$3" 8 "$7" >"$T/codes.err" 2>&1 || { sed 's/^/  | /' "$T/codes.err" | tail -5; return 1; }
}

declare -A R # R[server.measure]
echo "sealguard identity management benchmark: $(nproc) cores, ${DUR}s runs, $CONNS keep-alive connections, load client on the same machine"

# ================================ sealguard ================================
UU=$(port); S=$(port); ADMIN=$(port)
# The load comes from one address: the per-address request and handshake rate limits (G4)
# are raised to their maximum, so that they run (their cost is in the figures) but refuse
# nothing; RPS_LIMIT=0 turns the request limit off, RPS_LIMIT=N sets it.
RPS=${RPS_LIMIT:-1000000}
RATE="requests_per_second: $RPS, request_burst: 1000000, handshakes_per_second: 1000000, handshake_burst: 1000000"
sg_conf() { # FILE [SCRYPT_LN]
	cat >"$1" <<YAML
state_dir: $T/sg
pki_dir: $PKI
workers: 2
log_level: warn
access_log: 0
admin: {bind: 127.0.0.1:$ADMIN}
reference_points:
  - {name: SEAL-UU, bind: 127.0.0.1:$UU, tls: {mode: server-auth}, auth: bearer, services: [idm],
     limits: {$RATE}}
  - {name: SEAL-S, bind: 127.0.0.1:$S, tls: {mode: mutual}, auth: mtls+bearer, services: [idm],
     limits: {$RATE}}
idm:
  code_ttl_s: 600
  access_token_ttl_s: 600
  id_token_ttl_s: 3600
YAML
	[ -n "${2:-}" ] && echo "  scrypt_ln: $2" >>"$1"
}
# codes are made with cheap hashes (ln=10: password hashing is not what (2) measures);
# the login phase runs the default configuration (ln=14)
sg_conf "$T/sg-fast.yaml" 10
sg_conf "$T/sg.yaml"
SGF() { "$SG" --config "$T/sg-fast.yaml" "$@"; }
start_sg() { # CONFIG
	"$SG" --config "$1" serve --roles idm >>"$T/sg.log" 2>&1 &
	SGPID=$!; PIDS+=("$SGPID")
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null && return 0; sleep 0.1; done
	echo "bench: sealguard did not start"; tail -20 "$T/sg.log"; exit 1
}
SGF client add bench --redirect-uri "$RURI" --secret-file "$T/secret" >/dev/null
SGF valserver add bench-val --identity DNS:bench-val >/dev/null
printf 'codegen-pass-1\n' >"$T/cg.pw"
SG_USERS=""
for i in $(seq 0 7); do SGF user add "cg$i" --password-file "$T/cg.pw" >/dev/null; SG_USERS="$SG_USERS cg$i:codegen-pass-1"; done
for i in $(seq 0 $((LOGIN_CONNS - 1))); do "$SG" --config "$T/sg.yaml" user add "lu$i" --password-file "$T/cg.pw" >/dev/null; done

start_sg "$T/sg-fast.yaml"
echo "sealguard: SEAL-UU 127.0.0.1:$UU, SEAL-S 127.0.0.1:$S (mutual TLS), SQLite state, ES256"
# PERF=1: perf record -g on the sealguard process during each timed phase only (not during the
# preparation of codes), one report per phase
perf_on() { [ "${PERF:-0}" = 1 ] || return 0; perf record --call-graph "${PERF_CG:-fp}" -F "${PERF_HZ:-999}" -p "$SGPID" -o "$T/perf.$1" >/dev/null 2>&1 & PERFPID=$!; sleep 0.3; }
perf_off() {
	[ "${PERF:-0}" = 1 ] || return 0
	kill -INT "$PERFPID"; wait "$PERFPID" 2>/dev/null
	local out=${PERF_OUT:-/tmp/sg-idm-perf}.$1
	cp "$T/perf.$1" "$out.data" 2>/dev/null
	{ echo "== by library"; perf report -i "$T/perf.$1" --no-children --sort dso --stdio -g none 2>/dev/null | grep -E '^ +[0-9]'
	  echo "== by thread"; perf report -i "$T/perf.$1" --no-children --sort comm --stdio -g none 2>/dev/null | grep -E '^ +[0-9]'
	  echo "== self"; perf report -i "$T/perf.$1" --no-children --percent-limit 0.8 --stdio -g none 2>/dev/null | grep -E '^ +[0-9]'
	  echo "== children"; perf report -i "$T/perf.$1" --children --percent-limit 4 --stdio -g none 2>/dev/null | grep -E '^ +[0-9]'; } >"$out.txt"
	echo "bench: perf report of sealguard during $1 in $out.txt (data: $out.data)"
}
# CPU of the sealguard process during each timed phase, per thread (by name: the event loops,
# sg-store-w the store writer, sg-store-r the readers, sg-ckpt the WAL checkpointer) and of the
# whole machine, from /proc: tells a CPU-bound rate from one waiting on fsync
cpu_snap() { # PID OUT
	python3 - "$1" >"$2" 2>/dev/null <<'EOF'
import os, sys, time
pid = sys.argv[1]
print("t", time.monotonic())
with open("/proc/stat") as f:
    v = [int(x) for x in f.readline().split()[1:]]
print("machine", sum(v) - v[3] - v[4], v[4], sum(v))
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        s = open(f"/proc/{pid}/task/{tid}/stat").read()
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()
    print("thread", tid, s[s.index("(") + 1:s.rindex(")")].replace(" ", "_"), int(f[11]) + int(f[12]))
EOF
}
cpu_on() { cpu_snap "$SGPID" "$T/cpu.before"; }
cpu_off() { # PHASE
	cpu_snap "$SGPID" "$T/cpu.after"
	python3 - "$T/cpu.before" "$T/cpu.after" "$1" "$(getconf CLK_TCK)" "$(nproc)" <<'EOF' | tee -a "$T/cpu.txt"
import sys
def load(p):
    d = {"thread": {}}
    for line in open(p):
        w = line.split()
        if w[0] == "t": d["t"] = float(w[1])
        elif w[0] == "machine": d["m"] = [int(x) for x in w[1:]]
        else: d["thread"][w[1]] = (w[2], int(w[3]))
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
hz, ncpu = int(sys.argv[4]), int(sys.argv[5])
dt = b["t"] - a["t"]
by = {}
for tid, (name, ticks) in b["thread"].items():
    d = ticks - a["thread"].get(tid, (name, 0))[1]
    n, s = by.get(name, (0, 0))
    by[name] = (n + 1, s + d)
tot = sum(s for _, s in by.values())
pct = lambda t: 100.0 * t / hz / dt
dm = [y - x for x, y in zip(a["m"], b["m"])]
parts = ", ".join(f"{k}{'x%d' % n if n > 1 else ''} {pct(s):.0f}%" for k, (n, s) in sorted(by.items(), key=lambda x: -x[1][1]) if s)
print(f"cpu {sys.argv[3]}: sealguard {pct(tot):.0f}% ({parts}); machine busy {100.0 * ncpu * dm[0] / max(dm[2], 1):.0f}% iowait {100.0 * ncpu * dm[1] / max(dm[2], 1):.0f}% of {100 * ncpu}%")
EOF
}
CCB="grant_type=client_credentials&client_id=bench-val&scope=seal:gm"
perf_on cc; cpu_on
R[sg.cc]=$("$LOAD" -a "127.0.0.1:$S" -P /oauth2/token -c "$CONNS" -d "$DUR" "${VALC[@]}" -b "$CCB" | tee "$T/sg.cc" | rps)
cpu_off cc; perf_off cc
if codes sealguard "https://127.0.0.1:$UU" "$SG_CODES" /oauth2/authorize "openid seal:gm" "$SG_USERS" "$T/sg.codes"; then
	perf_on code; cpu_on
	R[sg.code]=$("$LOAD" -a "127.0.0.1:$UU" -P /oauth2/token -c "$CONNS" -H "$BASIC" -f "$T/sg.codes" | tee "$T/sg.code" | rps)
	cpu_off code; perf_off code
else echo "bench: sealguard codes could not be generated"; fi
SGAT=$(curl -sk --cert "$PKI/val-servers/bench-val.crt" --key "$PKI/val-servers/bench-val.key" -d "$CCB" "https://127.0.0.1:$S/oauth2/token" |
	python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
perf_on intro; cpu_on
R[sg.intro]=$("$LOAD" -a "127.0.0.1:$S" -P /oauth2/introspect -c "$CONNS" -d "$DUR" "${VALC[@]}" -b "token=$SGAT" | tee "$T/sg.intro" | rps)
cpu_off intro; perf_off intro
grep -q '"active":true' <(curl -sk --cert "$PKI/val-servers/bench-val.crt" --key "$PKI/val-servers/bench-val.key" -d "token=$SGAT" "https://127.0.0.1:$S/oauth2/introspect") ||
	echo "bench: WARNING sealguard introspection does not report the token active"
# (4) logins with the default scrypt parameters
kill "$SGPID"; wait "$SGPID" 2>/dev/null
start_sg "$T/sg.yaml"
if CLIENT_ID=bench REDIRECT_URI=$RURI AUTH_PATH=/oauth2/authorize SCOPE="openid seal:gm" USERS="lu:codegen-pass-1" \
	node "$HERE/idm_codes.mjs" logintx "https://127.0.0.1:$UU" "$LOGINS" "$LOGIN_CONNS" "$T/sg.logins" >"$T/codes.err" 2>&1; then
	perf_on login; cpu_on
	R[sg.login]=$("$LOAD" -a "127.0.0.1:$UU" -P /oauth2/login -c "$LOGIN_CONNS" -s 302 -f "$T/sg.logins" | tee "$T/sg.login" | rps)
	cpu_off login; perf_off login
else echo "bench: login transactions could not be fetched"; sed 's/^/  | /' "$T/codes.err" | tail -5; fi
kill "$SGPID"; wait "$SGPID" 2>/dev/null

# ================================ glewlwyd ================================
GL_WHY=""
if [ "${ONLY:-}" = sealguard ]; then
	GL_WHY="skipped (ONLY=sealguard)"
elif ! command -v glewlwyd >/dev/null; then
	GL_WHY="glewlwyd is not installed (scripts/install-deps.sh --bench)"
elif [ ! -f /usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz ]; then
	GL_WHY="glewlwyd's SQLite schema (/usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz) is missing"
else
	GP=$(port); G=$T/glewlwyd; mkdir -p "$G"
	zcat /usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz | sqlite3 "$G/g.db"
	# the OIDC plugin: ES256 (its own P-256 key), PKCE S256 required, code replay revokes,
	# refresh tokens one-use, client_credentials, introspection for the client itself
	GLP=$(python3 - "https://127.0.0.1:$GP/api/oidc" "$T/sig.key" "$T/sig.pub" <<'EOF'
import json, sys
t, f = True, False
p = {"iss": sys.argv[1], "jwt-type": "ecdsa", "jwt-key-size": "256", "key": open(sys.argv[2]).read(),
     "cert": open(sys.argv[3]).read(), "jwks-uri": "", "jwks-private": "", "default-kid": "",
     "client-sign_kid-parameter": "", "jwks-public": "", "jwks-public-uri": "", "jwks-show": t, "jwks-x5c": [],
     "access-token-duration": 600, "refresh-token-duration": 86400, "code-duration": 600,
     "refresh-token-rolling": t, "refresh-token-one-use": "always",
     "client-refresh-token-one-use-parameter": "refresh-token-one-use", "allow-non-oidc": t,
     "auth-type-code-enabled": t, "auth-type-code-revoke-replayed": t, "auth-type-token-enabled": f,
     "auth-type-id-token-enabled": f, "auth-type-none-enabled": f, "auth-type-password-enabled": f,
     "auth-type-client-enabled": t, "auth-type-device-enabled": f, "auth-type-refresh-enabled": t,
     "scope": [], "additional-parameters": [], "claims": [], "service-documentation": "", "op-policy-uri": "",
     "op-tos-uri": "", "request-parameter-allow": f, "request-uri-allow-https-non-secure": f, "secret-type": "public",
     "address-claim": {"type": "no", "formatted": "", "street_address": "", "locality": "", "region": "",
                       "postal_code": "", "country": "", "mandatory": f},
     "name-claim": "no", "name-claim-scope": [], "email-claim": "no", "email-claim-scope": [], "scope-claim": "no",
     "scope-claim-scope": [], "allowed-scope": ["openid", "api"], "pkce-allowed": t, "pkce-method-plain-allowed": f,
     "pkce-required": t, "pkce-required-public-client": t, "pkce-scopes": [],
     "introspection-revocation-allowed": t, "introspection-revocation-auth-scope": [],
     "introspection-revocation-allow-target-client": t, "register-client-allowed": f,
     "register-client-auth-scope": [], "register-client-credentials-scope": [], "register-client-management-allowed": f,
     "register-resource-specify-allowed": f, "register-resource-default": [], "session-management-allowed": f,
     "client-pubkey-parameter": "", "client-jwks-parameter": "jwks", "client-jwks_uri-parameter": "jwks_uri",
     "request-maximum-exp": 3600, "encrypt-out-token-allow": f, "client-enc-parameter": "enc", "client-alg-parameter": "alg",
     "client-alg_kid-parameter": "alg_kid", "client-encrypt_code-parameter": "encrypt_code",
     "client-encrypt_at-parameter": "encrypt_at", "client-encrypt_userinfo-parameter": "encrypt_userinfo",
     "client-encrypt_id_token-parameter": "encrypt_id_token", "client-encrypt_refresh_token-parameter": "encrypt_refresh_token",
     "client-encrypt_introspection-parameter": "encrypt_introspection", "device-authorization-expiration": 600,
     "device-authorization-interval": 5, "client-cert-source": "none", "client-cert-header-name": "SSL_CLIENT_CERT",
     "client-cert-use-endpoint-aliases": f, "client-cert-self-signed-allowed": f, "oauth-dpop-allowed": f,
     "oauth-dpop-iat-duration": 10, "resource-allowed": f, "resource-scope": {}, "resource-client-property": "",
     "resource-scope-and-client-property": f, "resource-change-allowed": f, "oauth-rar-allowed": f,
     "rar-types-client-property": "authorization_data_types", "rar-allow-auth-unsigned": f,
     "rar-allow-auth-unencrypted": t, "rar-types": {}, "oauth-par-allowed": f, "oauth-par-duration": 90,
     "oauth-par-required": f, "oauth-par-request_uri-prefix": "urn:ietf:params:oauth:request_uri:",
     "prompt-continue-client-property": "", "restrict-scope-client-property": ""}
print(json.dumps(p).replace("'", "''"))
EOF
)
	# a confidential client (secret stored as is, like sealguard's keyed digest: no slow hash),
	# the user admin (password "password") with the scopes granted to the client
	sqlite3 "$G/g.db" <<SQL
INSERT INTO g_plugin_module_instance (gpmi_module, gpmi_name, gpmi_display_name, gpmi_parameters, gpmi_enabled) VALUES ('oidc','oidc','OIDC','$GLP',1);
INSERT INTO g_scope (gs_name, gs_display_name, gs_description, gs_password_required, gs_password_max_age) VALUES ('api','api','bench api',0,0);
INSERT OR IGNORE INTO g_user_scope (gus_name) VALUES ('openid');
INSERT OR IGNORE INTO g_user_scope (gus_name) VALUES ('api');
INSERT INTO g_user_scope_user (gu_id, gus_id) SELECT gu_id, gus_id FROM g_user, g_user_scope WHERE gu_username='admin' AND gus_name IN ('openid','api');
INSERT INTO g_client (gc_client_id, gc_name, gc_confidential, gc_enabled) VALUES ('bench','bench',1,1);
INSERT OR IGNORE INTO g_client_scope (gcs_name) VALUES ('api');
INSERT INTO g_client_scope_client (gc_id, gcs_id) SELECT gc_id, gcs_id FROM g_client, g_client_scope WHERE gc_client_id='bench' AND gcs_name='api';
INSERT INTO g_client_property (gc_id, gcp_name, gcp_value) SELECT gc_id, n, v FROM g_client,
  (SELECT 'client_secret' AS n, '$SECRET' AS v UNION ALL SELECT 'token_endpoint_auth_method', 'client_secret_basic'
   UNION ALL SELECT 'redirect_uri', '$RURI' UNION ALL SELECT 'authorization_type', 'code'
   UNION ALL SELECT 'authorization_type', 'client_credentials' UNION ALL SELECT 'authorization_type', 'refresh_token'
   UNION ALL SELECT 'source', 'database') WHERE gc_client_id='bench';
INSERT INTO g_client_user_scope (gs_id, gcus_username, gcus_client_id) SELECT gs_id, 'admin', 'bench' FROM g_scope WHERE gs_name IN ('openid','api');
SQL
	cat >"$G/g.conf" <<CONF
port=$GP
bind_address="127.0.0.1"
external_url="https://127.0.0.1:$GP"
login_url="login.html"
static_files_path="/usr/share/glewlwyd/webapp/"
api_prefix="api"
log_mode="file"
log_level="ERROR"
log_file="$G/g.log"
cookie_secure=1
session_expiration=2419200
session_key="GLEWLWYD2_SESSION_ID"
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="/usr/lib/glewlwyd/user"
client_module_path="/usr/lib/glewlwyd/client"
user_auth_scheme_module_path="/usr/lib/glewlwyd/scheme"
plugin_module_path="/usr/lib/glewlwyd/plugin"
use_secure_connection=true
secure_connection_key_file="$PKI/server.key"
secure_connection_pem_file="$PKI/server.crt"
hash_algorithm="SHA512"
database = { type = "sqlite3"; path = "$G/g.db"; };
CONF
	glewlwyd -c "$G/g.conf" >"$G/stdout.log" 2>&1 &
	GLPID=$!; PIDS+=("$GLPID")
	if ! wait_https "https://127.0.0.1:$GP/api/oidc/.well-known/openid-configuration" "$GLPID"; then
		GL_WHY="glewlwyd did not start: $(tail -3 "$G/stdout.log" "$G/g.log" 2>/dev/null | tr '\n' ' ')"
	else
		echo "glewlwyd $(dpkg-query -W -f='${Version}' glewlwyd 2>/dev/null): 127.0.0.1:$GP, SQLite, ES256, GnuTLS (libmicrohttpd)"
		GCCB="grant_type=client_credentials&scope=api"
		R[gl.cc]=$("$LOAD" -a "127.0.0.1:$GP" -P /api/oidc/token -c "$CONNS" -d "$DUR" -H "$BASIC" -b "$GCCB" | tee "$T/gl.cc" | rps)
		if codes glewlwyd "https://127.0.0.1:$GP" "$GL_CODES" /api/oidc/auth "openid api" "admin:password" "$T/gl.codes"; then
			R[gl.code]=$("$LOAD" -a "127.0.0.1:$GP" -P /api/oidc/token -c "$CONNS" -H "$BASIC" -f "$T/gl.codes" | tee "$T/gl.code" | rps)
		else echo "bench: glewlwyd codes could not be generated"; fi
		GLAT=$(curl -sk -H "$BASIC" -d "$GCCB" "https://127.0.0.1:$GP/api/oidc/token" | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
		R[gl.intro]=$("$LOAD" -a "127.0.0.1:$GP" -P /api/oidc/introspect -c "$CONNS" -d "$DUR" -H "$BASIC" -b "token=$GLAT" | tee "$T/gl.intro" | rps)
	fi
	kill "$GLPID" 2>/dev/null; wait "$GLPID" 2>/dev/null
fi
[ -n "$GL_WHY" ] && echo "bench: glewlwyd not measured: $GL_WHY"

# ================================ oidc-provider ================================
OP_WHY=""
if [ "${ONLY:-}" = sealguard ]; then
	OP_WHY="skipped (ONLY=sealguard)"
elif [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 18 ]; then
	OP_WHY="oidc-provider 8 needs Node.js >= 18, this is $(node --version)"
elif ! npm install --silent --no-audit --no-fund --prefix "$T/node" oidc-provider@8 >"$T/npm.log" 2>&1; then
	OP_WHY="npm install oidc-provider@8 failed: $(tail -3 "$T/npm.log" | tr '\n' ' ')"
else
	OP=$(port)
	JWK=$(node -e 'const c=require("crypto");const k=c.createPrivateKey(require("fs").readFileSync(process.argv[1])).export({format:"jwk"});Object.assign(k,{kid:"bench-es256",alg:"ES256",use:"sig"});console.log(JSON.stringify(k))' "$T/sig.key")
	cat >"$T/op.json" <<JSON
{"port": $OP, "issuer": "https://127.0.0.1:$OP", "cert": "$PKI/server.crt", "key": "$PKI/server.key", "jwk": $JWK,
 "client_id": "bench", "client_secret": "$SECRET", "redirect_uri": "$RURI", "username": "alice", "password": "alice-pass"}
JSON
	OIDC_PROVIDER_DIR=$T/node NODE_ENV=production node "$HERE/idm_oidc_provider.mjs" "$T/op.json" >"$T/op.log" 2>&1 &
	OPPID=$!; PIDS+=("$OPPID")
	if ! wait_https "https://127.0.0.1:$OP/.well-known/openid-configuration" "$OPPID"; then
		OP_WHY="oidc-provider did not start: $(tail -3 "$T/op.log" | tr '\n' ' ')"
	else
		echo "oidc-provider $(node -p "require('$T/node/node_modules/oidc-provider/package.json').version") on Node.js $(node --version): 127.0.0.1:$OP, in memory, ES256, one process"
		OCCB="grant_type=client_credentials&scope=api"
		R[op.cc]=$("$LOAD" -a "127.0.0.1:$OP" -P /token -c "$CONNS" -d "$DUR" -H "$BASIC" -b "$OCCB" | tee "$T/op.cc" | rps)
		if codes oidc-provider "https://127.0.0.1:$OP" "$OP_CODES" /auth "openid api" "alice:alice-pass" "$T/op.codes"; then
			R[op.code]=$("$LOAD" -a "127.0.0.1:$OP" -P /token -c "$CONNS" -H "$BASIC" -f "$T/op.codes" | tee "$T/op.code" | rps)
		else echo "bench: oidc-provider codes could not be generated"; fi
		OPAT=$(curl -sk -H "$BASIC" -d "$OCCB&resource=urn:bench:opaque" "https://127.0.0.1:$OP/token" | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
		R[op.intro]=$("$LOAD" -a "127.0.0.1:$OP" -P /token/introspection -c "$CONNS" -d "$DUR" -H "$BASIC" -b "token=$OPAT" | tee "$T/op.intro" | rps)
	fi
	kill "$OPPID" 2>/dev/null; wait "$OPPID" 2>/dev/null
fi
[ -n "$OP_WHY" ] && echo "bench: oidc-provider not measured: $OP_WHY"

# ================================ results ================================
echo
echo "load client output (requests ok bad reconnects secs rps):"
for f in sg.cc sg.code sg.intro sg.login gl.cc gl.code gl.intro op.cc op.code op.intro; do
	[ -f "$T/$f" ] && printf '  %-9s %s\n' "$f" "$(cat "$T/$f")"
done
printf '\n%-44s %10s %10s %14s %12s\n' "measurement" "sealguard" "glewlwyd" "oidc-provider" "ratio/faster"
row() { # LABEL KEY
	local sg=${R[sg.$2]:-} gl=${R[gl.$2]:-} op=${R[op.$2]:-}
	printf '%-44s %10s %10s %14s %12s\n' "$1" "${sg:-n/a}" "${gl:-n/a}" "${op:-n/a}" "$(ratio "$sg" "$(max "$gl" "$op")")"
}
row "(1) client_credentials tokens/s" cc
row "(2) authorization-code exchanges/s" code
row "(3) introspections/s (RFC 7662)" intro
[ -f "$T/cpu.txt" ] && { echo; cat "$T/cpu.txt"; echo; }
printf '%-44s %10s\n' "(4) sealguard logins/s (scrypt ln=14,r=8,p=1)" "${R[sg.login]:-n/a}"
echo "target: sealguard >= 5x the faster peer on (1)-(3)"
