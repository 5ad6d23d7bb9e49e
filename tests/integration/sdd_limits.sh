#!/usr/bin/env bash
# G4 on the SEALDD-UU data endpoint (docs/sdd-protocol.md §3, "Limits"): connections that never
# authenticate are bounded per client address (sdd.max_unauthenticated_per_address), so they
# cannot take the endpoint from other addresses, and a user's authenticated channels are bounded
# (sdd.max_channels_per_user), so one user cannot take it from the others, and so are new
# channels per client address and second (sdd.channels_per_second_per_address: each is a TLS
# handshake). Refusals are counted in /metrics; what was refused comes back once the holders go.
. "$(dirname "$0")/lib/common.sh"

ECHO=$(free_port)
sg_sdd_start "  max_unauthenticated_per_address: 3
  max_channels_per_user: 2
  channels_per_second_per_address: 5"
trap 'kill "$ECHO_PID" 2>/dev/null; sg_cleanup' EXIT
sg_echo_start "$ECHO"
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v k="$1" '$1==k{print $2}'; }
sg_sdd_provision "$ECHO" alice bob
tok() { py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/$1.tokens"; }

# One script drives raw connections and reports what each step saw, one word per step.
# addr: 3 silent TCP connections from 127.0.0.1 (no TLS bytes: they wait in the handshake);
#   a 4th from 127.0.0.1 must be closed at once, a TLS client from 127.0.0.2 must get through;
#   once the silent ones close, 127.0.0.1 gets through again.
# user TOKEN OTHER: two channels authenticated with TOKEN (AUTH -> AUTH_OK) held; a third AUTH
#   with TOKEN must get ERROR LIMIT; one with OTHER (another user) AUTH_OK; after one of the
#   two is closed, TOKEN's third gets AUTH_OK.
# rate: once 127.0.0.1's allowance is whole (10 at once, then 5 per second), 20 TLS handshakes
#   in a row from there: the first ones get through, the others are closed before the
#   handshake; 127.0.0.2 gets through meanwhile, and 127.0.0.1 again 2.5 s later.
cat >"$T/lim.py" <<'PY'
import socket, ssl, struct, sys, time
ca, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
def tcp(src="127.0.0.1"):
    s = socket.socket()
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s
def closed_at_once(s):
    s.settimeout(2)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
def tls(src="127.0.0.1"):
    s = ctx.wrap_socket(tcp(src), server_hostname="localhost")
    s.settimeout(5)
    return s
def handshakes(src="127.0.0.1"):
    try:
        tls(src).close()
        return "ok"
    except (OSError, ssl.SSLError):
        return "refused"
def fr(t, payload=b""):
    return struct.pack(">BBHIQ", 1, t, 0, len(payload), 0) + bytes(16) + payload
def auth(token):
    s = tls()
    s.sendall(fr(1, token.encode()))
    buf = b""
    while len(buf) < 32 or len(buf) < 32 + struct.unpack(">I", buf[4:8])[0]:
        d = s.recv(4096)
        if not d:
            return s, "eof"
        buf += d
    t, n = buf[1], struct.unpack(">I", buf[4:8])[0]
    return s, "AUTH_OK" if t == 2 else "ERROR:" + buf[32:32 + n].decode()
out = []
if mode == "addr":
    held = [tcp() for _ in range(3)]
    time.sleep(0.3)
    out.append("fourth=" + ("closed" if closed_at_once(tcp()) else "open"))
    out.append("other_address=" + handshakes("127.0.0.2"))
    for s in held:
        s.close()
    time.sleep(0.5)
    out.append("after=" + handshakes())
elif mode == "rate":
    time.sleep(2.5)
    got = [handshakes() for _ in range(20)]
    out.append("ok=%d refused=%d" % (got.count("ok"), got.count("refused")))
    out.append("other_address=" + handshakes("127.0.0.2"))
    time.sleep(2.5)
    out.append("after=" + handshakes())
else:
    token, other = sys.argv[4], sys.argv[5]
    a, ra = auth(token)
    b, rb = auth(token)
    out.append("two=%s,%s" % (ra, rb))
    c, rc = auth(token)
    out.append("third=" + rc.replace(" ", "_"))
    d, rd = auth(other)
    out.append("other_user=" + rd)
    a.close()
    time.sleep(0.5)
    e, re_ = auth(token)
    out.append("after=" + re_)
print(" ".join(out))
PY

R=$(python3 "$T/lim.py" "$CA" "$DATA" addr)
expect_match "unauthenticated per address: a 4th silent connection from 127.0.0.1 is closed at once" "fourth=closed" "$R"
expect_match "... a client from another address gets through meanwhile" "other_address=ok" "$R"
expect_match "... once the silent ones close, 127.0.0.1 gets through again" "after=ok" "$R"
N=$(metric 'sealguard_sdd_channels_refused_total{limit="max_unauthenticated_per_address"}')
if [ -n "$N" ] && [ "$N" -ge 1 ]; then ok "... counted in /metrics ($N)"; else not_ok "... counted in /metrics: '$N'"; fi

R=$(python3 "$T/lim.py" "$CA" "$DATA" user "$(tok alice)" "$(tok bob)")
expect_match "per user: alice holds two authenticated channels" "two=AUTH_OK,AUTH_OK" "$R"
expect_match "... her third is refused with ERROR LIMIT" "third=ERROR:LIMIT" "$R"
expect_match "... bob still authenticates meanwhile" "other_user=AUTH_OK" "$R"
expect_match "... after one of hers closes, alice authenticates again" "after=AUTH_OK" "$R"
N=$(metric 'sealguard_sdd_channels_refused_total{limit="max_channels_per_user"}')
if [ -n "$N" ] && [ "$N" -ge 1 ]; then ok "... counted in /metrics ($N)"; else not_ok "... counted in /metrics: '$N'"; fi

R=$(python3 "$T/lim.py" "$CA" "$DATA" rate)
n_ok=$(printf '%s' "$R" | sed -n 's/.*ok=\([0-9]*\) refused.*/\1/p')
n_ref=$(printf '%s' "$R" | sed -n 's/.*refused=\([0-9]*\).*/\1/p')
# 10 at once, plus what comes back while the 20 run (5 per second; generous for slow builds)
if [ "${n_ok:-0}" -ge 1 ] && [ "$n_ok" -le 13 ] && [ "$((n_ok + n_ref))" -eq 20 ]; then
	ok "channels per second per address: of 20 handshakes in a row, $n_ok got through, $n_ref were closed before it"
else
	not_ok "channels per second per address: $R"
fi
expect_match "... another address gets through meanwhile" "other_address=ok" "$R"
expect_match "... 127.0.0.1 gets through again once its allowance came back" "after=ok" "$R"
expect_eq "... counted in /metrics" "${n_ref:-?}" "$(metric 'sealguard_sdd_channels_refused_total{limit="channels_per_second_per_address"}')"

# the CLI reports the limit: two receivers of alice hold a channel each, a third command fails
F1=$(jget "$(SG dd open --service v2x --token-cache "$T/alice.tokens")" sddFlowId)
F2=$(jget "$(SG dd open --service v2x --token-cache "$T/alice.tokens")" sddFlowId)
F=$(jget "$(SG dd open --service v2x --token-cache "$T/alice.tokens")" sddFlowId)
"$SG_BIN" --config "$T/sg.yaml" dd recv --flow "$F1" --timeout-ms 20000 --bytes 1 --token-cache "$T/alice.tokens" >/dev/null 2>&1 &
P1=$!
"$SG_BIN" --config "$T/sg.yaml" dd recv --flow "$F2" --timeout-ms 20000 --bytes 1 --token-cache "$T/alice.tokens" >/dev/null 2>&1 &
P2=$!
sleep 1.5
printf 'x' >"$T/x"
OUT=$(SG dd send --flow "$F" --in "$T/x" --token-cache "$T/alice.tokens" 2>&1)
expect_eq "dd send beyond the user's channels: exit 1" 1 "$?"
expect_match "... naming the limit" "LIMIT: too many data channels for this user" "$OUT"
kill "$P1" "$P2" 2>/dev/null
wait "$P1" "$P2" 2>/dev/null
sleep 0.5
SG dd send --flow "$F" --in "$T/x" --token-cache "$T/alice.tokens" >/dev/null 2>&1
expect_eq "... with her receivers gone, the same send goes through" 0 "$?"

# the CLI's output: bytes that do not reach the file are an error, not a short success, and a
# refused attach leaves --out as it was
printf 'kept\n' >"$T/keep.out"
SG dd recv --flow AAAAAAAAAAAAAAAAAAAAAA --bytes 1 --out "$T/keep.out" --token-cache "$T/alice.tokens" >/dev/null 2>&1
expect_eq "dd recv on a flow that does not exist: exit 1" 1 "$?"
expect_eq "... and --out is left alone" kept "$(cat "$T/keep.out")"
SG dd send --flow "$F" --in "$T/x" --token-cache "$T/alice.tokens" >/dev/null 2>&1 # its echo waits
OUT=$(SG dd recv --flow "$F" --bytes 1 --out /dev/full --token-cache "$T/alice.tokens" 2>&1)
expect_eq "dd recv --out /dev/full: exit 1" 1 "$?"
expect_match "... saying why" "/dev/full: No space left on device" "$OUT"
OUT=$(SG dd send --flow "$F" --in "$T/x" --echo --out /dev/full --token-cache "$T/alice.tokens" 2>&1)
expect_eq "dd send --echo --out /dev/full: exit 1" 1 "$?"
expect_match "... saying why" "/dev/full: No space left on device" "$OUT"

# the echo endpoint holds at most 256 connections; one that does not finish its handshake within
# --timeout-ms (1 s here) is closed, so silent TCP connections (no certificate needed) hold it
# that long only, and one that takes no echo is closed once an echo (up to 64 KiB) has waited
# 6 x --timeout-ms in all (a receive window that trickles open does not stretch it)
ECHO3=$(free_port)
"$SG_BIN" --config "$T/sg.yaml" dd echo-server --bind "127.0.0.1:$ECHO3" "${VAL[@]}" --cacert "$CA" --timeout-ms 1000 2>>"$T/echo3.log" &
E3=$!
sg_wait_port "$ECHO3" || not_ok "echo-server on $ECHO3"
R=$(python3 - "$ECHO3" "$CA" "$PKI/seal-servers/v2x-app.crt" "$PKI/seal-servers/v2x-app.key" <<'PY'
import socket, ssl, sys, time
port, ca, crt, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(crt, key)
def conn(rcvbuf=0):
    t = socket.socket()
    if rcvbuf:  # fixed: no window growth that lets the echo trickle in
        t.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    t.settimeout(5)
    t.connect(("127.0.0.1", port))
    return ctx.wrap_socket(t, server_hostname="v2x-app")
def echo():
    try:
        s = conn(); s.sendall(b"ping"); d = s.recv(4); s.close()
        return "echo" if d == b"ping" else "none"
    except (OSError, ssl.SSLError):
        return "refused"
silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(256)]
time.sleep(0.2)
print("held=" + echo())
time.sleep(1.5)
def gone(s):
    s.settimeout(3)
    try:
        return s.recv(1) == b""
    except OSError:
        return True
print("silent_closed=%d" % sum(gone(s) for s in silent))
print("after=" + echo())
s = conn(16384); s.setblocking(False)
t0, res = time.time(), "open"
while time.time() - t0 < 15:
    try:
        s.send(b"x" * 65536)
    except (ssl.SSLWantWriteError, BlockingIOError):
        time.sleep(0.05)
    except OSError:
        res = "closed"; break
print("nonreader=%s" % res)
# a ClientHello trickled one byte every 0.4 s: the deadline is the whole handshake's (it was
# each read's, so this held its slot for as long as it went on)
inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
try:
    ctx.wrap_bio(inb, outb, server_hostname="v2x-app").do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outb.read()
t = socket.create_connection(("127.0.0.1", port)); t.settimeout(0.4)
t0, res = time.time(), "open"
for b in hello:
    try:
        t.send(bytes([b]))
        if t.recv(1) == b"":
            res = "closed"; break
    except socket.timeout:
        pass
    except OSError:
        res = "closed"; break
    if time.time() - t0 > 10:
        break
print("trickle=%s after %.1f s" % (res, time.time() - t0))
PY
)
kill "$E3" 2>/dev/null
for _ in $(seq 1 30); do kill -0 "$E3" 2>/dev/null || break; sleep 0.1; done
kill -0 "$E3" 2>/dev/null && E3_LEFT=running || E3_LEFT=exited
wait "$E3" 2>/dev/null
expect_match "echo-server: 256 silent TCP connections take every slot" "held=refused" "$R"
expect_match "... each is closed after the handshake deadline" "silent_closed=256" "$R"
expect_match "... and a VAL server's connection gets its echo again" "after=echo" "$R"
expect_match "... a peer that takes no echo is closed" "nonreader=closed" "$R"
expect_match "... a ClientHello trickled a byte at a time is closed at the handshake deadline" "trickle=closed after [1-3]\.[0-9] s" "$R"
expect_match "... SIGTERM stops it within 3 s" "exited" "$E3_LEFT"
sg_done
