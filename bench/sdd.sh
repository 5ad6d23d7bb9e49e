#!/usr/bin/env bash
# bench/sdd.sh: the SEALDD user plane against a plain TLS relay (nginx `stream` proxy, Debian's
# libnginx-mod-stream), in one script, on the same loopback, with the same certificates, the
# same TLS profile (TLS 1.3, TS 33.210 suites and groups) and the same VAL echo endpoint
# (`sealguard dd echo-server`, mutual TLS) behind both:
#   client --TLS 1.3--> SEALDD server data endpoint --mTLS--> echo   (sealguard)
#   client --TLS 1.3--> nginx stream proxy          --mTLS--> echo   (baseline)
#   client --mTLS-------------------------------------------> echo   (direct, for "added")
# The same load client (bench/sdd_load.c, compiled here against the build's
# libsealguard_core.a and src/client/sddc.h; OpenSSL directly for the baseline and direct
# paths) measures:
#   (a) throughput, MB/s of echoed VAL data: one flow, and 64 concurrent flows;
#   (b) latency of a 1 KiB round trip, p50/p99, and the latency added over the direct path.
# The SEALDD data plane is one event-loop thread; nginx runs NGINX_WORKERS (default 1) worker
# processes so that both relays have one core. Each measurement is run ROUNDS times (default 3)
# and the median is printed; the throughput runs of the two relays alternate within a round,
# and the ratio is the median of the rounds' ratios (the machine's load moves between runs).
# usage: bench/sdd.sh PATH/TO/sealguard [ROUNDS]   (the build dir must hold libsealguard_core.a)
# environment: WRITE=B bytes per application write in (a) (default 16384), LATN=N round trips in (b),
# CALIBRATE=1 the baseline against itself first (the spread of the rounds' ratios and latency
# differences is the noise), ONLY=thr|lat one of (a) and (b), OWN_SESSIONS=1 (below)
set -uo pipefail
SG=$(realpath "${1:?usage: sdd.sh PATH/TO/sealguard [ROUNDS]}")
ROUNDS=${2:-3}
BUILD=$(dirname "$SG")
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
NGINX_WORKERS=${NGINX_WORKERS:-1}
BYTES1=${BYTES1:-$((256 * 1024 * 1024))} # one flow
BYTES64=${BYTES64:-$((8 * 1024 * 1024))} # per flow, 64 flows
LATN=${LATN:-10000}
WRITE=${WRITE:-16384} # bytes per application write in (a)
T=$(mktemp -d /tmp/sg-bench-sdd.XXXXXX)
. "$(dirname "$0")/../scripts/lib/python.sh"
sg_debian_python "$T/bin"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; sleep 0.3; rm -rf "$T"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for tool in nginx curl python3 cc pkg-config; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing (run scripts/install-deps.sh --bench)"; exit 1; }
done
NGX_STREAM=/usr/lib/nginx/modules/ngx_stream_module.so
[ -f "$NGX_STREAM" ] || { echo "bench: $NGX_STREAM missing (libnginx-mod-stream; scripts/install-deps.sh --bench)"; exit 1; }
[ -f "$BUILD/libsealguard_core.a" ] || { echo "bench: $BUILD/libsealguard_core.a missing (build first)"; exit 1; }

# the load client
LOAD=$T/sdd_load
# shellcheck disable=SC2046
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I "$SRC/src" -I "$SRC/include" "$HERE/sdd_load.c" \
	"$BUILD/libsealguard_core.a" $(pkg-config --libs openssl libevent libevent_openssl libevent_pthreads \
	libnghttp2 libcurl jansson cjose libcyaml yaml-0.1 sqlite3) -lhttp_parser -lpthread -lm -o "$LOAD" ||
	{ echo "bench: cannot build bench/sdd_load.c"; exit 1; }

