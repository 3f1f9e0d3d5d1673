"""An order service, as a team might run it behind Redis: it consumes the stream
``orders:placed`` in the consumer group ``order-service`` and, for each order, appends an
``OrderConfirmed`` entry to ``orders:confirmed`` carrying the order's correlation id.
catga-bench tests it as a black box from asyncapi.yaml alone.

    python service.py [--redis-url redis://127.0.0.1:6379]

The wire (docs/sut.md, "Redis Streams"): each entry's field ``payload`` holds the JSON payload;
the input's correlation id is the field ``Catga-Correlation-Id``; the confirmation carries it in
its payload (``order_id``).

At-least-once: an entry is acknowledged (``XACK``) only after its confirmation was written.
Each process is a consumer of its own name, and claims (``XAUTOCLAIM``) every entry pending
for more than 2 s, so what a killed process read but never acknowledged is handled by the next.

Seeded defects (environment ``ORDER_SERVICE_DEFECT``), to see the gate catch each one:
``drop_1pct`` (confirms nothing for 1 order in 100), ``dup_1pct`` (confirms 1 in 100 twice),
``bad_schema_1pct`` (1 in 100 confirmations lack their ``status``). ``ORDER_SERVICE_WORK_MS``
(default 0) makes each batch of orders take that long before it is confirmed (simulated work:
entries stay pending meanwhile, which a kill -9 then leaves behind).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import uuid
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

DEFECTS = ("drop_1pct", "dup_1pct", "bad_schema_1pct")
INPUT, OUTPUT, GROUP = "orders:placed", "orders:confirmed", "order-service"
#: an entry pending this long (ms) in any consumer is claimed: its consumer died
CLAIM_IDLE_MS = 2000
CORRELATION = "Catga-Correlation-Id"


class OrderService:
    """Confirms each order of the consumer group's stream (see the module docstring)."""

    def __init__(self, client: Any, defect: str | None, work_s: float = 0.0) -> None:
        self.client = client
        self.defect = defect
        self.work_s = work_s
        self.consumer = f"order-service-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.count = 0

    async def handle(self, entries: list[tuple[bytes, dict[bytes, bytes] | None]]) -> None:
        """Confirm ``entries`` (one pipeline), then acknowledge them."""
        if not entries:
            return
        if self.work_s:
            await asyncio.sleep(self.work_s)
        pipe = self.client.pipeline(transaction=False)
        for _entry_id, fields in entries:
            if fields is None:  # trimmed away while pending: nothing to confirm
                continue
            self.count += 1
            order = json.loads(fields.get(b"payload") or b"{}")
            cid = (fields.get(CORRELATION.encode()) or b"").decode()
            confirmation = {"order_id": cid, "sku": order.get("sku"), "status": "confirmed"}
            hit = self.count % 100 == 0
            if hit and self.defect == "drop_1pct":
                continue
            if hit and self.defect == "bad_schema_1pct":
                del confirmation["status"]
            body = json.dumps(confirmation)
            pipe.xadd(OUTPUT, {"payload": body})
            if hit and self.defect == "dup_1pct":
                pipe.xadd(OUTPUT, {"payload": body})
        await pipe.execute()
        await self.client.xack(INPUT, GROUP, *[entry_id for entry_id, _ in entries])

    async def consume(self, stop: asyncio.Event) -> None:
        """New entries of the group (XREADGROUP ... >), until ``stop``."""
        while not stop.is_set():
            response = await self.client.xreadgroup(GROUP, self.consumer, {INPUT: ">"},
                                                    count=500, block=500)
            for _stream, entries in response or []:
                await self.handle(entries)

    async def claim(self, stop: asyncio.Event) -> None:
        """Every second, the entries pending for more than CLAIM_IDLE_MS (a dead consumer's)."""
        while not stop.is_set():
            start = "0-0"
            while True:
                start, entries, *_ = await self.client.xautoclaim(
                    INPUT, GROUP, self.consumer, CLAIM_IDLE_MS, start_id=start, count=500)
                if entries:
                    print(f"order-service: claimed {len(entries)} pending order(s)", flush=True)
                    await self.handle(entries)
                if start in (b"0-0", "0-0"):
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)


async def serve(url: str, defect: str | None, work_s: float) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.xgroup_create(INPUT, GROUP, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):  # it exists: carry on where the group is
            raise
    service = OrderService(client, defect, work_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"order-service: ready on {url} as {service.consumer} (defect: {defect or 'none'})",
          flush=True)
    await asyncio.gather(service.consume(stop), service.claim(stop))
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url",
                        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    args = parser.parse_args()
    defect = os.environ.get("ORDER_SERVICE_DEFECT") or None
    if defect is not None and defect not in DEFECTS:
        parser.error(f"ORDER_SERVICE_DEFECT: {defect!r}; allowed: {', '.join(DEFECTS)}")
    work_s = float(os.environ.get("ORDER_SERVICE_WORK_MS") or 0) / 1000
    asyncio.run(serve(args.redis_url, defect, work_s))


if __name__ == "__main__":
    main()
