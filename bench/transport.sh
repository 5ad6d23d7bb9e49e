#!/usr/bin/env bash
# bench/transport.sh: sealguard against nginx (Debian), in one script, on the same loopback,
# with the same certificate, the same TLS profile and the same load clients (wrk, h2load,
# openssl s_time). Prints each measurement and sealguard's ratio to nginx:
#   (a) keep-alive GET /healthz requests/s, HTTP/1.1 (wrk) and HTTP/2 (h2load)
#   (b) new full TLS 1.3 handshakes/s, server-auth and mutual (openssl s_time -new)
#   (c) RSS with 10,000 idle TLS connections
# usage: bench/transport.sh PATH/TO/sealguard [DURATION_S]
set -uo pipefail
SG=$(realpath "${1:?usage: transport.sh PATH/TO/sealguard [DURATION_S]}")
DUR=${2:-10}
IDLE=${IDLE_CONNS:-10000}
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d /tmp/sg-bench.XXXXXX)
. "$(dirname "$0")/../scripts/lib/python.sh"
sg_debian_python "$T/bin"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.5; rm -rf "$T"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for tool in nginx wrk h2load openssl python3; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing (run scripts/install-deps.sh --bench)"; exit 1; }
done
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
SG_UU=$(port); SG_MU=$(port); SG_E=$(port); SG_ADMIN=$(port); NX_UU=$(port); NX_MU=$(port)

"$SG" pki init --dir "$T/pki" --val-server bench-client >/dev/null
PKI=$T/pki
CA=$PKI/ca.crt

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
roles: [idm, gm]
reference_points:
  - {name: SEAL-UU, bind: 127.0.0.1:$SG_UU, tls: {mode: server-auth}, auth: bearer, services: [idm, gm],
     limits: {max_connections: 30000, idle_timeout_ms: 600000, $RATE}}
  - {name: SEAL-S, bind: 127.0.0.1:$SG_MU, tls: {mode: mutual}, auth: mtls+bearer, services: [idm, gm],
     limits: {$RATE}}
  - {name: SEAL-E, bind: 127.0.0.1:$SG_E, tls: {mode: mutual}, auth: mtls, services: [idm]}
YAML

# nginx with the same profile: TLS 1.2/1.3, the TS 33.210 suites and groups, same certificate.
mkdir -p "$T/nginx"
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
  # the same work per full handshake: sealguard issues one TLS 1.3 ticket, OpenSSL's (and so
  # nginx's) default is two
  ssl_conf_command NumTickets 1;
  server {
    listen 127.0.0.1:$NX_UU ssl http2;
    location = /healthz { default_type application/health+json; return 200 '{"status":"pass"}'; }
  }
  server {
    listen 127.0.0.1:$NX_MU ssl http2;
    ssl_verify_client on; ssl_client_certificate $CA; ssl_crl $PKI/crl.pem;
    location = /healthz { default_type application/health+json; return 200 '{"status":"pass"}'; }
  }
}
NGX

