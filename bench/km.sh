#!/usr/bin/env bash
# Key management benchmark (issue 5): key retrievals/s over KM-UU (SEAL KM Request, one key
# released per request as a JWE to the UE's SKM-C key) and provisionings/s over KM-S (ss-kpp,
# mutual TLS + certificate-bound token, a durable sealed write + audit per request), with the
# cost split: TLS + HTTP (GET /healthz on the same listener), token check (a KM-UU request
# refused on the loop right after the token check: 403 TARGET_NOT_ALLOWED, no store, no
# crypto), crypto (the JWE and the unsealing measured in-process by bench/km_micro.c against the
# build's static library) and storage (the rest). One load client for every run: bench/idm_load.c
# (keep-alive HTTP/1.1 over TLS, C connections on one epoll thread), compiled here with
# Content-Type application/json. The verified-token cache is on (the default).
#   usage: bench/km.sh PATH/TO/BUILD_DIR [DURATION_S] [CONNECTIONS]
set -uo pipefail
B=$(realpath "${1:?usage: km.sh PATH/TO/BUILD_DIR [DURATION_S] [CONNECTIONS]}")
DUR=${2:-10}
NC=${3:-32}
SG=$B/sealguard
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/sg-bench-km.XXXXXX)
. "$(dirname "$0")/../scripts/lib/python.sh"
sg_debian_python "$T/bin"
SGPID=""
cleanup() { [ -n "$SGPID" ] && kill "$SGPID" 2>/dev/null; sleep 0.3; rm -rf "$T"; }
trap cleanup EXIT
for tool in cc curl python3 pkg-config; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing"; exit 1; }
done
[ -x "$SG" ] && [ -f "$B/libsealguard_core.a" ] || { echo "bench: $B has no sealguard / libsealguard_core.a"; exit 1; }
LIBS="$(pkg-config --libs openssl libevent libevent_openssl libevent_pthreads libnghttp2 libcurl jansson cjose libcyaml yaml-0.1 sqlite3) -lhttp_parser -lpthread -lm"
sed 's|application/x-www-form-urlencoded|application/json|' "$SRC/bench/idm_load.c" >"$T/km_load.c"
cc -O2 -o "$T/km_load" "$T/km_load.c" -lssl -lcrypto || exit 1
# shellcheck disable=SC2086
cc -O2 -I"$SRC/src" -o "$T/km_micro" "$SRC/bench/km_micro.c" "$B/libsealguard_core.a" $LIBS || exit 1

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UU=$(port); S=$(port); E=$(port); ADMIN=$(port)
PKI=$T/state/pki
# The load comes from one address: the per-address request and handshake rate limits (G4)
# are raised to their maximum, so that they run (their cost is in the figures) but refuse
# nothing; RPS_LIMIT=0 turns the request limit off, RPS_LIMIT=N sets it.
RPS=${RPS_LIMIT:-1000000}
RATE="requests_per_second: $RPS, request_burst: 1000000, handshakes_per_second: 1000000, handshake_burst: 1000000"
cat >"$T/sg.yaml" <<YAML
state_dir: $T/state
workers: 2
log_level: warn
access_log: 0
admin: {bind: 127.0.0.1:$ADMIN}
idm: {access_token_ttl_s: 3000, scrypt_ln: 10}
reference_points:
  - {name: SEAL-UU, bind: 127.0.0.1:$UU, tls: {mode: server-auth}, auth: bearer, services: [idm, km],
     limits: {idle_timeout_ms: 600000, $RATE}}
  - {name: SEAL-S, bind: 127.0.0.1:$S, tls: {mode: mutual}, auth: mtls+bearer, services: [idm, km],
     limits: {idle_timeout_ms: 600000, $RATE}}
  - {name: SEAL-E, bind: 127.0.0.1:$E, tls: {mode: mutual}, auth: mtls, services: [idm, km],
     limits: {$RATE}}
