#!/usr/bin/env bash
# Authorization benchmark (issue 4): GET of one VAL group document over SEAL-UU with a bearer
# token (keep-alive; HTTP/1.1 with wrk, HTTP/2 with h2load) against nginx serving the same JSON
# as a static file with the same TLS profile, same client, same script; then sealguard again
# with the verified-token cache disabled (resource.token_cache_entries: 0: a full ES256
# verification per request). Prints requests/s and the ratios.
#   usage: bench/authz.sh PATH/TO/sealguard [DURATION_S]
set -uo pipefail
SG=$(realpath "${1:?usage: authz.sh PATH/TO/sealguard [DURATION_S]}")
DUR=${2:-10}
T=$(mktemp -d /tmp/sg-bench-authz.XXXXXX)
. "$(dirname "$0")/../scripts/lib/python.sh"
sg_debian_python "$T/bin"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.5; rm -rf "$T"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for tool in nginx wrk h2load openssl python3 curl; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing (run scripts/install-deps.sh --bench)"; exit 1; }
done
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
SG_UU=$(port); SG_S=$(port); SG_E=$(port); SG_ADMIN=$(port); NX_UU=$(port)

"$SG" pki init --dir "$T/pki" --val-server bench-val >/dev/null
PKI=$T/pki
CA=$PKI/ca.crt

sg_conf() { # CACHE_ENTRIES
	# The load comes from one address: the per-address request and handshake rate limits (G4)
	# are raised to their maximum, so that they run (their cost is in the figures) but refuse
	# nothing; RPS_LIMIT=0 turns the request limit off, RPS_LIMIT=N sets it.
RPS=${RPS_LIMIT:-1000000}
RATE="requests_per_second: $RPS, request_burst: 1000000, handshakes_per_second: 1000000, handshake_burst: 1000000"
cat >"$T/sg.yaml" <<YAML
state_dir: $T/sg
pki_dir: $PKI
workers: 2
log_level: warn
access_log: 0
admin: {bind: 127.0.0.1:$SG_ADMIN}
idm: {access_token_ttl_s: 3000, id_token_ttl_s: 3600, scrypt_ln: 10}
resource: {token_cache_entries: $1}
roles: [idm, gm]
reference_points:
  - {name: SEAL-UU, bind: 127.0.0.1:$SG_UU, tls: {mode: server-auth}, auth: bearer, services: [idm, gm],
     limits: {idle_timeout_ms: 600000, $RATE}}
  - {name: SEAL-S, bind: 127.0.0.1:$SG_S, tls: {mode: mutual}, auth: mtls+bearer, services: [idm, gm],
     limits: {$RATE}}
  - {name: SEAL-E, bind: 127.0.0.1:$SG_E, tls: {mode: mutual}, auth: mtls, services: [idm, gm],
     limits: {$RATE}}
YAML
}
start_sg() {
	"$SG" --config "$T/sg.yaml" serve >"$T/sg.log" 2>&1 &
	SGPID=$!; PIDS+=("$SGPID")
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SG_ADMIN/healthz" >/dev/null && return 0; sleep 0.1; done
	echo "bench: sealguard did not start"; cat "$T/sg.log"; exit 1
}
stop_sg() { kill -TERM "$SGPID"; wait "$SGPID" 2>/dev/null; }

