#!/usr/bin/env bash
# SEALDD-UU user plane edges of the data plane's in-place frame parsing and direct TLS I/O
# (docs/sdd-protocol.md §3): frames split at every byte boundary (each byte its own TLS record,
# so every header and payload arrives in pieces), several frames in one record, and
# backpressure with a slow reader (HWM/LWM both ways: what is echoed comes back whole and in
# order, and the server's memory stays bounded while the reader lags), and the output budget of
# one user's channels together (sdd.user_output_mib, shared out as each channel's mark).
. "$(dirname "$0")/lib/common.sh"

ECHO=$(free_port)
# a channel whose output makes no write progress for 10 s is closed ("stall" below: long
# enough for "answers", whose client stops reading for a while under the sanitizers too); clients
# are sent to "localhost" (sdd.data_advertise), whose certificate the data endpoint has; the
# output queued for one user's channels together is 1 MiB ("budget" below; a user's only
# channel keeps its 1 MiB, as with any budget)
sg_sdd_start "  channel_stall_s: 10
  user_output_mib: 1
  data_advertise: localhost"
trap 'kill "$ECHO_PID" 2>/dev/null; sg_cleanup' EXIT
sg_echo_start "$ECHO"
SG_SDD_MORE="--val-service v2x-u" sg_sdd_provision "$ECHO" alice
ATOK=$(py 'import json,sys;print(json.load(open(sys.argv[1]))["access_token"])' "$T/alice.tokens")
flow() { jget "$(SG dd open --service v2x --token-cache "$T/alice.tokens")" sddFlowId; }

# A raw TLS 1.3 SEALDD client. split: AUTH, ATTACH and two DATA frames, one byte per TLS record
# (a pause after each, so the server's reads see every boundary); then two DATA frames in one
# record. slow: 6 MiB in 16 KiB DATA frames, offered 4x faster than the echo is read back.
# budget: channels of one user, one flow each (the flow ids after the mode), sharing
# sdd.user_output_mib; ADMIN_PORT names the admin listener, whose /metrics it reads.
raw() { py '
import socket,ssl,struct,sys,time,base64,select,hashlib
ca,port,tok,mode,fid=sys.argv[1],int(sys.argv[2]),sys.argv[3],sys.argv[4],sys.argv[5]
fid=base64.urlsafe_b64decode(fid+"==")
ctx=ssl.create_default_context(cafile=ca); ctx.minimum_version=ssl.TLSVersion.TLSv1_3
raw=socket.socket()
if mode=="stall":  # a small receive window from the first segment on
    raw.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,4096)
raw.connect(("127.0.0.1",port))
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
elif mode=="seq":
    # the sequence number of ATTACHED: the next uplink one the flow takes
    s.sendall(fr(1,tok.encode())+fr(3,flow=fid)); s.settimeout(10); got=[]
    while len(got)<2:
        while len(buf)>=32 and len(buf)>=32+struct.unpack(">I",buf[4:8])[0]:
            got.append((buf[1],struct.unpack(">Q",buf[8:16])[0])); buf=buf[32+struct.unpack(">I",buf[4:8])[0]:]
        if len(got)>=2: break
        d=s.recv(65536)
        if not d: break
        buf+=d
    print(" ".join("%d %d"%(t,q) for t,q in got if t!=2))
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
elif mode=="pipelined":
    # AUTH, ATTACH and 50,000 bytes of DATA in one write: the server reads a channel that
    # has not authenticated into a buffer of one AUTH frame, then grows it for the rest
    data=bytes((i*7+3)%251 for i in range(50000))
    s.sendall(fr(1,tok.encode())+fr(3,flow=fid)+fr(5,data,1,fid))
    got=b""; end=time.time()+10
    while len(got)<len(data) and time.time()<end:
        for t,p in frames(1,2):
            if t==5: got+=p
    print("echoed", len(got), "equal" if got==data else "different")
