"""An order service, as a team might run it behind NATS: it consumes ``orders.placed`` from the
JetStream stream ORDERS and, for each order, publishes ``orders.confirmed`` carrying the
order's correlation id. catga-bench tests it as a black box from asyncapi.yaml alone.

    python service.py [--nats-url nats://127.0.0.1:4222]

Seeded defects (environment ``ORDER_SERVICE_DEFECT``), to see the gate catch each one:
``drop_1pct`` (confirms nothing for 1 order in 100), ``dup_1pct`` (confirms 1 in 100 twice),
``bad_schema_1pct`` (1 in 100 confirmations lack their ``status``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from typing import Any

import nats
from nats.js.api import ConsumerConfig

DEFECTS = ("drop_1pct", "dup_1pct", "bad_schema_1pct")
ACK_WAIT_S = 2.0


async def serve(url: str, defect: str | None) -> None:
    nc = await nats.connect(url, name="order-service")
    js = nc.jetstream()
    await js.add_stream(name="ORDERS", subjects=["orders.placed"])
    count = 0

    async def on_order(msg: Any) -> None:
        nonlocal count
        count += 1
        order = json.loads(msg.data or b"{}")
        cid = (msg.headers or {}).get("Catga-Correlation-Id")
        confirmation = {"order_id": cid, "sku": order.get("sku"), "status": "confirmed"}
        hit = count % 100 == 0
        if hit and defect == "drop_1pct":
            await msg.ack()
            return
        if hit and defect == "bad_schema_1pct":
            del confirmation["status"]
        body = json.dumps(confirmation).encode()
        await nc.publish("orders.confirmed", body)
        if hit and defect == "dup_1pct":
            await nc.publish("orders.confirmed", body)
        await msg.ack()

    # explicit acks: an order this process took but never acked (it died) is redelivered to
    # the next one after ack_wait
    config = ConsumerConfig(ack_wait=ACK_WAIT_S, max_ack_pending=10_000)
    await js.subscribe("orders.placed", durable="order-service", cb=on_order, manual_ack=True,
                       config=config)
    await nc.flush()
    print(f"order-service: ready on {url} (defect: {defect or 'none'})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    args = parser.parse_args()
    defect = os.environ.get("ORDER_SERVICE_DEFECT") or None
    if defect is not None and defect not in DEFECTS:
        parser.error(f"ORDER_SERVICE_DEFECT: {defect!r}; allowed: {', '.join(DEFECTS)}")
    asyncio.run(serve(args.nats_url, defect))


if __name__ == "__main__":
    main()