# --- sealguard with the cache, a user, a client, a VAL server, one group document ---
sg_conf 100000
start_sg
SGC() { "$SG" --config "$T/sg.yaml" "$@" >/dev/null; }
printf 'bench-pass-1\n' >"$T/pw"; printf 'bench-client-secret-0123456789abcdefghijkl\n' >"$T/secret"; chmod 600 "$T/secret"
SGC user add alice --password-file "$T/pw" --val-user-id v2x=alice@v2x
SGC client add app --redirect-uri http://127.0.0.1:1/cb --secret-file "$T/secret"
SGC valserver add bench-val --identity DNS:bench-val --val-service v2x
sleep 1.2
C=(curl -s --cacert "$CA")
VAL=(--cert "$PKI/val-servers/bench-val.crt" --key "$PKI/val-servers/bench-val.key")
py() { python3 -c "$@"; }
jget() { py 'import sys,json;print(json.loads(sys.argv[1]).get(sys.argv[2],""))' "$1" "$2"; }
ISS=https://localhost:$SG_UU
VER=$(py 'import secrets;print(secrets.token_urlsafe(48)[:64])')
CH=$(py 'import sys,hashlib,base64;print(base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()).rstrip(b"=").decode())' "$VER")
URL=$(py 'import sys,urllib.parse
print(sys.argv[1]+"/oauth2/authorize?"+urllib.parse.urlencode({"response_type":"code","client_id":"app","redirect_uri":"http://127.0.0.1:1/cb","scope":"openid seal:gm","state":"s","acr_values":"3gpp:acr:password","code_challenge":sys.argv[2],"code_challenge_method":"S256"}))' "$ISS" "$CH")
TX=$("${C[@]}" "$URL" | grep -o 'name="tx" value="[^"]*"' | sed 's/.*value="//;s/"$//')
LOC=$("${C[@]}" -D - -o /dev/null --data-urlencode "tx=$TX" -d username=alice -d password=bench-pass-1 "$ISS/oauth2/login" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
CODE=$(py 'import sys,urllib.parse;print(urllib.parse.parse_qs(urllib.parse.urlparse(sys.argv[1]).query)["code"][0])' "$LOC")
# a token for group management only (RFC 8707 resource), as a UE would use it
AT=$(jget "$("${C[@]}" -u "app:bench-client-secret-0123456789abcdefghijkl" -d grant_type=authorization_code --data-urlencode "code=$CODE" -d redirect_uri=http://127.0.0.1:1/cb --data-urlencode "code_verifier=$VER" -d resource=sealguard:gm "$ISS/oauth2/token")" access_token)
VAT=$(jget "$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d client_id=bench-val -d scope=seal:gm "https://localhost:$SG_S/oauth2/token")" access_token)
[ -n "$AT" ] && [ -n "$VAT" ] || { echo "bench: no tokens"; cat "$T/sg.log"; exit 1; }
"${C[@]}" "${VAL[@]}" -D "$T/h" -o /dev/null -H "Authorization: Bearer $VAT" -H 'Content-Type: application/json' \
	-d '{"valGroupId":"bench-group","grpDesc":"benchmark group","valServiceIds":["v2x"],"members":[{"valUserId":"alice@v2x"}],"valGrpConf":"{\"qos\":\"high\"}"}' \
	"https://localhost:$SG_S/ss-gm/v1/group-documents"
DOCPATH=$(tr -d '\r' <"$T/h" | awk 'tolower($1)=="location:"{print $2}' | sed 's|^https://[^/]*||')
[ -n "$DOCPATH" ] || { echo "bench: group document not created"; cat "$T/h"; exit 1; }
mkdir -p "$T/www$(dirname "$DOCPATH")"
code=$("${C[@]}" -o "$T/www$DOCPATH" -w '%{http_code}' -H "Authorization: Bearer $AT" "$ISS$DOCPATH")
[ "$code" = 200 ] || { echo "bench: GET over SEAL-UU answered $code"; exit 1; }

# --- nginx: the same JSON as a static file, same TLS profile (as bench/transport.sh) ---
mkdir -p "$T/nginx"
chmod -R a+rX "$T/www" && chmod a+x "$T" # nginx workers may run as another user
cat >"$T/nginx/nginx.conf" <<NGX
worker_processes 2;
worker_rlimit_nofile 65536;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 30000; }
http {
  access_log off;
  client_body_temp_path $T/nginx; proxy_temp_path $T/nginx; fastcgi_temp_path $T/nginx;
  uwsgi_temp_path $T/nginx; scgi_temp_path $T/nginx;
  keepalive_timeout 600s; keepalive_requests 1000000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384;
  ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384;
  ssl_ecdh_curve prime256v1:X25519:secp384r1;
  ssl_certificate $PKI/server.crt; ssl_certificate_key $PKI/server.key;
  ssl_session_cache off; ssl_session_tickets on;
  ssl_conf_command NumTickets 1;
  large_client_header_buffers 4 16k;
  server {
    listen 127.0.0.1:$NX_UU ssl http2;
    root $T/www;
    location / { default_type application/json; }
  }
}
NGX
nginx -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" || { echo "bench: nginx did not start"; exit 1; }
sleep 0.5; PIDS+=("$(cat "$T/nginx/nginx.pid")")
cmp -s <("${C[@]}" "https://localhost:$NX_UU$DOCPATH") "$T/www$DOCPATH" || { echo "bench: nginx does not serve the document"; exit 1; }

H="Authorization: Bearer $AT"
wrk_rps() { wrk -t1 -c64 -d"${DUR}s" -H "$H" "$1" 2>&1 | awk '/^Non-2xx/{bad=1} /^Requests\/sec/{r=$2} END{if (bad) print 0; else printf "%d", r}'; }
h2_rps() { h2load -t1 -c64 -m10 -D "$DUR" -H "$H" "$1" 2>&1 | awk '/^finished in/{gsub(",","",$4); r=$4} /^status codes:/{ok=$3; bad=$7+$9} END{if (ok+0==0 || bad>0) print 0; else printf "%d", r}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }

echo "sealguard authorization benchmark: $(nproc) cores, ${DUR}s per run, load clients on the same machine"
echo "GET $DOCPATH ($(wc -c <"$T/www$DOCPATH") bytes) with a ${#AT}-byte bearer token"
sg_h1=$(wrk_rps "https://127.0.0.1:$SG_UU$DOCPATH"); nx_h1=$(wrk_rps "https://127.0.0.1:$NX_UU$DOCPATH")
sg_h2=$(h2_rps "https://127.0.0.1:$SG_UU$DOCPATH"); nx_h2=$(h2_rps "https://127.0.0.1:$NX_UU$DOCPATH")
stop_sg
sg_conf 0
start_sg
sleep 2.5 # the JWKS and the revocation list arrive over SEAL-E
code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "$H" "$ISS$DOCPATH")
[ "$code" = 200 ] || { echo "bench: uncached GET answered $code"; exit 1; }
nc_h1=$(wrk_rps "https://127.0.0.1:$SG_UU$DOCPATH")
nc_h2=$(h2_rps "https://127.0.0.1:$SG_UU$DOCPATH")

printf '\n%-52s %12s %12s %8s\n' "measurement (req/s)" "sealguard" "nginx" "ratio"
printf '%-52s %12s %12s %8s\n' "HTTP/1.1 keep-alive GET, bearer, token cache" "$sg_h1" "$nx_h1" "$(ratio "$sg_h1" "$nx_h1")"
printf '%-52s %12s %12s %8s\n' "HTTP/2 keep-alive GET, bearer, token cache" "$sg_h2" "$nx_h2" "$(ratio "$sg_h2" "$nx_h2")"
printf '%-52s %12s %12s %8s\n' "HTTP/1.1 keep-alive GET, bearer, no cache (ES256)" "$nc_h1" "$nx_h1" "$(ratio "$nc_h1" "$nx_h1")"
printf '%-52s %12s %12s %8s\n' "HTTP/2 keep-alive GET, bearer, no cache (ES256)" "$nc_h2" "$nx_h2" "$(ratio "$nc_h2" "$nx_h2")"
echo "cache on / cache off: HTTP/1.1 $(ratio "$sg_h1" "$nc_h1")x, HTTP/2 $(ratio "$sg_h2" "$nc_h2")x (nginx checks no token)"
