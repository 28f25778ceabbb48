package plugwire

import (
	"context"
	"fmt"
	"slices"
	"sync"

	pb "github.com/plugwire/plugwire/plugins-example/go/gen/plugwire/v1"
)

// delivery runs payloads one at a time in seq order and acks them
// cumulatively. Its mutex also serializes snapshot, restore and
// PeerForgotten against handlers, so those always run between payloads.
type delivery struct {
	plugin *Plugin
	pc     func() *Context

	mu      sync.Mutex
	applied uint64 // seq of the last payload whose handler finished (or of the restored snapshot)
}

// exclusive runs fn between payloads and gives it the applied seq.
func (d *delivery) exclusive(fn func(applied *uint64) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fn(&d.applied)
}

// process handles one DeliverRequest and sends its acks: every maxUnacked
// payloads, and once at the end, which covers payloads skipped as duplicates.
func (d *delivery) process(ctx context.Context, req *pb.DeliverRequest, send func(*pb.DeliverResponse) error) error {
	if len(req.Payloads) == 0 {
		return nil
	}
	var outcomes []*pb.PayloadOutcome
	handled := 0
	for _, p := range req.Payloads {
		d.mu.Lock()
		if p.Seq <= d.applied { // already handled by this process
			d.mu.Unlock()
			continue
		}
		if outcome := d.run(ctx, p); outcome != nil {
			outcomes = append(outcomes, outcome)
		}
		d.applied = p.Seq
		d.mu.Unlock()
		handled++
		// Redelivered payloads are acked one by one, so that after another
		// crash the host knows exactly which payload was being handled.
		if p.Redelivered || handled%maxUnacked == 0 {
			if err := send(d.ack(outcomes)); err != nil {
				return err
			}
			outcomes = nil
		}
	}
	return send(d.ack(outcomes))
}

func (d *delivery) ack(outcomes []*pb.PayloadOutcome) *pb.DeliverResponse {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &pb.DeliverResponse{AckedThrough: d.applied, Outcomes: outcomes}
}

// run handles one payload and returns its outcome, or nil for a success
// without effects. Called with d.mu held.
func (d *delivery) run(ctx context.Context, p *pb.Payload) (outcome *pb.PayloadOutcome) {
	pc := d.pc()
	h := &Handler{Context: pc, Seq: p.Seq}
	fail := func(err error) *pb.PayloadOutcome {
		pc.Log.Error("payload handler failed", "seq", p.Seq, "kind", p.Kind, "error", err.Error())
		return &pb.PayloadOutcome{Seq: p.Seq, Error: &pb.HandlerError{Message: err.Error()}}
	}
	if !slices.Contains(d.plugin.PayloadKinds, p.Kind) {
		return fail(fmt.Errorf("plugin '%s' does not claim payload kind '%s'", d.plugin.Name, p.Kind))
	}
	defer func() {
		if r := recover(); r != nil {
			outcome = fail(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	payload := Payload{Seq: p.Seq, Src: p.Src, Kind: p.Kind, Body: p.Body, Redelivered: p.Redelivered}
	if err := d.plugin.HandlePayload(ctx, payload, h); err != nil {
		return fail(err)
	}
	if len(h.effects) == 0 {
		return nil
	}
	return &pb.PayloadOutcome{Seq: p.Seq, Effects: h.effects}
}