# OWN_SESSIONS=1: every party (sealguard, nginx, the echo endpoint, each load client run) in a
# session of its own, hence its own CFS autogroup, as separate services would be; by default
# they all share this script's session (docs/performance.md: the latency depends on it)
SESS=()
[ -n "${OWN_SESSIONS:-}" ] && SESS=(setsid -w)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UU=$(port); MU=$(port); ME=$(port); ADMIN=$(port); DATA=$(port); ECHO=$(port); NX=$(port)
PKI=$T/pki
CA=$PKI/ca.crt
"$SG" pki init --dir "$PKI" --seal-server echo-app >/dev/null
cat >"$T/sg.yaml" <<YAML
state_dir: $T/sg
pki_dir: $PKI
workers: 1
log_level: warn
access_log: 0
admin: {bind: 127.0.0.1:$ADMIN}
idm: {scrypt_ln: 10}
sdd: {data_bind: 127.0.0.1:$DATA}
reference_points:
  - {name: SEAL-UU, bind: 127.0.0.1:$UU, tls: {mode: server-auth}, auth: bearer, services: [idm, sdd]}
  - {name: SEAL-S, bind: 127.0.0.1:$MU, tls: {mode: mutual}, auth: mtls+bearer, services: [idm, sdd]}
  - {name: SEAL-E, bind: 127.0.0.1:$ME, tls: {mode: mutual}, auth: mtls, services: [idm]}
YAML
SGC() { "$SG" --config "$T/sg.yaml" "$@"; }
printf 'bench-pass-1\n' >"$T/u.pw"
SGC user add bench --password-file "$T/u.pw" >/dev/null || exit 1
SGC client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$T/ue.secret" >/dev/null || exit 1
SGC valserver add echo-app --identity DNS:echo-app --val-service bench >/dev/null || exit 1
"${SESS[@]}" "$SG" --config "$T/sg.yaml" serve --roles idm,sdd >"$T/sg.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null || { echo "bench: sealguard did not start"; cat "$T/sg.log"; exit 1; }
SGPID=${PIDS[-1]}

"${SESS[@]}" "$SG" --config "$T/sg.yaml" dd echo-server --bind "127.0.0.1:$ECHO" --cert "$PKI/seal-servers/echo-app.crt" \
	--key "$PKI/seal-servers/echo-app.key" --cacert "$CA" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$ECHO") 2>/dev/null && break; sleep 0.1; done

printf '{"valServiceId":"bench","valServerConnInfo":{"ipv4Addr":"127.0.0.1","port":%s}}' "$ECHO" >"$T/tr.json"
SGC call POST "https://localhost:$MU/sdd-trans/v1/regular/request-trans" --name echo-app \
	--cert "$PKI/seal-servers/echo-app.crt" --key "$PKI/seal-servers/echo-app.key" --body "$T/tr.json" >/dev/null ||
	{ echo "bench: request-trans failed"; exit 1; }
SGC login --issuer "https://localhost:$UU" --client-id ue-app --client-secret-file "$T/ue.secret" --username bench \
	--password-file "$T/u.pw" --cacert "$CA" --token-cache "$T/tokens" --scope "openid sdd" >/dev/null ||
	{ echo "bench: login failed"; exit 1; }
python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/tokens" >"$T/token"

# the baseline: nginx stream, the same server certificate and profile towards the client, mutual
# TLS with the SEALDD server's client certificate (resource.client_cert = server.crt) towards the
# echo endpoint, whose SAN it verifies like the SEALDD relay does.
mkdir -p "$T/nginx"
cat >"$T/nginx/nginx.conf" <<NGX
load_module $NGX_STREAM;
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile 65536;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 4096; }
stream {
  server {
    listen 127.0.0.1:$NX ssl;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384;
    ssl_ecdh_curve prime256v1:X25519:secp384r1;
    ssl_certificate $PKI/server.crt; ssl_certificate_key $PKI/server.key;
    ssl_session_cache off;
    proxy_pass 127.0.0.1:$ECHO;
    proxy_ssl on;
    proxy_ssl_protocols TLSv1.3;
    proxy_ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384;
    proxy_ssl_certificate $PKI/server.crt; proxy_ssl_certificate_key $PKI/server.key;
    proxy_ssl_trusted_certificate $CA; proxy_ssl_verify on; proxy_ssl_name echo-app;
    proxy_ssl_server_name on;
  }
}
NGX
"${SESS[@]}" nginx -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" -g 'daemon off;' &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NX") 2>/dev/null && break; sleep 0.1; done

SDD=(sdd --url "https://localhost:$UU" --token-file "$T/token" --service bench --ca "$CA" --write "$WRITE")
NGX=(tls --host 127.0.0.1 --port "$NX" --ca "$CA" --sni localhost --write "$WRITE")
DIRECT=(tls --host 127.0.0.1 --port "$ECHO" --ca "$CA" --sni echo-app --cert "$PKI/server.crt" --key "$PKI/server.key" --write "$WRITE")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN{ printf "%.1f", a - b }'; }
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# one run of the load client on path $1 (an array above: SDD, NGX, DIRECT) with workload $2 and
# the further arguments; field KEY LINE picks a value from its output line
load() {
	local -n A=$1
	"${SESS[@]}" "$LOAD" "${A[0]}" "$2" "${A[@]:1}" "${@:3}" || echo "bench: load client failed: $1" >&2
}
field() { printf '%s\n' "$2" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k{print $2}'; }

# CPU seconds (user + system) used so far by the processes given
cpu() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
	awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t / hz}'; }