elif mode=="sendonly":
    # flow A attached send-only, flow B to receive, on one channel. The DATA of A is echoed by
    # the VAL endpoint, nobody receives it, so the endpoint blocks writing and stops reading,
    # and the relay of A holds the input of the channel: the DATA of B waits behind. A must end
    # (VAL_SERVER_STALLED) after channel_stall_s without relay progress, and B goes on.
    fa=fid; fb=base64.urlsafe_b64decode(sys.argv[6]+"==")
    s.sendall(fr(1,tok.encode())+fr(3,b"",1,fa)+fr(3,flow=fb))
    print(" ".join(str(t) for t,_ in frames(3)))
    s.setblocking(False); pl=b"s"*16384; seq=1; out=fr(5,pl,seq,fa); last=time.time(); t0=last
    while time.time()-last<2 and time.time()-t0<30:
        try: s.send(out); seq+=1; out=fr(5,pl,seq,fa); last=time.time()
        except (ssl.SSLWantWriteError,ssl.SSLWantReadError,BlockingIOError): time.sleep(0.01)
        except OSError as e: print("send:", e); break
    # the frame the last try could not send goes first (a TLS write is retried as it was)
    held=time.time(); todo=[out,fr(5,b"b-probe",1,fb)]; ended=None; echo=b""; rbuf=b""
    while time.time()-held<40 and not (ended and echo):
        if todo:
            try: s.send(todo[0]); todo.pop(0)
            except (ssl.SSLWantWriteError,ssl.SSLWantReadError,BlockingIOError): pass
            except OSError as e: print("probe:", e); break
        try:
            d=s.recv(1<<16)
            if not d: break
            rbuf+=d
        except (ssl.SSLWantReadError,ssl.SSLWantWriteError,BlockingIOError): time.sleep(0.01)
        except OSError as e: print("recv:", e); break
        while len(rbuf)>=32 and len(rbuf)>=32+struct.unpack(">I",rbuf[4:8])[0]:
            n=struct.unpack(">I",rbuf[4:8])[0]; t=rbuf[1]; fl=rbuf[16:32]; p=rbuf[32:32+n]; rbuf=rbuf[32+n:]
            if t==7 and fl==fa and ended is None: ended=(p.split(b":")[0].decode(),time.time()-held)
            if t==5 and fl==fb: echo+=p
    print("A", ended[0] if ended else "open", "B", echo.decode(errors="replace") or "-")
    print("%.1f s" % (ended[1] if ended else -1))
elif mode=="preauth":
    # a DATA header before AUTH, its payload never sent: refused from the header alone
    h=fr(5,b"",1,fid)
    s.sendall(h[:4]+struct.pack(">I",60000)+h[8:])
    print(" ".join("%d %s"%(t,p.split(b":")[0].decode()) for t,p in frames(1,3)))
elif mode=="attach":
    s.sendall(fr(1,tok.encode())+fr(3,flow=fid))
    print(" ".join(str(t) if t!=8 else "8 "+p.split(b":")[0].decode() for t,p in frames(2)))
elif mode=="early":
    # ATTACH and 1.2 MB of DATA at once, before ATTACHED: the data waits for the relay
    # handshake, past HWM, so the channel stops reading; the completed relay handshake
    # drains it and the channel must read on (it once stayed stopped for good)
    s.sendall(fr(1,tok.encode()))
    print(" ".join(str(t) for t,_ in frames(1)))
    pl=b"y"*60000; got=0
    def take(want,secs):
        global got
        end=time.time()+secs
        while got<want and time.time()<end:
            for t,p in frames(1,0.2):
                if t==5: got+=len(p)
    s.sendall(fr(3,flow=fid)+b"".join(fr(5,pl,i,fid) for i in range(1,21)))
    take(20*len(pl),10)
    try:
        for i in range(21,41):
            s.settimeout(5); s.sendall(fr(5,pl,i,fid)); take(got+1,0.05)
    except OSError: pass
    take(40*len(pl),10)
    print("echoed",got,"of",40*len(pl))
