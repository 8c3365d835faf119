"""The stampede figure: see bench/stampede, which starts Redis and cachegate and runs this."""

import asyncio
import os
import statistics
import sys
import time

import aiohttp

BASE = sys.argv[1]
CLIENTS = int(os.environ.get("CLIENTS", "500"))
RECOMPUTE = int(os.environ.get("RECOMPUTE_MS", "200")) / 1000
ROUNDS = int(os.environ.get("ROUNDS", "5"))
HIT_REQUESTS = int(os.environ.get("HIT_REQUESTS", "3000"))
JSON = {"content-type": "application/json"}


class Database:
    """The slow source of truth: counts its calls."""

    def __init__(self):
        self.calls = 0

    async def compute(self):
        self.calls += 1
        await asyncio.sleep(RECOMPUTE)
        return '{"report": [1, 2, 3]}'


async def plain_client(session, url, db):
    """Cache-aside without leases: every miss recomputes."""
    async with session.get(url) as r:
        if r.status == 200:
            return await r.text()
    value = await db.compute()
    async with session.put(url, data=value, headers=JSON) as r:
        assert r.status == 204, r.status
    return value


async def lease_client(session, url, db):
    """Cache-aside with a lease: one caller recomputes, the others wait for its fill."""
    while True:
        async with session.get(url, params={"lease": "5", "wait": "2000"}) as r:
            if r.status == 200:
                return await r.text()
            token = r.headers.get("Cache-Lease")
        if token:
            value = await db.compute()
            async with session.put(url, data=value, headers={**JSON, "Cache-Lease": token}) as r:
                if r.status in (204, 412):  # 412: someone else's write won; read it
                    if r.status == 204:
                        return value
                    continue
                raise RuntimeError(f"fill answered {r.status}")
        # 404 without a lease after waiting: ask again.


async def stampede(session, client, key):
    db = Database()
    url = f"{BASE}/v1/cache/{key}"
    started = time.perf_counter()

    async def timed():
        await client(session, url, db)
        return time.perf_counter() - started

    times = sorted(await asyncio.gather(*(timed() for _ in range(CLIENTS))))
    return db.calls, times


def pct(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


async def hit_latency(session, query):
    url = f"{BASE}/v1/cache/hit-key"
    samples = []
    for _ in range(HIT_REQUESTS):
        t = time.perf_counter()
        async with session.get(url, params=query) as r:
            await r.read()
            assert r.status == 200
        samples.append(time.perf_counter() - t)
    samples.sort()
    return statistics.median(samples), pct(samples, 0.99)


async def main():
    connector = aiohttp.TCPConnector(limit=CLIENTS + 10)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        print(f"{CLIENTS} clients, recomputation {RECOMPUTE * 1000:.0f} ms, {ROUNDS} rounds each\n")
        print("| mode | recomputations per stampede | p50 time to value | p99 time to value |")
        print("|---|---:|---:|---:|")
        for name, client in (("without leases", plain_client), ("lease=5&wait=2000", lease_client)):
            calls, p50s, p99s = [], [], []
            for round_ in range(ROUNDS):
                key = f"stampede:{name[:5]}:{round_}:{time.time_ns()}"
                n, times = await stampede(session, client, key)
                calls.append(n)
                p50s.append(pct(times, 0.5))
                p99s.append(pct(times, 0.99))
            print(
                f"| {name} | {min(calls)}-{max(calls)} (median {statistics.median(calls):.0f}) "
                f"| {statistics.median(p50s) * 1000:.0f} ms | {statistics.median(p99s) * 1000:.0f} ms |"
            )
        async with session.put(f"{BASE}/v1/cache/hit-key", data="[1, 2, 3]", headers=JSON) as r:
            assert r.status == 204
        print(f"\nplain hit, {HIT_REQUESTS} sequential requests on one connection:\n")
        print("| request | median latency | p99 latency |\n|---|---:|---:|")
        for _ in range(2):  # the second pass is the one reported; the first warms up
            rows = []
            for label, query in (("GET", {}), ("GET ?lease=5", {"lease": "5"}),
                                 ("GET ?lease=5&wait=2000", {"lease": "5", "wait": "2000"})):
                med, p99 = await hit_latency(session, query)
                rows.append(f"| {label} | {med * 1e6:.0f} µs | {p99 * 1e6:.0f} µs |")
        print("\n".join(rows))


asyncio.run(main())