NXW=$(pgrep -d' ' -P "${PIDS[-1]}")
ECHOPID=${PIDS[-2]}
# CPU=1: one run of each throughput measurement with the CPU seconds of relay, echo and client
if [ -n "${CPU:-}" ]; then
	for path in SDD NGX; do
		for fl in 1 64; do
			[ "$path" = SDD ] && rel=$SGPID || rel=$NXW
			b=$BYTES1; [ "$fl" = 64 ] && b=$BYTES64
			r0=$(cpu $rel); e0=$(cpu "$ECHOPID")
			declare -n A=$path
			line=$( { /usr/bin/time -f 'client_cpu=%U+%S' "${SESS[@]}" "$LOAD" "${A[0]}" thr "${A[@]:1}" --flows "$fl" --bytes "$b"; } 2>&1 | tr '\n' ' ')
			echo "$path flows=$fl $line relay_cpu=$(awk -v a="$(cpu $rel)" -v b="$r0" 'BEGIN{print a-b}') echo_cpu=$(awk -v a="$(cpu "$ECHOPID")" -v b="$e0" 'BEGIN{print a-b}')"
		done
	done
	exit 0
fi
# SYSCALLS=lat: one latency run (LATN round trips) per relay with the relay's system calls
# counted, per round trip: what each asks of the kernel for one 1 KiB echo
if [ "${SYSCALLS:-}" = lat ]; then
	for path in SDD NGX; do
		[ "$path" = SDD ] && rel=$SGPID || rel=$NXW
		perf trace -s -p "${rel// /,}" -o "$T/trace" 2>/dev/null &
		TP=$!
		sleep 0.5
		line=$(load "$path" lat --count "$LATN")
		kill -INT "$TP"; wait "$TP"
		echo "$path $line"
		awk -v n="$LATN" '$2 ~ /^[0-9]+$/ && $1 ~ /^[a-z_0-9]+$/ {c[$1]+=$2} END{for (k in c) printf "    %-16s %9.2f per round trip\n", k, c[k] / n}' "$T/trace" | sort -k2 -nr | head -8
	done
	exit 0
fi
# SYSCALLS=1: one 1-flow and one 64-flow throughput run per relay with its system calls counted
# (perf trace -s on the relay process and on the load client): what each asks of the kernel
if [ -n "${SYSCALLS:-}" ]; then
	for path in SDD NGX; do
		for fl in 1 64; do
			[ "$path" = SDD ] && rel=$SGPID || rel=$NXW
			b=$BYTES1; [ "$fl" = 64 ] && b=$BYTES64
			declare -n A=$path
			perf trace -s -p "$rel" -o "$T/trace" 2>/dev/null &
			TP=$!
			sleep 0.5
			line=$(perf trace -s -o "$T/ctrace" -- "${SESS[@]}" "$LOAD" "${A[0]}" thr "${A[@]:1}" --flows "$fl" --bytes "$b" | tail -1)
			kill -INT "$TP"; wait "$TP"
			echo "$path flows=$fl $line"
			for who in relay:trace client:ctrace; do
				echo "  ${who%%:*}:"
				awk '$2 ~ /^[0-9]+$/ && $1 ~ /^[a-z_0-9]+$/ {c[$1]+=$2} END{for (k in c) printf "    %-16s %9d\n", k, c[k]}' "$T/${who#*:}" | sort -k2 -nr | head -6
			done
		done
	done
	exit 0
fi
# PERF=FILE: profile the SEALDD server (perf record -g) during one throughput run (PERF_FLOWS
# flows, default 1), then exit; PERF_CLIENT=FILE profiles the load client instead (the SEALDD
# client library; with PERF_PATH=NGX the plain OpenSSL client through nginx).
if [ -n "${PERF:-}" ]; then
	perf record ${PERF_CG:--g} -o "$PERF" -p "$SGPID" 2>/dev/null &
	PP=$!
	sleep 0.5
	"${SESS[@]}" "$LOAD" "${SDD[0]}" thr "${SDD[@]:1}" --flows "${PERF_FLOWS:-1}" --bytes "${PERF_BYTES:-$BYTES1}"
	kill -INT "$PP"; wait "$PP"
	exit 0