elif mode=="urllc":
    # two channels on a URLLC flow; A never reads, so the echo fills its output past HWM and
    # the relay stops reading for both; then A resets: B must get everything (the relay once
    # stayed stopped for good when the channel that held it back went away)
    ar=socket.socket(); ar.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,4096)
    ar.connect(("127.0.0.1",port))
    a=ctx.wrap_socket(ar,server_hostname="localhost")
    a.sendall(fr(1,tok.encode())+fr(3,flow=fid))
    s.sendall(fr(1,tok.encode()))
    frames(1)
    time.sleep(0.5)
    s.sendall(fr(3,flow=fid))
    print(" ".join(str(t) for t,_ in frames(1)))
    total=16*1024*1024; pl=bytes(range(256))*64; seq=0; sent=0; got=0
    h_in=hashlib.sha256(); h_out=hashlib.sha256(); out=b""
    def pump(secs,stop_when_stuck):
        global out,sent,seq,got,buf
        end=time.time()+secs; last=time.time()
        s.setblocking(False)
        while got<total and time.time()<end:
            if not out and sent<total:
                seq+=1; out=fr(5,pl,seq,fid); sent+=len(pl); h_out.update(pl)
            try:
                if out: out=out[s.send(out):]
            except (ssl.SSLWantWriteError,ssl.SSLWantReadError,BlockingIOError): pass
            try:
                d=s.recv(65536)
                if not d: break
                buf+=d
            except (ssl.SSLWantReadError,ssl.SSLWantWriteError,BlockingIOError): select.select([s],[],[],0.005)
            while len(buf)>=32:
                n=struct.unpack(">I",buf[4:8])[0]
                if len(buf)<32+n: break
                if buf[1]==5: h_in.update(buf[32:32+n]); got+=n; last=time.time()
                buf=buf[32+n:]
            if stop_when_stuck and time.time()-last>1.5: break
    pump(20,True)
    print("stuck" if got<total else "not stuck", "with A not reading")
    a.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack("ii",1,0)); a.close()
    pump(20,False)
    print("after A reset: echoed",got,"of",total,"equal" if h_in.digest()==h_out.digest() and got==total else "DIFFERENT")
elif mode=="relaybudget":
    # one channel, the flows after the mode attached on it; the VAL endpoint (ECHO_PID) is
    # stopped, and DATA goes to the flows in turn until the server takes nothing for 1.5 s:
    # the relays hold what they could not send. Printed: the largest relay gauge over 1 s.
    import os,signal,urllib.request
    def gauge(name):
        m=urllib.request.urlopen("http://127.0.0.1:%s/metrics"%os.environ["ADMIN_PORT"],timeout=5).read().decode()
        return max([int(l.split()[1]) for l in m.splitlines() if l.startswith(name+" ")]+[-1])
    fids=[base64.urlsafe_b64decode(x+"==") for x in sys.argv[5:]]
    s.sendall(fr(1,tok.encode())+b"".join(fr(3,flow=f) for f in fids))
    print("attached", sum(1 for t,_ in frames(1+len(fids),30) if t==4), "of", len(fids))
    echo=int(os.environ["ECHO_PID"]); os.kill(echo,signal.SIGSTOP)
    try:
        s.setblocking(False); pl=b"q"*16384; seq=[1]*len(fids); k=0; last=time.time()
        out=fr(5,pl,1,fids[0])
        while time.time()-last<1.5 and time.time()-last<8:
            try:
                s.send(out); seq[k]+=1; k=(k+1)%len(fids); out=fr(5,pl,seq[k],fids[k]); last=time.time()
            except (ssl.SSLWantWriteError,ssl.SSLWantReadError,BlockingIOError): time.sleep(0.01)
        most=-1; end=time.time()+1
        while time.time()<end: most=max(most,gauge("sealguard_sdd_relay_queued_bytes")); time.sleep(0.1)
        print("relays", most)
    finally:
        os.kill(echo,signal.SIGCONT)
