"""The broker's work queues by name: enqueue, consume with credit, acknowledge.

Each item is held once per id, within the queue's limits, until a consumer acknowledges it or a
nack discards it; its producer is then told DONE and may forget it. A consumer that goes away
gives its unacknowledged items back, ahead of newer work.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bus import wire
from bus.acl import CONSUME
from bus.errors import Refused
from bus.outbox import Outbox
from bus.peer import HeldWork, Peer
from bus.peer_table import PeerTable
from bus.rejection import Rejections
from bus.stamp import stamp
from bus.topics import check_topic
from bus.workqueue import WorkQueue
from config.bus import BusSettings


class WorkQueues:
    def __init__(
        self,
        settings: BusSettings,
        table: PeerTable,
        outbox: Outbox,
        rejections: Rejections,
        counters: Counter[str],
    ) -> None:
        self.settings = settings
        self.table = table
        self.outbox = outbox
        self.rejections = rejections
        self.counters = counters
        self.queues: dict[str, WorkQueue] = {}

    def enqueue(self, producer: Peer, data: bytes, fields: list[Any]) -> None:
        """Hold a unit of work (an envelope and its validated fields) and confirm it to its
        producer."""
        queue = self._queue(fields[2])
        if fields[1] in queue.held:
            # A producer re-sent unfinished work the broker still holds (after a reconnect):
            # one copy per id, or two deliveries would share one in-flight slot and leak credit.
            self.counters["duplicate_enqueues"] += 1
            self.outbox.send(producer, wire.CONFIRM, fields[1])
            return
        data = stamp(data, fields, producer.identity)
        settings = self.settings
        if (
            len(queue.held) >= settings.max_queue_items
            or queue.held_bytes + len(data) > settings.max_queue_bytes
        ):
            self.rejections.reject(
                producer,
                "queue_full",
                f"queue {queue.name!r} holds {len(queue.held)} items of {queue.held_bytes} "
                f"bytes; the limits are {settings.max_queue_items} items and "
                f"{settings.max_queue_bytes} bytes (bus.max_queue_items, bus.max_queue_bytes)",
                command=wire.ENQUEUE,
                message_id=fields[1],
                topic=queue.name,
            )
            return
        self.outbox.send(producer, wire.CONFIRM, fields[1])
        queue.hold(HeldWork(fields[2], fields[1], data, producer.name, 0))
        self.counters["enqueued"] += 1
        self._dispatch(queue)

    def consume(self, peer: Peer, args: dict[str, Any]) -> None:
        """Set a peer's credit on a queue (0 stops it); raises :class:`Refused`."""
        name, credit = args.get("queue"), args.get("credit")
        if not isinstance(name, str):
            raise Refused("field", "consume needs a 'queue' string")
        check_topic(name)
        if not isinstance(credit, int) or isinstance(credit, bool) or not 0 <= credit <= 1_000_000:
            raise Refused("field", f"credit must be an integer from 0 to 1000000, got {credit!r}")
        if not self.table.acl.allows(peer.identity, CONSUME, name):
            raise Refused("denied", f"{peer.identity!r} may not consume {name!r}")
        busy = sum(1 for item in peer.inflight.values() if item.queue == name)
        peer.credit[name] = max(0, credit - busy)
        queue = self._queue(name)
        if credit == 0:  # stopped consuming: settling what it still holds must not refill it
            queue.remove_consumer(peer)
        else:
            queue.add_consumer(peer)
        self._dispatch(queue)

    def ack(self, peer: Peer, ids: Any) -> None:
        """The body of an ACK frame; raises :class:`Refused` if it is not a list."""
        if not isinstance(ids, list):
            raise Refused("malformed", "ack body must be an array of message ids")
        touched: set[str] = set()
        for message_id in ids:
            item = peer.inflight.pop(message_id, None) if isinstance(message_id, bytes) else None
            if item is None:
                self.counters["unknown_acks"] += 1
                continue
            peer.credit[item.queue] = peer.credit.get(item.queue, 0) + 1
            touched.add(item.queue)
            self.counters["acked"] += 1
            queue = self.queues[item.queue]
            queue.acked += 1
            queue.release(item)
            self._tell_producer_done(item)
        for name in touched:
            self._dispatch(self.queues[name])

    def nack(self, peer: Peer, entries: Any) -> None:
        """The body of a NACK frame: ``[message_id, requeue]`` pairs; raises :class:`Refused`."""
        if not isinstance(entries, list):
            raise Refused("malformed", "nack body must be an array of [message_id, requeue]")
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bytes)):
                raise Refused("malformed", "nack entries must be [message_id, requeue]")
            item = peer.inflight.pop(entry[0], None)
            if item is None:
                continue
            peer.credit[item.queue] = peer.credit.get(item.queue, 0) + 1
            queue = self.queues[item.queue]
            if entry[1]:
                queue.requeue(item)
            else:
                self.counters["discarded"] += 1
                queue.release(item)
                self._tell_producer_done(item)
            self._dispatch(queue)

    def peer_gone(self, peer: Peer) -> int:
        """It consumes no more, and its unacknowledged work is requeued (counted); call
        :meth:`dispatch_all` afterwards."""
        for queue_name in peer.credit:
            queue = self.queues.get(queue_name)
            if queue is not None:
                queue.remove_consumer(peer)
        requeued = 0
        for item in sorted(peer.inflight.values(), key=lambda i: i.message_id, reverse=True):
            self._queue(item.queue).requeue(item)
            requeued += 1
        peer.inflight.clear()
        return requeued

    def dispatch_all(self) -> None:
        for queue in list(self.queues.values()):
            self._dispatch(queue)

    def _queue(self, name: str) -> WorkQueue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = WorkQueue(name)
        return queue

    def _dispatch(self, queue: WorkQueue) -> None:
        for peer in queue.dispatch():
            self.outbox.dirty.add(peer)

    def _tell_producer_done(self, item: HeldWork) -> None:
        """The producer may forget the item: it was acknowledged, or discarded by a nack."""
        producer = self.table.by_name.get(item.producer)
        if producer is not None:
            self.outbox.send(producer, wire.DONE, item.message_id)
