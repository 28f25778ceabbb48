"""Unit tests of the delivery loop and the token line, without a host or sockets.

    plugins-example/python/.venv/bin/python -m pytest sdk/python/tests/test_delivery.py
"""

import os
import queue
import threading
import unittest

from plugwire import Context, HandlerContext, LaunchTokenError, Logger, Plugin, read_launch_token
from plugwire._gen.plugwire.v1 import plugin_pb2
from plugwire._runtime import _Delivery

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

    def handle_payload(self, ctx: HandlerContext, src: bytes, kind: str, body: bytes) -> None:
        self.calls.append(("payload", ctx.seq, src, ctx.redelivered))
        if kind == "t.ping":
            ctx.send_direct(src, b"pong")
        if kind == "t.boom":
            ctx.send_direct(src, b"dropped")
            raise RuntimeError("boom")

    def on_peer_forgotten(self, ctx: HandlerContext, node_id: bytes) -> None:
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


def drain(stream):
    acks = []
    while True:
        try:
            acks.append(stream.out.get_nowait())
        except queue.Empty:
            return acks


class DeliveryTest(unittest.TestCase):
    def setUp(self, clock=None):
        self.plugin = Recorder()
        ctx = Context("recorder", "i1", host=None, log=Logger(_Sink()), stopping=threading.Event())
        ctx.capabilities = frozenset({"control"})
        self.delivery = _Delivery(self.plugin, lambda: ctx, **({"clock": clock} if clock else {}))
        self.stream = self.delivery.open_stream()

    def deliver(self, *items, stream=None):
        stream = stream or self.stream
        self.delivery.process(plugin_pb2.DeliverRequest(items=list(items)), stream)
        return drain(stream)

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
        self.assertEqual(acks, [], "nothing new to ack: 3 was acked on this stream already")

    def test_after_a_restore_the_replayed_forget_is_applied_again(self):
        self.deliver(payload(1, A), forget(2, A), payload(3, A))
        with self.delivery.lock:
            self.delivery.restored(1)  # what Restore of a snapshot taken at seq 1 does
        relaunched = self.delivery.open_stream()  # as a host attaches after restoring
        acks = self.deliver(forget(2, A, redelivered=True), payload(3, A, redelivered=True), stream=relaunched)
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
        self.setUp(clock=lambda: 0.0)
        acks = self.deliver(*[payload(seq, A) for seq in range(1, 1201)])
        self.assertEqual([a.acked_through for a in acks], [512, 1024, 1200])

    def test_a_busy_batch_acks_after_each_item_once_20_ms_passed(self):
        now = [0.0]

        def clock():
            now[0] += 0.008  # every handler "takes" 8 ms
            return now[0]

        self.setUp(clock=clock)
        acks = self.deliver(*[payload(seq, A) for seq in range(1, 8)])
        throughs = [a.acked_through for a in acks]
        self.assertEqual(throughs[-1], 7)
        self.assertGreater(len(throughs), 2, throughs)
        self.assertEqual(throughs, sorted(set(throughs)))

    def test_redelivered_items_need_no_ack_of_their_own(self):
        self.setUp(clock=lambda: 0.0)
        acks = self.deliver(*[payload(seq, A, redelivered=True) for seq in range(1, 4)])
        self.assertEqual([a.acked_through for a in acks], [3])

    def test_an_ack_never_covers_more_than_its_stream_carried_even_after_a_restore(self):
        self.deliver(payload(1, A), payload(2, A))
        with self.delivery.lock:
            self.delivery.restored(100)
            self.delivery.flush_locked()
        self.assertEqual(drain(self.stream), [], "nothing to ack: the stream carried only up to 2")
        acks = self.deliver(payload(3, A))
        self.assertEqual([a.acked_through for a in acks], [3], "a duplicate, acked only through what the stream carried")
        self.assertEqual(len(self.plugin.calls), 2)

    def test_a_new_stream_gets_no_ack_before_an_item_and_then_covers_what_was_handled(self):
        self.deliver(payload(1, A), payload(2, A))
        second = self.delivery.open_stream()
        with self.delivery.lock:
            self.delivery.flush_locked()
        self.assertEqual(drain(second), [])
        acks = self.deliver(payload(2, A, redelivered=True), payload(3, B, "t.ping"), stream=second)
        self.assertEqual([a.acked_through for a in acks], [3])
        self.assertEqual([o.seq for o in acks[0].outcomes], [3], "the duplicate gets no outcome")
        self.assertEqual(drain(self.stream), [], "the old stream gets no more acks")

    def test_acks_never_go_down_on_a_stream(self):
        self.deliver(payload(1, A), payload(2, A), payload(3, A))
        with self.delivery.lock:
            self.delivery.restored(1)  # a Restore of an older snapshot
        acks = self.deliver(payload(2, A, redelivered=True))
        self.assertEqual(acks, [], "handled again, but 2 is below the stream's last ack")
        acks = self.deliver(payload(3, A, redelivered=True), payload(4, A))
        self.assertEqual([a.acked_through for a in acks], [4])

    def test_stop_takes_no_new_item_and_sends_the_final_ack(self):
        self.setUp(clock=lambda: 0.0)
        self.delivery.stop(1.0)
        acks = self.deliver(payload(1, A), payload(2, A))
        self.assertEqual(acks, [])
        self.assertEqual(self.plugin.calls, [])

    def test_stop_during_a_batch_acks_what_was_handled_and_leaves_the_rest(self):
        self.setUp(clock=lambda: 0.0)
        delivery = self.delivery

        class StopAtTwo(Recorder):
            def handle_payload(self, ctx, src, kind, body):
                super().handle_payload(ctx, src, kind, body)
                if ctx.seq == 2:
                    delivery._stopped = True  # what stop() sets, from the Shutdown thread

        self.plugin.__class__ = StopAtTwo
        acks = self.deliver(*[payload(seq, A) for seq in range(1, 6)])
        self.assertEqual([a.acked_through for a in acks], [2])
        self.assertEqual([c[1] for c in self.plugin.calls], [1, 2])