elif mode=="budget":
    # the channels share 1 MiB (sdd.user_output_mib): 128 KiB each for 8. bulk: each echoes
    # 2 MiB while it reads. held: each sends without reading until the server takes nothing for
    # 1.5 s; the output queued for them then (sealguard_sdd_output_queued_bytes, the largest of
    # 1 s of samples) is printed. alone: all but the first reset: its share is the whole 1 MiB
    # again, and its relay, held at 128 KiB, reads on. Then the first reads what it was sent.
    import os,urllib.request
    def gauge():
        m=urllib.request.urlopen("http://127.0.0.1:%s/metrics"%os.environ["ADMIN_PORT"],timeout=5).read().decode()
        return max([int(l.split()[1]) for l in m.splitlines() if l.startswith("sealguard_sdd_output_queued_bytes ")]+[-1])
    pl=bytes((i*131+7)&255 for i in range(16384))
    class Ch:
        def __init__(self,fid):
            r=socket.socket(); r.setsockopt(socket.SOL_SOCKET,socket.SO_RCVBUF,16384)
            r.connect(("127.0.0.1",port)); r.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)
            self.s=ctx.wrap_socket(r,server_hostname="localhost"); self.fid=fid
            self.out=b""; self.seq=0; self.sent=0; self.got=0; self.rbuf=b""; self.types=[]
            self.h_out=hashlib.sha256(); self.h_in=hashlib.sha256()
            self.s.sendall(fr(1,tok.encode())+fr(3,flow=fid)); self.s.setblocking(False)
        def send(self,limit):
            if not self.out and self.sent<limit:
                self.seq+=1; self.out=fr(5,pl,self.seq,self.fid); self.sent+=len(pl); self.h_out.update(pl)
            if not self.out: return 0
            try: n=self.s.send(self.out)
            except (ssl.SSLWantWriteError,ssl.SSLWantReadError,BlockingIOError): return 0
            self.out=self.out[n:]; return n
        def recv(self):
            try: d=self.s.recv(1<<16)
            except (ssl.SSLWantReadError,ssl.SSLWantWriteError,BlockingIOError): return 0
            if not d: raise EOFError("channel closed")
            self.rbuf+=d
            while len(self.rbuf)>=32:
                n=struct.unpack(">I",self.rbuf[4:8])[0]
                if len(self.rbuf)<32+n: break
                if self.rbuf[1]==5: self.h_in.update(self.rbuf[32:32+n]); self.got+=n
                else: self.types.append(self.rbuf[1])
                self.rbuf=self.rbuf[32+n:]
            return len(d)
        def whole(self): return self.got==self.sent and self.h_in.digest()==self.h_out.digest()
    def pump(chs,limit,secs,done):
        end=time.time()+secs
        while not done() and time.time()<end:
            moved=0
            for c in chs: moved+=c.send(limit)+c.recv()
            if not moved: select.select([c.s for c in chs],[],[],0.005)
    chs=[Ch(base64.urlsafe_b64decode(x+"==")) for x in sys.argv[5:]]
    pump(chs,0,10,lambda: all(c.types[:2]==[2,4] for c in chs))
    print("attached",sum(c.types[:2]==[2,4] for c in chs),"of",len(chs))
    B=2<<20
    pump(chs,B,90,lambda: all(c.got>=B for c in chs))
    print("bulk: whole on",sum(c.got==B and c.whole() for c in chs),"of",len(chs))
    last=start=time.time()
    while time.time()-last<1.5 and time.time()-start<8:
        if sum(c.send(1<<40) for c in chs): last=time.time()
        else: time.sleep(0.005)
    held=-1; end=time.time()+1
    while time.time()<end: held=max(held,gauge()); time.sleep(0.1)
    print("held",held)
    for c in chs[1:]:
        c.s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack("ii",1,0)); c.s.close()
    a=chs[0]; alone=-1; time.sleep(0.6); end=time.time()+3  # (the gauge: every 250 ms)
    while alone<=1<<20 and time.time()<end: alone=gauge(); time.sleep(0.1)
    print("alone",alone)
    pump([a],a.sent,90,lambda: a.got>=a.sent)
    print("then it reads: echoed",a.got,"of",a.sent,"whole" if a.whole() else "DIFFERENT")
elif mode=="detachflood":
    # DETACH frames of a flow this channel never attached (ignored, no answer, so no
    # backpressure ever holds them), 1 MiB per write, for 6 s, never reading
    s.sendall(fr(1,tok.encode()))
    print(" ".join(str(t) for t,_ in frames(1)), flush=True)
    block=fr(6,flow=bytes(range(1,17)))*32768; n=0; end=time.time()+6
    while time.time()<end: s.sendall(block); n+=1
    print("flooded", n, "MiB")
