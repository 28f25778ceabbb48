package plugwire

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	pb "github.com/plugwire/plugwire/plugins-example/go/gen/plugwire/v1"
)

// delivery applies the items of the Deliver stream (payloads and forgotten
// peers) one at a time in seq order and acks them cumulatively. Its mutex
// also serializes snapshot and restore against handlers, so those always
// run between items.
type delivery struct {
	plugin *Plugin
	pc     func() *Context
	// now is the clock of the ack cadence; time.Now outside tests.
	now func() time.Time

	mu      sync.Mutex
	applied uint64 // seq of the last item applied (or of the restored snapshot)
}

// exclusive runs fn between items and gives it the applied seq.
func (d *delivery) exclusive(fn func(applied *uint64) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fn(&d.applied)
}

// process applies one DeliverRequest and sends its acks: every maxUnacked
// items or ackInterval while the batch goes on, and once the batch is
// drained, which also covers items skipped as already applied.
//
// Redelivered items need nothing special: after a crash the host sends them
// one at a time, each once the one before it is acked.
func (d *delivery) process(ctx context.Context, req *pb.DeliverRequest, send func(*pb.DeliverResponse) error) error {
	if len(req.Items) == 0 {
		return nil
	}
	var outcomes []*pb.ItemOutcome
	unacked := 0
	lastAck := d.now()
	for _, item := range req.Items {
		d.mu.Lock()
		if item.Seq <= d.applied { // applied already (by this process, or in a restored snapshot)
			d.mu.Unlock()
			continue
		}
		if outcome := d.run(ctx, item); outcome != nil {
			outcomes = append(outcomes, outcome)
		}
		d.applied = item.Seq
		d.mu.Unlock()
		unacked++
		if unacked >= maxUnacked || d.now().Sub(lastAck) >= ackInterval {
			if err := send(d.ack(outcomes)); err != nil {
				return err
			}
			outcomes, unacked, lastAck = nil, 0, d.now()
		}
	}
	return send(d.ack(outcomes))
}

func (d *delivery) ack(outcomes []*pb.ItemOutcome) *pb.DeliverResponse {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &pb.DeliverResponse{AckedThrough: d.applied, Outcomes: outcomes}
}

// run applies one item and returns its outcome, or nil for a success without
// effects. A failed (or panicking) handler is reported, not retried, and its
// effects are dropped. Called with d.mu held.
func (d *delivery) run(ctx context.Context, item *pb.DeliveryItem) (outcome *pb.ItemOutcome) {
	pc := d.pc()
	h := &Handler{Context: pc, Seq: item.Seq}
	var what []any // log fields naming the item
	fail := func(err error) *pb.ItemOutcome {
		pc.Log.Error("handler failed", append(what, "error", err.Error())...)
		return &pb.ItemOutcome{Seq: item.Seq, Error: &pb.HandlerError{Message: err.Error()}}
	}
	defer func() {
		if r := recover(); r != nil {
			outcome = fail(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	var err error
	switch it := item.Item.(type) {
	case *pb.DeliveryItem_Payload:
		p := it.Payload
		what = []any{"seq", item.Seq, "kind", p.Kind}
		if !slices.Contains(d.plugin.PayloadKinds, p.Kind) {
			return fail(fmt.Errorf("plugin '%s' does not claim payload kind '%s'", d.plugin.Name, p.Kind))
		}
		err = d.plugin.HandlePayload(ctx, Payload{Seq: item.Seq, Src: p.Src, Kind: p.Kind, Body: p.Body, Redelivered: item.Redelivered}, h)
	case *pb.DeliveryItem_PeerForgotten:
		nodeID := it.PeerForgotten.NodeId
		what = []any{"seq", item.Seq, "forgotten_peer", hex.EncodeToString(nodeID)}
		if d.plugin.PeerForgotten != nil {
			err = d.plugin.PeerForgotten(ctx, nodeID, h)
		}
	default:
		what = []any{"seq", item.Seq}
		return fail(fmt.Errorf("plugin '%s' does not understand delivery item seq %d "+
			"(neither a payload nor a forgotten peer; is the host newer than this plugin?)", d.plugin.Name, item.Seq))
	}
	if err != nil {
		return fail(err)
	}
	if len(h.effects) == 0 {
		return nil
	}
	return &pb.ItemOutcome{Seq: item.Seq, Effects: h.effects}
}
