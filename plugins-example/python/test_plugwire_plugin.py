"""Unit tests of plugwire_plugin's delivery loop, without a host or sockets.

    plugins-example/python/.venv/bin/python -m unittest discover -s plugins-example/python
"""

import threading
import unittest

from plugwire_plugin import Context, HandlerContext, Logger, Payload, Plugin, _Delivery, plugin_pb2

A = bytes([0xAA]) * 32
B = bytes([0xBB]) * 32


class _Sink:
    def write(self, _line):
        pass

    def flush(self):
        pass


class Recorder(Plugin):
    name = "recorder"
    payload_kinds = ("t.hit", "t.ping", "t.boom")

    def __init__(self):
        self.calls = []
        self.fail_forget = False

    def handle_payload(self, payload: Payload, ctx: HandlerContext) -> None:
        self.calls.append(("payload", payload.seq, payload.src, payload.redelivered))
        if payload.kind == "t.ping":
            ctx.send_direct(payload.src, b"pong")
        if payload.kind == "t.boom":
            ctx.send_direct(payload.src, b"dropped")
            raise RuntimeError("boom")

    def peer_forgotten(self, node_id: bytes, ctx: HandlerContext) -> None:
        self.calls.append(("forget", ctx.seq, node_id))
        if self.fail_forget:
            raise RuntimeError("cannot forget")
        ctx.send_direct(node_id, b"bye")


def payload(seq, src, kind="t.hit", redelivered=False):
    return plugin_pb2.DeliveryItem(
        seq=seq, redelivered=redelivered, payload=plugin_pb2.Payload(src=src, kind=kind, body=b"")
    )


def forget(seq, node_id, redelivered=False):
    return plugin_pb2.DeliveryItem(
        seq=seq, redelivered=redelivered, peer_forgotten=plugin_pb2.PeerForgotten(node_id=node_id)
    )


class DeliveryTest(unittest.TestCase):
    def setUp(self):
        self.plugin = Recorder()
        ctx = Context("recorder", "i1", host=None, log=Logger(_Sink()), stopping=threading.Event())
        ctx.capabilities = frozenset({"control"})
        self.delivery = _Delivery(self.plugin, lambda: ctx)

    def deliver(self, *items, clock=None):
        request = plugin_pb2.DeliverRequest(items=list(items))
        if clock is None:
            return list(self.delivery.process(request))
        return list(self.delivery.process(request, clock=clock))

    def test_payloads_and_forgets_run_in_seq_order_with_one_cumulative_ack(self):
        acks = self.deliver(payload(1, A), forget(2, A), payload(3, B, "t.ping"))
        self.assertEqual(
            self.plugin.calls, [("payload", 1, A, False), ("forget", 2, A), ("payload", 3, B, False)]
        )
        self.assertEqual(len(acks), 1)
        self.assertEqual(acks[0].acked_through, 3)
        self.assertEqual([o.seq for o in acks[0].outcomes], [2, 3])
        self.assertEqual(acks[0].outcomes[0].effects[0].send_direct.frame, b"bye")
        self.assertEqual(acks[0].outcomes[1].effects[0].send_direct.frame, b"pong")

    def test_a_failing_forget_is_an_error_outcome_acked_and_not_retried(self):
        self.plugin.fail_forget = True
        acks = self.deliver(forget(1, A), payload(2, B))
        self.assertEqual(acks[-1].acked_through, 2)
        (outcome,) = acks[-1].outcomes
        self.assertEqual(outcome.seq, 1)
        self.assertEqual(outcome.error.message, "cannot forget")
        self.assertEqual(len(outcome.effects), 0, "a failed handler's effects are dropped")
        self.assertEqual(self.delivery.applied_seq, 2)

    def test_a_failing_payload_handler_drops_its_effects(self):
        (ack,) = self.deliver(payload(1, A, "t.boom"))
        self.assertEqual((ack.outcomes[0].seq, ack.outcomes[0].error.message), (1, "boom"))
        self.assertEqual(len(ack.outcomes[0].effects), 0)

    def test_items_at_or_below_the_applied_seq_are_skipped_but_acked(self):
        self.deliver(payload(1, A), forget(2, A))
        acks = self.deliver(payload(1, A), forget(2, A), payload(3, B))
        self.assertEqual([c[:2] for c in self.plugin.calls], [("payload", 1), ("forget", 2), ("payload", 3)])
        self.assertEqual(acks[-1].acked_through, 3)
        acks = self.deliver(forget(2, A))
        self.assertEqual([(a.acked_through, len(a.outcomes)) for a in acks], [(3, 0)])

    def test_after_a_restore_the_replayed_forget_is_applied_again(self):
        self.deliver(payload(1, A), forget(2, A), payload(3, A))
        self.delivery.applied_seq = 1  # what Restore of a snapshot taken at seq 1 does
        acks = self.deliver(forget(2, A, redelivered=True), payload(3, A, redelivered=True))
        self.assertEqual(self.plugin.calls[3:], [("forget", 2, A), ("payload", 3, A, True)])
        self.assertEqual(acks[-1].acked_through, 3)

    def test_an_unknown_item_is_an_error_outcome(self):
        (ack,) = self.deliver(plugin_pb2.DeliveryItem(seq=1))
        self.assertEqual(ack.acked_through, 1)
        self.assertIn("does not understand", ack.outcomes[0].error.message)

    def test_unclaimed_kind_is_an_error_outcome(self):
        (ack,) = self.deliver(payload(1, A, "nope"))
        self.assertIn("does not claim payload kind 'nope'", ack.outcomes[0].error.message)

    def test_a_long_batch_acks_every_512_items(self):
        acks = self.deliver(*[payload(seq, A) for seq in range(1, 1201)], clock=lambda: 0.0)
        self.assertEqual([a.acked_through for a in acks], [512, 1024, 1200])

    def test_a_busy_batch_acks_at_least_every_20_ms(self):
        now = [0.0]

        def clock():
            now[0] += 0.008  # every handler "takes" 8 ms
            return now[0]

        acks = self.deliver(*[payload(seq, A) for seq in range(1, 8)], clock=clock)
        throughs = [a.acked_through for a in acks]
        self.assertEqual(throughs[-1], 7)
        self.assertGreater(len(throughs), 2, throughs)
        self.assertEqual(throughs, sorted(set(throughs)))

    def test_redelivered_items_need_no_ack_of_their_own(self):
        acks = self.deliver(*[payload(seq, A, redelivered=True) for seq in range(1, 4)], clock=lambda: 0.0)
        self.assertEqual([a.acked_through for a in acks], [3])


if __name__ == "__main__":
    unittest.main()