elif mode=="rtt":
    # connect, AUTH, ATTACH, then 1 KiB round trips for 3 s: the longest wait for any answer
    t0=time.time()
    s.sendall(fr(1,tok.encode())+fr(3,flow=fid)); worst=time.time()-t0
    got=[t for t,_ in frames(2,30)]; worst=time.time()-t0; n=0; end=time.time()+3
    while got==[2,4] and time.time()<end:
        n+=1; t=time.time(); s.sendall(fr(5,b"r"*1024,n,fid)); d=b""
        while len(d)<1024:
            f=frames(1,30)
            if not f: break
            d+=f[0][1]
        if len(d)!=1024: got=["lost"]; break
        worst=max(worst,time.time()-t)
    print(" ".join(str(t) for t in got), "round trips", n, "longest wait %d ms" % (worst*1000))
elif mode=="stall":
    # the client never reads: the echo fills the channel output; with no write progress
    # for channel_stall_s the server closes the channel
    s.sendall(fr(1,tok.encode())+fr(3,flow=fid))
    print(" ".join(str(t) for t,_ in frames(2)))
    # it sends until the server takes nothing for 2 s: every buffer on the way to the echo
    # endpoint and back is full, the endpoint blocked writing and no longer reading, so the
    # relay uplink makes no progress either (backpressure from this side, not a stall of the
    # endpoint: the flow must live on)
    s.setblocking(False); sent=0; pl=b"z"*16384; last=time.time(); end=last+20; seq=1
    out=fr(5,pl,seq,fid)
    while time.time()-last<2 and time.time()<end:
        try:
            s.send(out); sent+=16384; seq+=1; out=fr(5,pl,seq,fid); last=time.time()
        except (ssl.SSLWantWriteError,ssl.SSLWantReadError,BlockingIOError): time.sleep(0.01)
        except OSError: break  # closed meanwhile: told below
    time.sleep(13)
    s.setblocking(True); s.settimeout(5); state="open"
    try:
        while s.recv(65536): pass
        state="closed"
    except socket.timeout: state="open"
    except OSError: state="closed"
    print(state)
    print("%d bytes in %.1f s" % (sent, last-(end-20)))
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
expect_match "ddServerConnInfo names the advertised host (sdd.data_advertise)" "\"host\":\"localhost\",\"port\":$DATA" "$(SG dd open --service v2x --token-cache "$T/alice.tokens")"
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
expect_eq "... attached again: ATTACHED names 2^64 - 1 as the next one (not 0: no wrap)" "4 18446744073709551615" "$(raw seq "$F3")"

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
# a DATA header before AUTH: refused from the header alone, its 60,000-byte payload not awaited
OUT=$(raw preauth "$F2")
expect_eq "a DATA header before AUTH: ERROR UNAUTHENTICATED at once" "8 UNAUTHENTICATED" "$OUT"
expect_eq "AUTH, ATTACH and 50,000 bytes of DATA in one write: echoed whole (the input buffer grows after AUTH)" "echoed 50000 equal" "$(raw pipelined "$(flow)")"

# DATA sent with ATTACH, before ATTACHED, past the relay's high-water mark: it flows on once
# the relay is up (the channel once stopped reading for good)
F4=$(flow)
OUT=$(raw early "$F4")
expect_eq "DATA before ATTACHED past 1 MiB: AUTH_OK" "2" "$(printf '%s\n' "$OUT" | sed -n 1p)"
expect_eq "... all of it and what follows is echoed" "echoed 2400000 of 2400000" "$(printf '%s\n' "$OUT" | sed -n 2p)"

# one client keeping its socket full of frames that need no answer does not hold the data plane:
# another channel connects, authenticates, attaches and gets its echoes meanwhile (the event loop
# polls again after 32 callbacks; before, the flooded channel ran again in the same pass, and the
# other waited for the whole flood)
raw detachflood AAAAAAAAAAAAAAAAAAAAAA >"$T/flood.out" &
FP=$!
for _ in $(seq 1 50); do [ -s "$T/flood.out" ] && break; sleep 0.1; done
sleep 0.5
OUT=$(raw rtt "$(flow)")
wait "$FP"
expect_match "a channel flooding DETACH frames (AUTH_OK first) ..." '^2' "$(head -1 "$T/flood.out")"
expect_match "... meanwhile another channel connects, attaches and echoes, no wait over 2 s ($OUT; $(tail -1 "$T/flood.out"))" '^2 4 round trips [1-9][0-9]* longest wait ([0-9]{1,3}|1[0-9]{3}) ms$' "$OUT"