class LaunchTokenTest(unittest.TestCase):
    """The token is read where PLUGWIRE_AUTH_TOKEN_SOURCE says (docs/protocol.md §6)."""

    def pipe(self, data: bytes, close: bool = False) -> int:
        r, w = os.pipe()
        os.write(w, data)
        self.addCleanup(os.close, r)
        if close:
            os.close(w)
        else:
            self.addCleanup(os.close, w)
        return r

    def stdin(self, data: bytes, close: bool = False, timeout_s: float = 2.0) -> str:
        return read_launch_token({"PLUGWIRE_AUTH_TOKEN_SOURCE": "stdin"}, self.pipe(data, close), timeout_s)

    def test_the_first_stdin_line_carries_the_token_and_nothing_after_it_is_read(self):
        r = self.pipe(b"PLUGWIRE_TOKEN abc-DEF_123\nrest")
        self.assertEqual(read_launch_token({"PLUGWIRE_AUTH_TOKEN_SOURCE": "stdin"}, r, 2.0), "abc-DEF_123")
        self.assertEqual(os.read(r, 10), b"rest")

    def test_the_env_token_is_read_with_source_env_or_unset(self):
        self.assertEqual(read_launch_token({"PLUGWIRE_AUTH_TOKEN_SOURCE": "env", "PLUGWIRE_AUTH_TOKEN": "t1"}, self.pipe(b"")), "t1")
        self.assertEqual(read_launch_token({"PLUGWIRE_AUTH_TOKEN": "t2"}, self.pipe(b"")), "t2")

    def test_a_missing_env_token_is_refused(self):
        with self.assertRaisesRegex(LaunchTokenError, "did not set PLUGWIRE_AUTH_TOKEN"):
            read_launch_token({"PLUGWIRE_AUTH_TOKEN_SOURCE": "env"}, self.pipe(b""))

    def test_an_unknown_source_is_refused(self):
        with self.assertRaisesRegex(LaunchTokenError, "neither 'stdin' nor 'env'"):
            read_launch_token({"PLUGWIRE_AUTH_TOKEN_SOURCE": "file"}, self.pipe(b""))

    def test_eof_before_the_line_is_refused(self):
        with self.assertRaisesRegex(LaunchTokenError, "stdin closed before"):
            self.stdin(b"PLUGWIRE_TOKEN abc", close=True)

    def test_no_line_within_the_bound_is_refused(self):
        with self.assertRaisesRegex(LaunchTokenError, "within 100 ms"):
            self.stdin(b"", timeout_s=0.1)

    def test_a_line_that_is_not_a_token_line_is_refused_without_quoting_it(self):
        with self.assertRaises(LaunchTokenError) as caught:
            self.stdin(b"secret-looking\n")
        self.assertIn("does not start with 'PLUGWIRE_TOKEN '", str(caught.exception))
        self.assertNotIn("secret-looking", str(caught.exception))
        with self.assertRaisesRegex(LaunchTokenError, "empty or holds a space"):
            self.stdin(b"PLUGWIRE_TOKEN a b\n")
        with self.assertRaisesRegex(LaunchTokenError, "over 1024 bytes"):
            self.stdin(b"x" * 2000)


if __name__ == "__main__":
    unittest.main()
