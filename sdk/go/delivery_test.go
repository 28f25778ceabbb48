package plugwire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

var (
	peerA = bytes.Repeat([]byte{0xaa}, 32)
	peerB = bytes.Repeat([]byte{0xbb}, 32)
)

type call struct {
	what        string
	seq         uint64
	redelivered bool
}

type recorder struct {
	calls      []call
	failForget bool
}

// harness is a delivery with a Deliver stream whose acks it records.
type harness struct {
	d    *delivery
	s    *ackStream
	acks []*pb.DeliverResponse
}

// open opens a new Deliver stream, which the next deliver calls use.
func (h *harness) open() {
	h.s = h.d.openStream(func(r *pb.DeliverResponse) error {
		h.acks = append(h.acks, r)
		return nil
	})
}

// recorderPlugin records the items it handles.
type recorderPlugin struct {
	BasePlugin
	r *recorder
}

func (recorderPlugin) Name() string           { return "recorder" }
func (recorderPlugin) PayloadKinds() []string { return []string{"t.hit", "t.ping", "t.boom"} }

func (p recorderPlugin) HandlePayload(ctx *Context, src []byte, kind string, _ []byte) error {
	p.r.calls = append(p.r.calls, call{"payload", ctx.Seq(), ctx.Redelivered()})
	switch kind {
	case "t.ping":
		return ctx.SendDirect(src, []byte("pong"))
	case "t.boom":
		_ = ctx.SendDirect(src, []byte("dropped"))
		panic("boom")
	}
	return nil
}

func (p recorderPlugin) OnPeerForgotten(ctx *Context, nodeID []byte) error {
	p.r.calls = append(p.r.calls, call{"forget", ctx.Seq(), false})
	if p.r.failForget {
		return errors.New("cannot forget")
	}
	return ctx.SendDirect(nodeID, []byte("bye"))
}