# a client that stops reading: its channel is closed after channel_stall_s (10 s) without write
# progress, counted in /metrics; the flow lives on and can be attached again (the relay, held
# back by that channel, saw no write progress either: not the VAL endpoint's stall)
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v k="$1" '$1==k{print $2}'; }
F5=$(flow)
OUT=$(raw stall "$F5")
expect_eq "a client that never reads: AUTH_OK then ATTACHED" "2 4" "$(printf '%s\n' "$OUT" | sed -n 1p)"
expect_eq "... its channel is closed after 10 s without write progress" "closed" "$(printf '%s\n' "$OUT" | sed -n 2p)"
if [ "$(printf '%s\n' "$OUT" | sed -n 2p)" != closed ]; then # what to look at if it is not
	echo "# the client sent $(printf '%s\n' "$OUT" | sed -n 3p); the server's last channel and flow lines:"
	grep -E 'sdd: (data channel|flow)' "$T/server.log" | tail -5 | sed 's/^/# /'
fi
expect_eq "... counted in /metrics" "1" "$(metric sealguard_sdd_channels_stalled_total)"
RELEASED='sealguard_sdd_flow_ends_total{reason="FLOW_RELEASED"}'
N0=$(metric "$RELEASED")
expect "a flow opened and released before any ATTACH" SG dd close --flow "$(flow)" --token-cache "$T/alice.tokens"
sleep 0.6 # the data plane's sweep (250 ms) ends released flows
expect_eq "... is not counted as a data-plane end in /metrics (FLOW_RELEASED stays $N0)" "$N0" "$(metric "$RELEASED")"
expect_eq "... the flow can be attached again" "2 4" "$(raw attach "$F5")"

# a send-only flow whose VAL endpoint echoes: nobody takes the echo, the endpoint stops reading,
# and the relay holds the channel's input; the flow ends after channel_stall_s (10 s) without
# relay progress, and the other flow on the channel goes on (it waited until the flow's lifetime)
OUT=$(raw sendonly "$(flow)" "$(flow)")
expect_eq "send-only flow A and flow B on one channel: AUTH_OK, ATTACHED, ATTACHED" "2 4 4" "$(printf '%s
' "$OUT" | sed -n 1p)"
expect_eq "... A, held by its VAL endpoint, ends VAL_SERVER_STALLED; B's DATA behind it is echoed" "A VAL_SERVER_STALLED B b-probe" "$(printf '%s
' "$OUT" | sed -n 2p)"
expect_match "... within 25 s of the channel being held ($(printf '%s
' "$OUT" | sed -n 3p))" '^([0-9]|1[0-9]|2[0-4])\.[0-9] s$' "$(printf '%s
' "$OUT" | sed -n 3p)"

