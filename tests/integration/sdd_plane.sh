#!/usr/bin/env bash
# SEALDD-UU user plane edges of the data plane's in-place frame parsing and direct TLS I/O
# (docs/sdd-protocol.md §3): frames split at every byte boundary (each byte its own TLS record,
# so every header and payload arrives in pieces), several frames in one record, and
# backpressure with a slow reader (HWM/LWM both ways: what is echoed comes back whole and in
# order, and the server's memory stays bounded while the reader lags).
. "$(dirname "$0")/lib/common.sh"

ECHO=$(free_port)
sg_sdd_start ""
trap 'kill "$ECHO_PID" 2>/dev/null; sg_cleanup' EXIT
sg_echo_start "$ECHO"
sg_sdd_provision "$ECHO" alice
ATOK=$(py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/alice.tokens")
flow() { jget "$(SG dd open --service v2x --token-cache "$T/alice.tokens")" sddFlowId; }

# A raw TLS 1.3 SEALDD client. split: AUTH, ATTACH and two DATA frames, one byte per TLS record
# (a pause after each, so the server's reads see every boundary); then two DATA frames in one
# record. slow: 6 MiB in 16 KiB DATA frames, offered 4x faster than the echo is read back.
raw() { py '
import socket,ssl,struct,sys,time,base64,select,hashlib
ca,port,tok,mode,fid=sys.argv[1],int(sys.argv[2]),sys.argv[3],sys.argv[4],sys.argv[5]
fid=base64.urlsafe_b64decode(fid+"==")
ctx=ssl.create_default_context(cafile=ca); ctx.minimum_version=ssl.TLSVersion.TLSv1_3
raw=socket.create_connection(("127.0.0.1",port))
raw.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)
s=ctx.wrap_socket(raw,server_hostname="localhost")
def fr(t,payload=b"",seq=0,flow=bytes(16)):
    return struct.pack(">BBHIQ",1,t,0,len(payload),seq)+flow+payload
buf=b""
def frames(want,timeout=10):
    global buf
    out=[]; end=time.time()+timeout
    while len(out)<want and time.time()<end:
        while len(buf)>=32:
            n=struct.unpack(">I",buf[4:8])[0]
            if len(buf)<32+n: break
            out.append((buf[1],buf[32:32+n])); buf=buf[32+n:]
        if len(out)>=want: break
        s.settimeout(max(0.01,end-time.time()))
        try: d=s.recv(65536)
        except socket.timeout: break
        if not d: break
        buf+=d
    return out
if mode=="split":
    msg=fr(1,tok.encode())+fr(3,flow=fid)+fr(5,b"split at every byte",1,fid)+fr(5,b"!",2,fid)
    for i in range(len(msg)):
        s.sendall(msg[i:i+1]); time.sleep(0.0005)
    got=frames(2)
    print(" ".join(str(t) for t,_ in got))
    data=b""; end=time.time()+10
    while len(data)<20 and time.time()<end:
        for t,p in frames(1,2):
            if t==5: data+=p
    print(data.decode(errors="replace"))
    s.sendall(fr(5,b"two ",3,fid)+fr(5,b"frames",4,fid))
    data=b""; end=time.time()+10
    while len(data)<10 and time.time()<end:
        for t,p in frames(1,2):
            if t==5: data+=p
    print(data.decode(errors="replace"))
elif mode=="wrap":
    top=2**64-1
    s.sendall(fr(1,tok.encode())+fr(3,flow=fid))
    print(" ".join(str(t) for t,_ in frames(2)))
    s.sendall(fr(5,b"a",top-2000,fid)+fr(5,b"b",top-3,fid)+fr(5,b"c",top,fid)+fr(5,b"C",top,fid)+fr(5,b"d",top-1,fid))
    data=b""; end=time.time()+10
    while len(data)<4 and time.time()<end:
        for t,p in frames(1,2):
            if t==5: data+=p
    print(data.decode(errors="replace"))
elif mode=="answers":
    # 40 MiB of DATA frames for a flow nobody attached, each answered by ERROR UNKNOWN_FLOW,
    # written without reading until the server takes nothing for 1.5 s; then everything is
    # read back while the rest is written
    s.sendall(fr(1,tok.encode()))
    print(" ".join(str(t) for t,_ in frames(1)))
    block=fr(5,b"",1,bytes(range(1,17)))*65536; total=20*len(block)
    s.setblocking(False)
    sent=0; last=time.time()
    while sent<total and time.time()-last<1.5:
        try:
            n=s.send(block[sent%len(block):]); sent+=n; last=time.time()
        except (ssl.SSLWantWriteError,ssl.SSLWantReadError,BlockingIOError): time.sleep(0.01)
    stalled=sent
    rbuf=b""; errors=0; other=0; end=time.time()+120
    while errors*32<total and time.time()<end:
        if sent<total:
            try: sent+=s.send(block[sent%len(block):])
            except (ssl.SSLWantWriteError,ssl.SSLWantReadError,BlockingIOError): pass
        try:
            d=s.recv(1<<20)
            if not d: break
            rbuf+=d
        except (ssl.SSLWantReadError,ssl.SSLWantWriteError,BlockingIOError): select.select([s],[],[],0.01)
        while len(rbuf)>=32:
            n=struct.unpack(">I",rbuf[4:8])[0]
            if len(rbuf)<32+n: break
            if rbuf[1]==8 and rbuf[32:32+12]==b"UNKNOWN_FLOW": errors+=1
            else: other+=1
            rbuf=rbuf[32+n:]
    print("stalled after", stalled, "of", total)
    print("answers", errors, "of", total//32, "other", other)
else:
    s.sendall(fr(1,tok.encode())+fr(3,flow=fid))
    print(" ".join(str(t) for t,_ in frames(2)))
    total=6*1024*1024; chunk=16384
    pat=bytes((i*131+7)&255 for i in range(chunk))
    s.setblocking(False)
    out=b""; sent=0; seq=1; got=0; h_in=hashlib.sha256(); h_out=hashlib.sha256()
    rbuf=b""; end=time.time()+120
    while got<total and time.time()<end:
        for _ in range(4):  # the writer offers 4x what the reader takes
            if not out and sent<total:
                out=fr(5,pat,seq,fid); seq+=1; sent+=chunk; h_out.update(pat)
            if not out: break
            try:
                n=s.send(out); out=out[n:]
            except (ssl.SSLWantWriteError,ssl.SSLWantReadError,BlockingIOError): break
        time.sleep(0.002)   # the slow reader: at most 16 KiB per 2 ms
        try:
            d=s.recv(16384)
            if not d: break
            rbuf+=d
        except (ssl.SSLWantReadError,ssl.SSLWantWriteError,BlockingIOError): pass
        while len(rbuf)>=32:
            n=struct.unpack(">I",rbuf[4:8])[0]
            if len(rbuf)<32+n: break
            if rbuf[1]==5: h_in.update(rbuf[32:32+n]); got+=n
            rbuf=rbuf[32+n:]
    print("echoed",got,"equal" if h_in.digest()==h_out.digest() and got==total else "DIFFERENT")
' "$CA" "$DATA" "$ATOK" "$@"; }

F1=$(flow)
expect_match "alice opens a flow" '^[A-Za-z0-9_-]{22}$' "$F1"
OUT=$(raw split "$F1")
expect_eq "frames split at every byte: AUTH_OK then ATTACHED" "2 4" "$(printf '%s\n' "$OUT" | sed -n 1p)"
expect_eq "... the two DATA frames come back whole, in order" "split at every byte!" "$(printf '%s\n' "$OUT" | sed -n 2p)"
expect_eq "two DATA frames in one TLS record: both relayed" "two frames" "$(printf '%s\n' "$OUT" | sed -n 3p)"

# sequence numbers at the top of the 64-bit space, in steps inside the duplicate window: each
# new one relayed once, the repeat dropped, and the data plane goes on (the window's clearing
# loop once never ended at 2^64 - 1, which stopped the data-plane thread for every user)
F3=$(flow)
OUT=$(raw wrap "$F3")
expect_eq "sequence numbers up to 2^64 - 1: AUTH_OK then ATTACHED" "2 4" "$(printf '%s\n' "$OUT" | sed -n 1p)"
expect_eq "... each new one relayed once, the repeat dropped" "abcd" "$(printf '%s\n' "$OUT" | sed -n 2p)"

# a client that sends without reading what its frames are answered with: the server stops
# reading it once that output passes 1 MiB (the answers of 40 MiB of frames would be 72 MiB),
# and answers every frame once the client reads
RSS0=$(awk '/VmRSS/{print $2}' "/proc/$SG_PID/status")
OUT=$(raw answers "$F3")
RSS1=$(awk '/VmRSS/{print $2}' "/proc/$SG_PID/status")
expect_eq "a client that does not read its answers: AUTH_OK" "2" "$(printf '%s\n' "$OUT" | sed -n 1p)"
STALL=$(printf '%s\n' "$OUT" | sed -n 2p | awk '{print $3}')
expect_match "... the server stops reading it (it took ${STALL:-?} of 41943040 bytes)" '^ok$' "$([ -n "$STALL" ] && [ "$STALL" -lt 25165824 ] && echo ok)"
expect_eq "... and answers every frame once it reads" "answers 1310720 of 1310720 other 0" "$(printf '%s\n' "$OUT" | sed -n 3p)"
if [[ "$(ldd "$SG_BIN" 2>/dev/null)" == *libasan* ]]; then ok "... memory bound not judged under AddressSanitizer"; else
expect_match "... the server's memory stayed bounded (RSS grew < 32 MiB: ${RSS0:-?} -> ${RSS1:-?} kB)" '^ok$' "$([ -n "$RSS0" ] && [ -n "$RSS1" ] && [ $((RSS1 - RSS0)) -lt 32768 ] && echo ok)"
fi

F2=$(flow)
RSS0=$(awk '/VmRSS/{print $2}' "/proc/$SG_PID/status")
OUT=$(raw slow "$F2")
RSS1=$(awk '/VmRSS/{print $2}' "/proc/$SG_PID/status")
expect_eq "slow reader: AUTH_OK then ATTACHED" "2 4" "$(printf '%s\n' "$OUT" | sed -n 1p)"
expect_eq "slow reader: 6 MiB echoed back whole and in order (backpressure, no loss)" "echoed 6291456 equal" "$(printf '%s\n' "$OUT" | sed -n 2p)"
# (AddressSanitizer keeps freed memory in quarantine, so RSS says nothing there)
# (ldd's whole output first: with pipefail, `ldd | grep -q` fails when grep exits before ldd
# has written everything)
if [[ "$(ldd "$SG_BIN" 2>/dev/null)" == *libasan* ]]; then ok "... memory bound not judged under AddressSanitizer"; else
expect_match "... the server's memory stayed bounded meanwhile (RSS grew < 32 MiB: ${RSS0:-?} -> ${RSS1:-?} kB)" '^ok$' "$([ -n "$RSS0" ] && [ -n "$RSS1" ] && [ $((RSS1 - RSS0)) -lt 32768 ] && echo ok)"
fi
expect "the SEALDD server still serves" SG dd send --flow "$F1" --in "$T/alice.pw" --echo --token-cache "$T/alice.tokens"
sg_done