func newDelivery(r *recorder, now func() time.Time) *harness {
	p := describe(recorderPlugin{r: r})
	l := &launch{name: p.name, caps: map[Capability]bool{CapabilityControl: true}, log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if now == nil {
		now = func() time.Time { return time.Time{} }
	}
	h := &harness{d: newDeliveryOf(p, func() *launch { return l }, now)}
	h.open()
	return h
}

func payload(seq uint64, src []byte, kind string, redelivered bool) *pb.DeliveryItem {
	return &pb.DeliveryItem{Seq: seq, Redelivered: redelivered, Item: &pb.DeliveryItem_Payload{Payload: &pb.Payload{Src: src, Kind: kind}}}
}

func forget(seq uint64, nodeID []byte, redelivered bool) *pb.DeliveryItem {
	return &pb.DeliveryItem{Seq: seq, Redelivered: redelivered, Item: &pb.DeliveryItem_PeerForgotten{PeerForgotten: &pb.PeerForgotten{NodeId: nodeID}}}
}

func deliver(t *testing.T, h *harness, items ...*pb.DeliveryItem) []*pb.DeliverResponse {
	t.Helper()
	h.acks = nil
	if err := h.d.process(context.Background(), &pb.DeliverRequest{Items: items}, h.s); err != nil {
		t.Fatal(err)
	}
	return h.acks
}

func throughs(acks []*pb.DeliverResponse) []uint64 {
	var out []uint64
	for _, a := range acks {
		out = append(out, a.AckedThrough)
	}
	return out
}

func TestPayloadsAndForgetsRunInSeqOrderWithOneCumulativeAck(t *testing.T) {
	r := &recorder{}
	acks := deliver(t, newDelivery(r, nil), payload(1, peerA, "t.hit", false), forget(2, peerA, false), payload(3, peerB, "t.ping", false))
	if want := []call{{"payload", 1, false}, {"forget", 2, false}, {"payload", 3, false}}; !slices.Equal(r.calls, want) {
		t.Fatalf("calls %v, want %v", r.calls, want)
	}
	if len(acks) != 1 || acks[0].AckedThrough != 3 {
		t.Fatalf("acks through %v, want [3]", throughs(acks))
	}
	o := acks[0].Outcomes
	if len(o) != 2 || o[0].Seq != 2 || string(o[0].Effects[0].GetSendDirect().Frame) != "bye" || o[1].Seq != 3 || string(o[1].Effects[0].GetSendDirect().Frame) != "pong" {
		t.Fatalf("outcomes %v", o)
	}
}

func TestAFailingForgetIsAnErrorOutcomeAckedAndNotRetried(t *testing.T) {
	r := &recorder{failForget: true}
	d := newDelivery(r, nil)
	acks := deliver(t, d, forget(1, peerA, false), payload(2, peerB, "t.hit", false))
	last := acks[len(acks)-1]
	if last.AckedThrough != 2 || len(last.Outcomes) != 1 {
		t.Fatalf("ack %v", last)
	}
	o := last.Outcomes[0]
	if o.Seq != 1 || o.Error.GetMessage() != "cannot forget" || len(o.Effects) != 0 {
		t.Fatalf("outcome %v", o)
	}
}

func TestAPanickingHandlerIsAnErrorOutcomeWithoutEffects(t *testing.T) {
	acks := deliver(t, newDelivery(&recorder{}, nil), payload(1, peerA, "t.boom", false))
	o := acks[0].Outcomes[0]
	if o.Seq != 1 || !strings.Contains(o.Error.GetMessage(), "boom") || len(o.Effects) != 0 {
		t.Fatalf("outcome %v", o)
	}
}

func TestItemsAtOrBelowTheAppliedSeqAreSkippedButAcked(t *testing.T) {
	r := &recorder{}
	d := newDelivery(r, nil)
	deliver(t, d, payload(1, peerA, "t.hit", false), forget(2, peerA, false))
	acks := deliver(t, d, payload(1, peerA, "t.hit", false), forget(2, peerA, false), payload(3, peerB, "t.hit", false))
	if len(r.calls) != 3 || r.calls[2].seq != 3 {
		t.Fatalf("calls %v", r.calls)
	}
	if got := throughs(acks); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("acks through %v", got)
	}
	acks = deliver(t, d, forget(2, peerA, false))
	if len(acks) != 0 {
		t.Fatalf("acks %v, want none: 3 was acked on this stream already", acks)
	}
}

func TestAfterARestoreTheReplayedForgetIsAppliedAgain(t *testing.T) {
	r := &recorder{}
	d := newDelivery(r, nil)
	deliver(t, d, payload(1, peerA, "t.hit", false), forget(2, peerA, false), payload(3, peerA, "t.hit", false))
	_ = d.d.exclusive(func() error { d.d.restoredLocked(1); return nil }) // what Restore of a snapshot at seq 1 does
	d.open()                                                              // as a host attaches after restoring
	acks := deliver(t, d, forget(2, peerA, true), payload(3, peerA, "t.hit", true))
	if want := []call{{"forget", 2, false}, {"payload", 3, true}}; !slices.Equal(r.calls[3:], want) {
		t.Fatalf("replayed calls %v, want %v", r.calls[3:], want)
	}
	if got := throughs(acks); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("acks through %v", got)
	}
}

func TestUnknownItemsAndUnclaimedKindsAreErrorOutcomes(t *testing.T) {
	acks := deliver(t, newDelivery(&recorder{}, nil), &pb.DeliveryItem{Seq: 1}, payload(2, peerA, "nope", false))
	o := acks[0].Outcomes
	if acks[0].AckedThrough != 2 || len(o) != 2 ||
		!strings.Contains(o[0].Error.GetMessage(), "does not understand") ||
		!strings.Contains(o[1].Error.GetMessage(), "does not claim payload kind 'nope'") {
		t.Fatalf("ack %v", acks[0])
	}
}

func TestALongBatchAcksEvery512Items(t *testing.T) {
	var items []*pb.DeliveryItem
	for seq := uint64(1); seq <= 1200; seq++ {
		items = append(items, payload(seq, peerA, "t.hit", false))
	}
	if got := throughs(deliver(t, newDelivery(&recorder{}, nil), items...)); !slices.Equal(got, []uint64{512, 1024, 1200}) {
		t.Fatalf("acks through %v", got)
	}
}