# URLLC: one channel of the two stops reading, then resets; the other gets everything
UVT=$(jget "$("${C[@]}" "${VAL[@]}" -d grant_type=client_credentials -d resource=sealguard:sdd -d client_id=v2x-app "https://localhost:$S/oauth2/token")" access_token)
UTR="{\"valServiceId\":\"v2x-u\",\"valServerConnInfo\":{\"ipv4Addr\":\"127.0.0.1\",\"port\":$ECHO}}"
expect_match "request-trans urllc for v2x-u" '"ddServerConnInfo"' "$("${C[@]}" "${VAL[@]}" -H "Authorization: Bearer $UVT" -H 'Content-Type: application/json' -d "$UTR" "https://localhost:$S/sdd-trans/v1/urllc/request-trans")"
F6=$(jget "$(SG dd open --service v2x-u --token-cache "$T/alice.tokens")" sddFlowId)
OUT=$(raw urllc "$F6")
expect_eq "URLLC, channel A never reads: B attached" "4" "$(printf '%s\n' "$OUT" | sed -n 1p)"
expect_eq "... the relay waits for A (HWM), so B is held too" "stuck with A not reading" "$(printf '%s\n' "$OUT" | sed -n 2p)"
expect_eq "... A resets: B gets all 16 MiB, whole and in order" "after A reset: echoed 16777216 of 16777216 equal" "$(printf '%s\n' "$OUT" | sed -n 3p)"

# the output queued for one user's channels together is bounded by sdd.user_output_mib (1 MiB
# here): each of the user's 8 channels may queue 128 KiB before its relay stops reading from the
# VAL server (G4; it was 1 MiB per channel, 8 MiB for the user); bulk transfers on all of them
# are whole; when 7 go, the last one's share is the whole budget again and its held relay reads on
FB=(); for _ in 1 2 3 4 5 6 7 8; do FB+=("$(flow)"); done
OUT=$(ADMIN_PORT=$ADMIN raw budget "${FB[@]}")
expect_eq "8 channels of one user (sdd.user_output_mib: 1): AUTH_OK then ATTACHED on each" "attached 8 of 8" "$(printf '%s\n' "$OUT" | sed -n 1p)"
expect_eq "... each echoes 2 MiB whole and in order with its 128 KiB share" "bulk: whole on 8 of 8" "$(printf '%s\n' "$OUT" | sed -n 2p)"
HELD=$(printf '%s\n' "$OUT" | sed -n 3p | awk '$1=="held"{print $2}')
# over 8 x 128 KiB (every relay was held back), at most that plus one 32 KiB frame per channel
expect_match "... none reads: the server queues 1 MiB + at most a frame per channel for the user (${HELD:-?} bytes)" '^ok$' "$([ -n "$HELD" ] && [ "$HELD" -gt 1048576 ] && [ "$HELD" -le 1310720 ] && echo ok)"
ALONE=$(printf '%s\n' "$OUT" | sed -n 4p | awk '$1=="alone"{print $2}')
# (past its old share and frame, 160 KiB; how far depends on what the pipeline to the VAL
# server still holds, whose relay queue has its own share of the budget)
expect_match "... 7 reset: the last one's share is 1 MiB again and its relay reads on (${ALONE:-?} bytes queued)" '^ok$' "$([ -n "$ALONE" ] && [ "$ALONE" -gt 163840 ] && [ "$ALONE" -le 1081344 ] && echo ok)"
expect_match "... then it reads: all it sent is echoed, whole and in order" '^then it reads: echoed ([0-9]+) of \1 whole$' "$(printf '%s\n' "$OUT" | sed -n 5p)"

# the relays toward the VAL server share the same budget again, by attachment: 16 flows on one
# channel with the endpoint stopped queue at most 16 x (64 KiB + a 16 KiB frame) in all (G4; each
# relay could queue 1 MiB, 16 MiB for the user)
FR=(); for _ in $(seq 1 16); do FR+=("$(flow)"); done
OUT=$(ADMIN_PORT=$ADMIN ECHO_PID=$ECHO_PID raw relaybudget "${FR[@]}")
expect_eq "16 flows on one channel: ATTACHED for each" "attached 16 of 16" "$(printf '%s
' "$OUT" | sed -n 1p)"
RQ=$(printf '%s
' "$OUT" | sed -n 2p | awk '$1=="relays"{print $2}')
expect_match "... VAL endpoint stopped: the relays hold 64 KiB and a frame each at most (${RQ:-?} bytes; sdd.user_output_mib: 1)" '^ok$' "$([ -n "$RQ" ] && [ "$RQ" -ge 65536 ] && [ "$RQ" -le 1310720 ] && echo ok)"

expect "the SEALDD server still serves" SG dd send --flow "$F1" --in "$T/alice.pw" --echo --token-cache "$T/alice.tokens"

# D2 when the relay is opened: a flow created while the VAL server was registered, attached
# for the first time after it was removed, is ended; no user data reaches that VAL server
F7=$(flow)
expect "valserver remove v2x-app" SG valserver remove v2x-app
sleep 1.2 # the registry snapshot follows the store within 500 ms
expect_eq "first ATTACH after the VAL server was removed: ERROR TRANSMISSION_NOT_REQUESTED" "2 8 TRANSMISSION_NOT_REQUESTED" "$(raw attach "$F7")"
expect_eq "... and the flow is gone" "2 8 UNKNOWN_FLOW" "$(raw attach "$F7")"
sg_done