start_sg() {
	"$SG" --config "$T/sg.yaml" serve >"$T/sg.log" 2>&1 &
	SGPID=$!; PIDS+=("$SGPID")
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SG_ADMIN/healthz" >/dev/null && return 0; sleep 0.1; done
	echo "bench: sealguard did not start"; cat "$T/sg.log"; exit 1
}
start_nx() {
	nginx -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" || { echo "bench: nginx did not start"; exit 1; }
	sleep 0.5; NXPID=$(cat "$T/nginx/nginx.pid"); PIDS+=("$NXPID")
}
rss_kb() { # total RSS of a process and its children
	local total=0
	for p in "$1" $(pgrep -P "$1"); do total=$((total + $(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
	echo "$total"
}
wrk_rps() { wrk -t1 -c64 -d"${DUR}s" "$1" 2>&1 | awk '/^Requests\/sec/{printf "%d", $2}'; }
h2_rps() { h2load -t1 -c64 -m10 -D "$DUR" "$1" 2>&1 | awk '/^finished in/{gsub(",","",$4); printf "%d", $4}'; }
hs_rate() { # full handshakes/s with two s_time clients in parallel
	local url=$1; shift
	for i in 1 2; do openssl s_time -connect "$url" -new -time "$DUR" -tls1_3 "$@" >"$T/st.$i" 2>&1 & done
	wait
	awk '/connections in [0-9.]+s;/{n+=$1; t=$4} END{gsub("s;","",t); printf "%d", n/t}' "$T/st.1" "$T/st.2"
}
idle_rss() { # RSS growth with $IDLE idle TLS connections held open
	local pid=$1 port=$2 before after
	before=$(rss_kb "$pid")
	coproc IDLEC { python3 "$HERE/idle_conns.py" 127.0.0.1 "$port" "$IDLE" "$CA"; }
	read -r line <&"${IDLEC[0]}"
	sleep 1; after=$(rss_kb "$pid")
	echo "" >&"${IDLEC[1]}"; wait "$IDLEC_PID" 2>/dev/null
	echo "$before $after $line"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }

echo "sealguard transport benchmark: $(nproc) cores, ${DUR}s per run, load clients on the same machine"
start_sg; start_nx
MUT=(-cert "$PKI/val-servers/bench-client.crt" -key "$PKI/val-servers/bench-client.key")

sg_h1=$(wrk_rps "https://127.0.0.1:$SG_UU/healthz"); nx_h1=$(wrk_rps "https://127.0.0.1:$NX_UU/healthz")
sg_h2=$(h2_rps "https://127.0.0.1:$SG_UU/healthz"); nx_h2=$(h2_rps "https://127.0.0.1:$NX_UU/healthz")
sg_hs=$(hs_rate "127.0.0.1:$SG_UU"); nx_hs=$(hs_rate "127.0.0.1:$NX_UU")
sg_hm=$(hs_rate "127.0.0.1:$SG_MU" "${MUT[@]}"); nx_hm=$(hs_rate "127.0.0.1:$NX_MU" "${MUT[@]}")
read -r sg_r0 sg_r1 _ sg_n _ sg_f < <(idle_rss "$SGPID" "$SG_UU")
read -r nx_r0 nx_r1 _ nx_n _ nx_f < <(idle_rss "$NXPID" "$NX_UU")

printf '\n%-46s %12s %12s %8s\n' "measurement" "sealguard" "nginx" "ratio"
printf '%-46s %12s %12s %8s\n' "(a) HTTP/1.1 keep-alive GET /healthz, req/s" "$sg_h1" "$nx_h1" "$(ratio "$sg_h1" "$nx_h1")"
printf '%-46s %12s %12s %8s\n' "(a) HTTP/2 keep-alive GET /healthz, req/s" "$sg_h2" "$nx_h2" "$(ratio "$sg_h2" "$nx_h2")"
printf '%-46s %12s %12s %8s\n' "(b) full TLS 1.3 handshakes/s, server-auth" "$sg_hs" "$nx_hs" "$(ratio "$sg_hs" "$nx_hs")"
printf '%-46s %12s %12s %8s\n' "(b) full TLS 1.3 handshakes/s, mutual" "$sg_hm" "$nx_hm" "$(ratio "$sg_hm" "$nx_hm")"
printf '%-46s %12s %12s %8s\n' "(c) RSS MiB with $IDLE idle TLS conns" "$(( sg_r1 / 1024 ))" "$(( nx_r1 / 1024 ))" "$(ratio "$sg_r1" "$nx_r1")"
printf '%-46s %12s %12s %8s\n' "(c) KiB per idle TLS connection" "$(( (sg_r1 - sg_r0) / (sg_n > 0 ? sg_n : 1) ))" "$(( (nx_r1 - nx_r0) / (nx_n > 0 ? nx_n : 1) ))" "$(ratio "$((sg_r1 - sg_r0))" "$((nx_r1 - nx_r0))")"
echo "(idle connections opened: sealguard $sg_n (failed $sg_f), nginx $nx_n (failed $nx_f))"
echo "ratios: throughput and handshakes higher is better; RSS lower is better"
