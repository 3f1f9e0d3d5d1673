"""Smoke-check the order service without catga-bench: publish N OrderPlaced (through JetStream,
or POST /orders/async), read orders.confirmed back and count what came out per order.

    python smoke.py [-n 5000] [--rate 1000] [--via jetstream|http-async] [--nats-url URL]
                    [--http-url URL]

Needs the service running (``node service.js``) and nats-py. Prints one JSON object: sent,
confirmed (distinct orders), missing, duplicates, without_status, bad_header, unexpected,
throughput (confirmed orders/s from the first publish to the last confirmation), the longest gap
between two confirmations and the median and largest publish-to-confirmation latency (ms; the
gap and the largest latency reach ~1000 under ORDER_SERVICE_DEFECT=stall_1s_every_5s, with a
paced run longer than 5 s, e.g. ``-n 12000 --rate 1000``).
Exit code 0 when every order was confirmed exactly once, well-formed, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import time
import urllib.parse
import uuid
from collections import Counter
from typing import Any

import nats

HEADER = "Catga-Correlation-Id"


async def publish_jetstream(nc: Any, ids: list[str], rate: float, sent: dict[str, float],
                            window: int = 500) -> None:
    """Publish one OrderPlaced per id through JetStream and await the stream's acks.

    ``rate`` orders/s (paced in 10 ms ticks; 0 = as fast as acks come back, ``window`` at
    once); ``sent`` gets each id's publish time (monotonic s).
    """
    js = nc.jetstream()
    batch_size = max(1, round(rate / 100)) if rate else window
    start_t = time.monotonic()
    pending: list[asyncio.Task[Any]] = []
    for start in range(0, len(ids), batch_size):
        if rate:
            await asyncio.sleep(max(0.0, start_t + start / rate - time.monotonic()))
        for i, cid in enumerate(ids[start:start + batch_size], start):
            sent[cid] = time.monotonic()
            pending.append(asyncio.ensure_future(js.publish(
                "orders.placed", json.dumps({"sku": f"sku-{i}", "quantity": 1 + i % 3}).encode(),
                headers={HEADER: cid})))
        if not rate:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


def post_async(url: str, ids: list[str], sent: dict[str, float]) -> None:
    """POST one OrderPlaced per id to ``url`` (…/orders/async) over one keep-alive connection.

    Raises RuntimeError on any answer but 202.
    """
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80)
    for i, cid in enumerate(ids):
        body = json.dumps({"sku": f"sku-{i}", "quantity": 1 + i % 3})
        sent[cid] = time.monotonic()
        conn.request("POST", parts.path, body,
                     {"Content-Type": "application/json", HEADER: cid})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 202:
            raise RuntimeError(f"POST {url}: {resp.status}")
    conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Publish, collect until ``--idle-s`` without a new confirmation, and count."""
    run_id = uuid.uuid4().hex[:8]
    ids = [f"{run_id}.orders.{i}" for i in range(args.n)]
    wanted = set(ids)
    seen: Counter[str] = Counter()
    without_status = bad_header = unexpected = 0
    stamps: list[float] = []
    sent: dict[str, float] = {}
    latencies: list[float] = []

    nc = await nats.connect(args.nats_url)

    async def on_confirmed(msg: Any) -> None:
        nonlocal without_status, bad_header, unexpected
        stamps.append(time.monotonic())
        body = json.loads(msg.data)
        cid = (msg.headers or {}).get(HEADER)
        if body.get("order_id") not in wanted:
            if str(body.get("order_id", "")).startswith(run_id):
                unexpected += 1
            return  # someone else's traffic on the shared subject
        seen[body["order_id"]] += 1
        if seen[body["order_id"]] == 1:
            latencies.append(stamps[-1] - sent.get(body["order_id"], stamps[-1]))
        if cid != body["order_id"]:
            bad_header += 1
        if body.get("status") != "confirmed":
            without_status += 1

    await nc.subscribe("orders.confirmed", cb=on_confirmed)
    await nc.flush()
    started = time.monotonic()
    if args.via == "jetstream":
        await publish_jetstream(nc, ids, args.rate, sent)
    else:
        await asyncio.to_thread(post_async, args.http_url.rstrip("/") + "/orders/async", ids, sent)
    published = time.monotonic()
    last_count = -1
    while len(stamps) != last_count:  # wait until the confirmations stop coming
        last_count = len(stamps)
        await asyncio.sleep(args.idle_s)
    await nc.close()

    ours = sorted(stamps)
    latencies.sort()
    gaps = [b - a for a, b in itertools.pairwise(ours)]
    end = ours[-1] if ours else published
    return {
        "sent": args.n,
        "via": args.via,
        "publish_s": round(published - started, 3),
        "confirmed": len(seen),
        "missing": len(wanted) - len(seen),
        "duplicates": sum(c - 1 for c in seen.values() if c > 1),
        "without_status": without_status,
        "bad_header": bad_header,
        "unexpected": unexpected,
        "throughput_per_s": round(len(seen) / max(end - started, 1e-9)),
        "max_gap_ms": round(max(gaps, default=0.0) * 1000),
        "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000) if latencies else None,
        "latency_max_ms": round(latencies[-1] * 1000) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=5000, help="orders to send")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="orders/s through JetStream (0: as fast as possible)")
    parser.add_argument("--via", choices=["jetstream", "http-async"], default="jetstream")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--http-url", default="http://127.0.0.1:8085")
    parser.add_argument("--idle-s", type=float, default=3.0,
                        help="stop collecting after this long without a confirmation")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result))
    clean = result["confirmed"] == args.n and not any(
        result[k] for k in ("duplicates", "without_status", "bad_header", "unexpected"))
    raise SystemExit(0 if clean else 1)


if __name__ == "__main__":
    main()
