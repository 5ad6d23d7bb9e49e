#!/usr/bin/env python3
"""Opens N TLS connections to HOST:PORT, completes every handshake, holds them idle, and waits
for a line on stdin (or SIGTERM) before closing them. Prints 'ready N' when all are open.
usage: idle_conns.py HOST PORT N CAFILE"""
import asyncio, resource, ssl, sys

async def main():
    host, port, n, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 1000)), hard))
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    sem = asyncio.Semaphore(100)
    conns, failed = [], 0

    async def one():
        nonlocal failed
        async with sem:
            try:
                conns.append(await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost"))
            except Exception:
                failed += 1

    await asyncio.gather(*(one() for _ in range(n)))
    print(f"ready {len(conns)} failed {failed}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for _, w in conns:
        w.close()

asyncio.run(main())
