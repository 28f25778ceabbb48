package plugwire

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

// ackStream is one Deliver stream as the plugin acks on it.
type ackStream struct {
	send func(*pb.DeliverResponse) error
	// high is the highest seq received on this stream: an ack on it never covers more.
	high uint64
	// acked is acked_through of its last ack: acks on it never go down.
	acked uint64
}

// delivery applies the items of the Deliver stream (payloads and forgotten
// peers) one at a time in seq order and acks them cumulatively on the newest
// stream (docs/protocol.md §8). Its mutex also serializes snapshot and
// restore against handlers, so those always run between items, and every
// ack is sent with it held, so sends never overlap.
type delivery struct {
	plugin *described
	launch func() *launch
	// now is the clock of the ack cadence; time.Now outside tests.
	now func() time.Time

	mu       sync.Mutex
	applied  uint64 // seq of the last item applied (or of the restored snapshot)
	stream   *ackStream
	outcomes []*pb.ItemOutcome // of items applied and not yet acked, in seq order
	unacked  int
	lastAck  time.Time

	// stopping is set when shutdown begins: no item starts after it.
	stopping atomic.Bool
	// ended is closed when the plugin exits: every Deliver handler returns.
	ended   chan struct{}
	endOnce sync.Once
}

func newDeliveryOf(p *described, launch func() *launch, now func() time.Time) *delivery {
	return &delivery{plugin: p, launch: launch, now: now, lastAck: now(), ended: make(chan struct{})}
}

// endStreams ends the plugin's side of every Deliver stream, as it exits
// after the final ack (the host never half-closes Deliver).
func (d *delivery) endStreams() {
	d.endOnce.Do(func() { close(d.ended) })
}

// openStream makes send the stream acks go to. Nothing is acked on it before
// an item arrives on it. Outcomes not yet sent went with the old stream: the
// host redelivers those items, and this process skips them as duplicates.
func (d *delivery) openStream(send func(*pb.DeliverResponse) error) *ackStream {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &ackStream{send: send}
	d.stream = s
	d.outcomes = nil
	d.lastAck = d.now()
	return s
}

func (d *delivery) closeStream(s *ackStream) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stream == s {
		d.stream = nil
	}
}

// exclusive runs fn between items, after sending the pending ack (so the
// host has every ack a snapshot's applied_seq covers).
func (d *delivery) exclusive(fn func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_ = d.flushLocked() // a failed send breaks the stream; the snapshot goes on
	return fn()
}

// restoredLocked records a Restore (called inside exclusive): the state
// includes every item up to seq and nothing after it.
func (d *delivery) restoredLocked(seq uint64) {
	d.applied = seq
	kept := d.outcomes[:0]
	for _, o := range d.outcomes {
		if o.Seq <= seq {
			kept = append(kept, o)
		}
	}
	d.outcomes = kept
}

// process applies one DeliverRequest received on s. An ack goes out after an
// item when maxUnacked items were handled since the last ack or ackInterval
// passed since it, and once the request is drained (which also covers items
// skipped as already applied).
//
// Redelivered items need nothing special: after a crash the host sends them
// one at a time, each once the one before it is acked.
func (d *delivery) process(ctx context.Context, req *pb.DeliverRequest, s *ackStream) error {
	if len(req.Items) == 0 {
		return nil
	}
	d.mu.Lock()
	if last := req.Items[len(req.Items)-1].Seq; last > s.high {
		s.high = last
	}
	d.mu.Unlock()
	for _, item := range req.Items {
		if d.stopping.Load() {
			break
		}
		d.mu.Lock()
		if item.Seq <= d.applied { // applied already (by this process, or in a restored snapshot)
			d.mu.Unlock()
			continue
		}
		if outcome := d.run(ctx, item); outcome != nil {
			d.outcomes = append(d.outcomes, outcome)
		}
		d.applied = item.Seq
		d.unacked++
		var err error
		if d.unacked >= maxUnacked || d.now().Sub(d.lastAck) >= ackInterval {
			err = d.flushLocked()
		}
		d.mu.Unlock()
		if err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flushLocked()
}

// flushLocked sends the pending ack on the current stream, if it advances
// it. Called with d.mu held.
func (d *delivery) flushLocked() error {
	s := d.stream
	if s == nil {
		return nil
	}
	through := min(d.applied, s.high)
	if through <= s.acked {
		return nil
	}
	var sent, kept []*pb.ItemOutcome
	for _, o := range d.outcomes {
		if o.Seq <= through {
			sent = append(sent, o)
		} else {
			kept = append(kept, o)
		}
	}
	d.outcomes = kept
	s.acked = through
	d.unacked = 0
	d.lastAck = d.now()
	return s.send(&pb.DeliverResponse{AckedThrough: through, Outcomes: sent})
}

// stop begins shutdown: no item starts from now on; once the handler running
// now has finished (waiting at most timeout), the final ack is sent. Items
// not applied are left to the host, which redelivers them to the next launch.
func (d *delivery) stop(timeout time.Duration) {
	d.stopping.Store(true)
	done := make(chan struct{})
	go func() {
		d.mu.Lock()
		_ = d.flushLocked()
		d.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// run applies one item and returns its outcome, or nil for a success without
// effects. A failed (or panicking) handler is reported, not retried, and its
// effects are dropped. Called with d.mu held.
func (d *delivery) run(ctx context.Context, item *pb.DeliveryItem) (outcome *pb.ItemOutcome) {
	l := d.launch()
	it := &itemRun{seq: item.Seq, redelivered: item.Redelivered}
	hc := &Context{Context: ctx, launch: l, item: it}
	var what []any // log fields naming the item
	fail := func(err error) *pb.ItemOutcome {
		l.log.Error("handler failed", append(what, "error", err.Error())...)
		// A handler's text may be anything: send it as valid UTF-8, cut as the host cuts it.
		return &pb.ItemOutcome{Seq: item.Seq, Error: &pb.HandlerError{Message: errorText(err.Error())}}
	}
	defer func() {
		if r := recover(); r != nil {
			outcome = fail(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	var err error
	switch x := item.Item.(type) {
	case *pb.DeliveryItem_Payload:
		p := x.Payload
		what = []any{"seq", item.Seq, "kind", p.Kind}
		if !slices.Contains(d.plugin.kinds, p.Kind) {
			return fail(fmt.Errorf("plugin '%s' does not claim payload kind '%s'", d.plugin.name, p.Kind))
		}
		err = d.plugin.HandlePayload(hc, p.Src, p.Kind, p.Body)
	case *pb.DeliveryItem_PeerForgotten:
		nodeID := x.PeerForgotten.NodeId
		what = []any{"seq", item.Seq, "forgotten_peer", hex.EncodeToString(nodeID)}
		err = d.plugin.OnPeerForgotten(hc, nodeID)
	default:
		what = []any{"seq", item.Seq}
		return fail(fmt.Errorf("plugin '%s' does not understand delivery item seq %d "+
			"(neither a payload nor a forgotten peer; is the host newer than this plugin?)", d.plugin.name, item.Seq))
	}
	if err != nil {
		return fail(err)
	}
	if len(it.effects) == 0 {
		return nil
	}
	return &pb.ItemOutcome{Seq: item.Seq, Effects: it.effects}
}