func TestABusyBatchAcksAtLeastEvery20ms(t *testing.T) {
	var clock time.Time
	now := func() time.Time {
		clock = clock.Add(8 * time.Millisecond) // every handler "takes" 8 ms
		return clock
	}
	var items []*pb.DeliveryItem
	for seq := uint64(1); seq <= 7; seq++ {
		items = append(items, payload(seq, peerA, "t.hit", false))
	}
	got := throughs(deliver(t, newDelivery(&recorder{}, now), items...))
	if len(got) <= 2 || got[len(got)-1] != 7 || !slices.IsSorted(got) {
		t.Fatalf("acks through %v", got)
	}
}

func TestRedeliveredItemsNeedNoAckOfTheirOwn(t *testing.T) {
	items := []*pb.DeliveryItem{payload(1, peerA, "t.hit", true), forget(2, peerA, true), payload(3, peerA, "t.hit", true)}
	acks := deliver(t, newDelivery(&recorder{}, nil), items...)
	if got := throughs(acks); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("acks through %v", got)
	}
}

func TestAnAckNeverCoversMoreThanItsStreamCarriedEvenAfterARestore(t *testing.T) {
	r := &recorder{}
	h := newDelivery(r, nil)
	deliver(t, h, payload(1, peerA, "t.hit", false), payload(2, peerA, "t.hit", false))
	h.acks = nil
	_ = h.d.exclusive(func() error { h.d.restoredLocked(100); return nil })
	if len(h.acks) != 0 {
		t.Fatalf("acks %v after the Restore, want none: the stream carried only up to 2", h.acks)
	}
	if got := throughs(deliver(t, h, payload(3, peerA, "t.hit", false))); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("acks through %v, want [3]: a duplicate, acked only through what the stream carried", got)
	}
	if len(r.calls) != 2 {
		t.Fatalf("calls %v", r.calls)
	}
}

func TestANewStreamGetsNoAckBeforeAnItemAndThenCoversWhatWasHandled(t *testing.T) {
	h := newDelivery(&recorder{}, nil)
	deliver(t, h, payload(1, peerA, "t.hit", false), payload(2, peerA, "t.hit", false))
	h.open()
	h.acks = nil
	_ = h.d.exclusive(func() error { return nil })
	if len(h.acks) != 0 {
		t.Fatalf("acks %v on a new stream before any item", h.acks)
	}
	acks := deliver(t, h, payload(2, peerA, "t.hit", true), payload(3, peerB, "t.ping", false))
	if got := throughs(acks); !slices.Equal(got, []uint64{3}) || len(acks[0].Outcomes) != 1 || acks[0].Outcomes[0].Seq != 3 {
		t.Fatalf("acks %v", acks)
	}
}

func TestAnExclusiveTaskSendsThePendingAckFirst(t *testing.T) {
	h := newDelivery(&recorder{}, nil)
	deliver(t, h, payload(1, peerA, "t.hit", false))
	// An item applied whose ack is still pending, as mid-batch.
	h.d.mu.Lock()
	h.d.applied, h.s.high = 2, 2
	h.d.mu.Unlock()
	h.acks = nil
	var sawAcks int
	_ = h.d.exclusive(func() error { sawAcks = len(h.acks); return nil })
	if sawAcks != 1 || h.acks[0].AckedThrough != 2 {
		t.Fatalf("before the snapshot: acks %v", h.acks)
	}
}

func TestStopTakesNoNewItem(t *testing.T) {
	r := &recorder{}
	h := newDelivery(r, nil)
	deliver(t, h, payload(1, peerA, "t.hit", false))
	h.d.stop(time.Second)
	if acks := deliver(t, h, payload(2, peerA, "t.hit", false)); len(acks) != 0 || len(r.calls) != 1 {
		t.Fatalf("after stop: acks %v, calls %v", acks, r.calls)
	}
}