YAML
SGC() { "$SG" --config "$T/sg.yaml" "$@"; }
SGC pki init --dir "$PKI" --val-server bench-val >/dev/null
"$SG" --config "$T/sg.yaml" serve --roles idm,km >"$T/sg.log" 2>&1 &
SGPID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.1; done
CA=$PKI/ca.crt
C=(curl -s --cacert "$CA")
printf 'alice-pass-1\n' >"$T/alice.pw"
SGC user add alice --password-file "$T/alice.pw" --val-user-id v2x=alice@v2x >/dev/null
SGC client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$T/ue.secret" >/dev/null
SGC valserver add bench-val --identity DNS:bench-val --val-service v2x --key-provisioning >/dev/null
sleep 1.2
SGC login --issuer "https://localhost:$UU" --client-id ue-app --client-secret-file "$T/ue.secret" --username alice --password-file "$T/alice.pw" --cacert "$CA" --token-cache "$T/alice.tokens" --scope "openid seal:km" >/dev/null || { echo "bench: login failed"; exit 1; }
SGC key register --token-cache "$T/alice.tokens" >/dev/null || { echo "bench: SKM-C registration failed"; exit 1; }
AT=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/alice.tokens")
VC=(--cert "$PKI/val-servers/bench-val.crt" --key "$PKI/val-servers/bench-val.key")
VT=$("${C[@]}" "${VC[@]}" -d grant_type=client_credentials -d client_id=bench-val -d "scope=seal:km seal:kp" -d resource=sealguard:km "https://localhost:$S/oauth2/token" | python3 -c 'import json,sys;print(json.load(sys.stdin)["access_token"])')
KEY=$(python3 -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')
code=$("${C[@]}" "${VC[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $VT" -H 'Content-Type: application/json' -d "{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v2x\",\"valTgtUe\":{\"valUserId\":\"alice@v2x\"},\"payloadId\":\"alice-k1\",\"payload\":\"$KEY\"}" "https://localhost:$S/ss-kpp/v1/request")
[ "$code" = 200 ] || { echo "bench: provisioning failed ($code)"; exit 1; }

load() { # NAME EXPECTED_STATUS ARGS...: prints NAME rps, keeps it in R_NAME
	local name=$1 want=$2; shift 2
	local out
	out=$("$T/km_load" -c "$NC" -d "$DUR" -s "$want" "$@" 2>&1)
	local rps bad
	rps=$(printf '%s' "$out" | sed -n 's/.*rps=\([0-9.]*\).*/\1/p')
	bad=$(printf '%s' "$out" | sed -n 's/.*bad=\([0-9]*\).*/\1/p')
	printf '%-34s %10s req/s  (bad=%s)\n' "$name" "${rps:-?}" "${bad:-?}"
	eval "R_$name=${rps:-0}"
}
echo "sealguard km bench: $NC connections, ${DUR}s each, 2 workers, $(nproc) CPUs"
load healthz 200 -a "127.0.0.1:$UU" -P /healthz -m GET
load token_check 403 -a "127.0.0.1:$UU" -P /km/v1/key-requests -H "Authorization: Bearer $AT" -b '{"valServiceId":"v2x","valTgtUe":{"valUserId":"bob@v2x"}}'
load retrieval_uu 200 -a "127.0.0.1:$UU" -P /km/v1/key-requests -H "Authorization: Bearer $AT" -b '{"valServiceId":"v2x","payloadIds":["alice-k1"]}'
load provisioning_s 200 -a "127.0.0.1:$S" -P /ss-kpp/v1/request -C "$PKI/val-servers/bench-val.crt" -K "$PKI/val-servers/bench-val.key" -H "Authorization: Bearer $VT" -b "{\"skmcUri\":\"urn:x\",\"valServiceId\":\"v2x\",\"valTgtUe\":{\"valUserId\":\"alice@v2x\"},\"payloadId\":\"bench-rot\",\"payload\":\"$KEY\"}"
MICRO=$("$T/km_micro" 2000)
echo "in-process (one core): $MICRO"
# the split, in microseconds of the server's 2 workers per request (2e6 / rps): each level adds
# its step to the one before; crypto from the micro-benchmark; storage is what remains
python3 - "$R_healthz" "$R_token_check" "$R_retrieval_uu" "$R_provisioning_s" "$MICRO" <<'PY'
import sys
h, t, r, p = (float(x) for x in sys.argv[1:5])
m = dict(kv.split("=") for kv in sys.argv[5].split())
us = lambda rps: 2e6 / rps if rps else float("nan")
jwe, seal, unseal = float(m["jwe_us"]), float(m["seal_us"]), float(m["unseal_us"])
tls = us(h); tok = us(t) - tls; ret = us(r); crypto = jwe + unseal
store = ret - us(t) - crypto
print(f"retrieval over KM-UU, {ret:.0f} us of worker time each: TLS+HTTP {tls:.0f}, token check + parse {tok:.0f}, "
      f"crypto {crypto:.0f} (JWE {jwe:.0f}, unseal {unseal:.1f}), storage + audit + job hand-off {store:.0f}")
prov = us(p)
print(f"provisioning over KM-S, {prov:.0f} us of worker time each (mutual TLS + bound token, seal {seal:.1f} us, "
      f"a durable write + audit: group commit); provisionings/s vs retrievals/s = {p / r if r else float('nan'):.2f}")
PY
