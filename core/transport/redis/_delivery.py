"""One Redis delivery: a Pub/Sub frame (QoS 0) or a stream entry (QoS 1/2, requests)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from core.transport.base import Delivery
from core.transport.redis._framing import pack_frame

if TYPE_CHECKING:
    from core.transport.redis._subscription import RedisSubscription, Spec


class RedisDelivery(Delivery):
    __slots__ = ("_entry_id", "_settled", "_spec", "_sub", "_token")

    def __init__(self, sub: RedisSubscription, headers: dict[str, str], body: bytes,
                 delivery_count: int, spec: Spec | None, entry_id: bytes | None,
                 reply_to: str | None = None, token: str | None = None) -> None:
        super().__init__(sub.subject, headers, body, delivery_count, reply_to)
        self._sub = sub
        self._spec = spec
        self._entry_id = entry_id
        self._token = token
        self._settled = False

    @property
    def settled(self) -> bool:
        return self._settled

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        return True

    async def _xack(self) -> None:
        spec = self._spec
        assert spec is not None and self._entry_id is not None
        await self._sub.transport._live()[1].call("XACK", spec.key, spec.group, self._entry_id)

    async def ack(self) -> None:
        if self._spec is None or not self._spec.acks or not self._settle():
            return
        await self._xack()
        self._sub.transport.stats.acked += 1

    async def nack(self, delay_s: float = 0.0, reason: str = "") -> None:
        spec = self._spec
        if spec is None or not spec.acks or not self._settle():
            return
        t = self._sub.transport
        t.stats.nacked += 1
        if spec.kind == "req":
            await self._xack()  # requests are not redelivered on nack: the requester times out
            return
        if self.delivery_count >= t.max_deliver:
            await t.dead_letter(self.subject, self.headers, self.body, self.delivery_count,
                                f"max deliveries ({t.max_deliver}) reached: {reason}")
            await self._xack()
            return
        self._sub.redeliver_later(self, max(0.0, float(delay_s)))

    async def term(self, reason: str) -> None:
        if not self._settle():
            return
        t = self._sub.transport
        await t.dead_letter(self.subject, self.headers, self.body, self.delivery_count, reason)
        if self._spec is not None and self._spec.acks:
            await self._xack()

    async def respond(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.reply_to is None:
            await super().respond(headers, body)
            return
        writer = self._sub.transport._live()[1]
        frame = pack_frame(orjson.dumps([self._token, dict(headers)]), body)
        if self._settle():
            spec = self._spec
            assert spec is not None
            await asyncio.gather(writer.call("PUBLISH", self.reply_to, frame),
                                 writer.call("XACK", spec.key, spec.group, self._entry_id))
        else:
            await writer.call("PUBLISH", self.reply_to, frame)