fi
# PERF_SYS=DIR: one throughput run (PERF_FLOWS flows) of each relay with the whole machine
# profiled (perf record -a: every process and the kernel's network stack) into DIR/SDD.data and
# DIR/NGX.data, and its context switches and migrations counted (perf stat -a)
if [ -n "${PERF_SYS:-}" ]; then
	mkdir -p "$PERF_SYS"
	for path in SDD NGX; do
		declare -n A=$path
		perf stat -a -e task-clock,context-switches,cpu-migrations -o "$PERF_SYS/$path.stat" -- \
			perf record -a ${PERF_CG:--g} -o "$PERF_SYS/$path.data" -- "${SESS[@]}" "$LOAD" "${A[0]}" thr "${A[@]:1}" \
			--flows "${PERF_FLOWS:-1}" --bytes "${PERF_BYTES:-$BYTES1}" 2>/dev/null | sed "s/^/$path /"
		grep -E 'task-clock|switches|migrations' "$PERF_SYS/$path.stat" | sed "s/^/$path /"
	done
	exit 0
fi
if [ -n "${PERF_CLIENT:-}" ]; then
	declare -n A=${PERF_PATH:-SDD} # PERF_PATH=NGX: the plain OpenSSL client through nginx
	perf record ${PERF_CG:--g} -o "$PERF_CLIENT" -- "${SESS[@]}" "$LOAD" "${A[0]}" thr "${A[@]:1}" --flows "${PERF_FLOWS:-1}" \
		--bytes "${PERF_BYTES:-$BYTES1}" 2>/dev/null
	exit 0
fi

echo "SEALDD bench: $(nproc) cores, $ROUNDS rounds each (median), nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') stream x$NGINX_WORKERS, TLS 1.3 both legs"
ONLY=${ONLY:-}
case "$ONLY" in "" | thr | lat) ;; *) echo "bench: ONLY is thr or lat"; exit 2 ;; esac
T1="not run"; T64="not run"; TL="not run"
if [ "$ONLY" != lat ]; then
echo
echo "(a) throughput, MB/s of echoed VAL data ($WRITE-byte writes, 256 KiB in flight per flow)"
# sealguard and nginx alternate within each round, so that both see the same background load,
# and take turns at running first; prints the two medians, the median of the per-round ratios
# and the rounds' ratios
# one throughput run: its MB/s and the machine's CPU milliseconds per MB echoed (all CPUs'
# busy time over the run, whoever spent it: relay, client, echo, the kernel's network stack)
NCPU=$(nproc)
thr_run() {
	local l; l=$(load "$1" thr --flows "$2" --bytes "$3")
	echo "$(field mbps "$l") $(awk -v b="$(field busy "$l")" -v m="$(field mbps "$l")" -v c="$NCPU" 'BEGIN{printf "%.2f", (m > 0 ? b * c * 1000 / m : 0)}')"
}
pair() {
	local flows=$1 bytes=$2 sv=() nv=() rv=() sb=() nb=() s n r a b
	for r in $(seq "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then
			read -r s a < <(thr_run SDD "$flows" "$bytes"); read -r n b < <(thr_run NGX "$flows" "$bytes")
		else
			read -r n b < <(thr_run NGX "$flows" "$bytes"); read -r s a < <(thr_run SDD "$flows" "$bytes")
		fi
		sv+=("${s:-0}"); nv+=("${n:-0}"); rv+=("$(ratio "${s:-0}" "${n:-0}")")
		sb+=("${a:-0}"); nb+=("${b:-0}")
	done
	echo "$(med "${sv[@]}") $(med "${nv[@]}") $(med "${sb[@]}") $(med "${nb[@]}") $(med "${rv[@]}") ${rv[*]}"
}
# CALIBRATE=1: first the baseline against itself in the same pairing (the noise floor: on an
# idle machine every round's ratio is 1.00; how far they spread is what one round can resolve)
if [ -n "${CALIBRATE:-}" ]; then
	SAVED=("${SDD[@]}"); SDD=("${NGX[@]}")
	read -r _ _ _ _ R0 RR0 < <(pair 1 "$BYTES1")
	SDD=("${SAVED[@]}")
	printf '  1 flow    calibration: nginx stream against itself   ratio %s (rounds: %s)\n' "$R0" "$RR0"
fi
read -r S1 N1 SB1 NB1 R1 RR1 < <(pair 1 "$BYTES1")
printf '  1 flow    sealguard %8s   nginx stream %8s   ratio %s (rounds: %s)\n' "$S1" "$N1" "$R1" "$RR1"
read -r S64 N64 SB64 NB64 R64 RR64 < <(pair 64 "$BYTES64")
printf '  64 flows  sealguard %8s   nginx stream %8s   ratio %s (rounds: %s)\n' "$S64" "$N64" "$R64" "$RR64"
printf '  machine CPU ms per MB (medians): 1 flow %s against %s, 64 flows %s against %s\n' "$SB1" "$NB1" "$SB64" "$NB64"
T1=$(awk -v r="$R1" 'BEGIN{print (r >= 1.0) ? "met" : "NOT met"}')
T64=$(awk -v r="$R64" 'BEGIN{print (r >= 1.0) ? "met" : "NOT met"}')
fi
if [ "$ONLY" != thr ]; then
echo
echo "(b) 1 KiB round trip, one flow, $LATN round trips (microseconds)"
# The order of the paths rotates from round to round, so that each runs in every position
# equally often (the last run of a round was measured up to 25 us slower at p99). The
# direct path cancels in "added p99 <= the baseline's", so the target is judged on each round's
# paired difference, sealguard's p99 minus nginx's in the same round; its median over the
# rounds is printed with every round's value. With CALIBRATE=1 nginx also runs a second time
# per round (NGX2): its differences against itself are what one round can resolve.
declare -A LV
PATHS=(DIRECT SDD NGX)
[ -n "${CALIBRATE:-}" ] && PATHS+=(NGX2) && NGX2=("${NGX[@]}")
for r in $(seq "$ROUNDS"); do
	rot=$((r % ${#PATHS[@]}))
	order=("${PATHS[@]:rot}" "${PATHS[@]:0:rot}")
	for path in "${order[@]}"; do
		line=$(load "$path" lat --count "$LATN")
		for k in p50_us p99_us; do
			v=$(field "$k" "$line")
			LV[$path.$k]+="${v:-0} "
		done
	done
done
lmed() { med ${LV[$1.$2]:-0}; }
# each round's A minus B for one percentile: the list, then its median
diffs() { paste -d' ' <(printf '%s\n' ${LV[$1.$3]}) <(printf '%s\n' ${LV[$2.$3]}) | awk '{printf "%.1f ", $1 - $2}'; }
DP50=$(lmed DIRECT p50_us); DP99=$(lmed DIRECT p99_us)
SP50=$(lmed SDD p50_us); SP99=$(lmed SDD p99_us)
NP50=$(lmed NGX p50_us); NP99=$(lmed NGX p99_us)
printf '  direct to the echo endpoint   p50 %7s   p99 %7s\n' "$DP50" "$DP99"
printf '  through sealguard             p50 %7s   p99 %7s   added p50 %6s   added p99 %6s\n' "$SP50" "$SP99" "$(sub "$SP50" "$DP50")" "$(sub "$SP99" "$DP99")"
printf '  through nginx stream          p50 %7s   p99 %7s   added p50 %6s   added p99 %6s\n' "$NP50" "$NP99" "$(sub "$NP50" "$DP50")" "$(sub "$NP99" "$DP99")"
if [ -n "${CALIBRATE:-}" ]; then
	C99=$(diffs NGX2 NGX p99_us)
	printf '  calibration, nginx minus nginx in each round:    p50 %6s   p99 %6s (rounds: %s)\n' \
		"$(med $(diffs NGX2 NGX p50_us))" "$(med $C99)" "${C99% }"
fi
D50=$(diffs SDD NGX p50_us); D99=$(diffs SDD NGX p99_us)
printf '  sealguard minus nginx in each round:             p50 %6s   p99 %6s (rounds: %s)\n' \
	"$(med $D50)" "$(med $D99)" "${D99% }"
TL=$(awk -v d="$(med $D99)" 'BEGIN{print (d <= 0) ? "met" : "NOT met"}')
fi
echo
echo "targets: throughput >= 1.0x baseline: 1 flow $T1, 64 flows $T64; added p99 <= baseline's: $TL"
echo "sealguard RSS after the runs: $(awk '/VmRSS/{print $2, $3}' "/proc/$SGPID/status")"
