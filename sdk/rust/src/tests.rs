//! Unit tests of the delivery loop (docs/protocol.md §8), without gRPC: the
//! acks a stream would carry are read from its channel.
use std::sync::{Arc, Mutex, RwLock};

use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::context::{self, Capability, Context};
use crate::delivery::{restored, Delivery};
use crate::host::HostClient;
use crate::pb;
use crate::plugin::{BoxError, NodeId, Plugin, StatefulError};

#[derive(Default)]
struct Fake {
    /// What the handlers saw, in order: "kind:seq" or "forget:<first byte>".
    seen: Mutex<Vec<String>>,
}

impl Plugin for Fake {
    fn name(&self) -> &str {
        "fake"
    }
    fn payload_kinds(&self) -> &[&str] {
        &["a", "echo", "fail", "panic"]
    }
    async fn handle_payload(&self, src: NodeId, kind: &str, body: Vec<u8>, ctx: &Context) -> Result<(), BoxError> {
        self.seen.lock().unwrap().push(format!("{kind}:{}", ctx.seq().unwrap()));
        match kind {
            "echo" => ctx.send_direct(&src, &body).await?,
            "fail" => {
                ctx.send_direct(&src, b"dropped").await?;
                return Err("it failed".into());
            }
            "panic" => panic!("boom"),
            _ => {}
        }
        Ok(())
    }
    async fn on_peer_forgotten(&self, peer: NodeId, _ctx: &Context) -> Result<(), BoxError> {
        self.seen.lock().unwrap().push(format!("forget:{}", peer[0]));
        Ok(())
    }
}

type Rx = mpsc::UnboundedReceiver<Result<pb::DeliverResponse, Status>>;

fn delivery(caps: Vec<Capability>) -> Arc<Delivery<Fake>> {
    let shared = Arc::new(context::Shared {
        plugin_name: "fake".into(),
        launch: RwLock::new(context::Launch {
            data_dir: Default::default(),
            instance_id: "fake-1".into(),
            config_json: "{}".into(),
            capabilities: caps,
        }),
        host: HostClient::none(),
        cancel: CancellationToken::new(),
    });
    let ctx = Context { shared, item: None };
    Arc::new(Delivery::new(Arc::new(Fake::default()), ctx))
}

async fn open(d: &Delivery<Fake>) -> (u64, CancellationToken, Rx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (id, end) = d.open_stream(tx).await;
    (id, end, rx)
}

fn payload(seq: u64, kind: &str, body: &[u8]) -> pb::DeliveryItem {
    pb::DeliveryItem {
        seq,
        redelivered: false,
        item: Some(pb::delivery_item::Item::Payload(pb::Payload { src: vec![7; 32], kind: kind.into(), body: body.to_vec() })),
    }
}

fn forget(seq: u64, first: u8) -> pb::DeliveryItem {
    pb::DeliveryItem { seq, redelivered: false, item: Some(pb::delivery_item::Item::PeerForgotten(pb::PeerForgotten { node_id: vec![first; 32] })) }
}

fn req(items: Vec<pb::DeliveryItem>) -> pb::DeliverRequest {
    pb::DeliverRequest { items }
}

fn acks(rx: &mut Rx) -> Vec<pb::DeliverResponse> {
    let mut out = vec![];
    while let Ok(m) = rx.try_recv() {
        out.push(m.expect("an ack, not a status"));
    }
    out
}

fn all_outcomes(acks: &[pb::DeliverResponse]) -> Vec<pb::ItemOutcome> {
    acks.iter().flat_map(|a| a.outcomes.clone()).collect()
}

#[tokio::test]
async fn a_drained_batch_is_acked_once_with_outcomes_only_for_errors_and_effects() {
    let d = delivery(vec![Capability::Control]);
    let (id, _end, mut rx) = open(&d).await;
    d.process(req(vec![payload(1, "a", b""), payload(2, "echo", b"hi"), payload(3, "nope", b""), payload(4, "a", b"")]), id).await;
    let a = acks(&mut rx);
    assert_eq!(a.last().unwrap().acked_through, 4);
    let o = all_outcomes(&a);
    assert_eq!(o.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(o[0].effects.len(), 1);
    assert!(o[0].error.is_none());
    match &o[0].effects[0].effect {
        Some(pb::effect::Effect::SendDirect(s)) => assert_eq!((s.peer.clone(), s.frame.clone()), (vec![7; 32], b"hi".to_vec())),
        other => panic!("unexpected effect {other:?}"),
    }
    assert!(o[1].effects.is_empty());
    assert_eq!(o[1].error.as_ref().unwrap().message, "plugin 'fake' does not claim payload kind 'nope'");
}

#[tokio::test]
async fn a_failed_or_panicking_handler_gets_an_error_outcome_and_its_effects_are_dropped() {
    let d = delivery(vec![Capability::Control]);
    let (id, _end, mut rx) = open(&d).await;
    d.process(req(vec![payload(1, "fail", b""), payload(2, "panic", b""), payload(3, "a", b"")]), id).await;
    let a = acks(&mut rx);
    assert_eq!(a.last().unwrap().acked_through, 3);
    let o = all_outcomes(&a);
    assert_eq!(o.len(), 2);
    assert_eq!(o[0].error.as_ref().unwrap().message, "it failed");
    assert!(o[0].effects.is_empty(), "a failed handler's effects are dropped");
    assert!(o[1].error.as_ref().unwrap().message.contains("panicked: boom"));
    // Not retried: each handler ran once.
    assert_eq!(*d.plugin.seen.lock().unwrap(), vec!["fail:1", "panic:2", "a:3"]);
}

#[tokio::test]
async fn send_direct_without_control_fails_the_handler() {
    let d = delivery(vec![]);
    let (id, _end, mut rx) = open(&d).await;
    d.process(req(vec![payload(1, "echo", b"hi")]), id).await;
    let o = all_outcomes(&acks(&mut rx));
    assert_eq!(o.len(), 1);
    assert!(o[0].error.as_ref().unwrap().message.contains("control capability"));
    assert!(o[0].effects.is_empty());
}

#[tokio::test]
async fn duplicates_are_skipped_without_outcome_and_the_ack_covers_them() {
    let d = delivery(vec![Capability::Control]);
    let (id, _end, mut rx) = open(&d).await;
    d.process(req(vec![payload(1, "a", b""), payload(2, "nope", b"")]), id).await;
    assert_eq!(acks(&mut rx).last().unwrap().acked_through, 2);
    // Redelivered 1 and 2 (2 would fail again), then a new 3.
    d.process(req(vec![payload(1, "a", b""), payload(2, "nope", b""), payload(3, "echo", b"x")]), id).await;
    let a = acks(&mut rx);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].acked_through, 3);
    assert_eq!(a[0].outcomes.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![3]);
    // Only duplicates: nothing new to ack.
    d.process(req(vec![payload(2, "a", b""), payload(3, "a", b"")]), id).await;
    assert!(acks(&mut rx).is_empty());
    assert_eq!(*d.plugin.seen.lock().unwrap(), vec!["a:1", "echo:3"]);
}

#[tokio::test]
async fn forgets_are_items_handled_in_seq_order_and_acked_like_payloads() {
    let d = delivery(vec![]);
    let (id, _end, mut rx) = open(&d).await;
    d.process(req(vec![payload(1, "a", b""), payload(2, "nope", b""), forget(3, 9), payload(4, "a", b""), forget(5, 8)]), id).await;
    d.process(req(vec![forget(6, 7)]), id).await;
    let a = acks(&mut rx);
    assert_eq!(a.iter().map(|a| a.acked_through).collect::<Vec<_>>(), vec![5, 6]);
    assert_eq!(a[0].outcomes.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![2]);
    assert_eq!(*d.plugin.seen.lock().unwrap(), vec!["a:1", "forget:9", "a:4", "forget:8", "forget:7"]);
}

#[tokio::test]
async fn an_item_that_is_neither_payload_nor_forget_gets_an_error_outcome() {
    let d = delivery(vec![]);
    let (id, _end, mut rx) = open(&d).await;
    d.process(req(vec![pb::DeliveryItem { seq: 1, redelivered: false, item: None }]), id).await;
    let o = all_outcomes(&acks(&mut rx));
    assert!(o[0].error.as_ref().unwrap().message.contains("does not understand delivery item seq 1"));
}

#[tokio::test]
async fn acks_come_at_least_every_512_items_and_when_the_batch_drains() {
    let d = delivery(vec![]);
    let (id, _end, mut rx) = open(&d).await;
    let items: Vec<_> = (1..=1100).map(|s| payload(s, "a", b"")).collect();
    d.process(req(items), id).await;
    let a = acks(&mut rx);
    let mut prev = 0;
    for ack in &a {
        assert!(ack.acked_through > prev, "acks never go down or repeat");
        assert!(ack.acked_through - prev <= 512, "an ack covered {} items", ack.acked_through - prev);
        prev = ack.acked_through;
    }
    assert_eq!(prev, 1100);
}

#[tokio::test]
async fn a_new_stream_gets_no_ack_before_an_item_and_never_past_what_it_carried() {
    let d = delivery(vec![]);
    let (id1, end1, mut rx1) = open(&d).await;
    d.process(req((1..=10).map(|s| payload(s, "a", b"")).collect()), id1).await;
    assert_eq!(acks(&mut rx1).last().unwrap().acked_through, 10);
    let (id2, _end2, mut rx2) = open(&d).await;
    assert!(end1.is_cancelled(), "the superseded stream is ended");
    assert!(acks(&mut rx2).is_empty(), "no ack on a new stream before an item arrives");
    // The host sends 4..=6 again, redelivered: acked through 6 (what the stream carried), not 10.
    d.process(req((4..=6).map(|s| payload(s, "a", b"")).collect()), id2).await;
    let a = acks(&mut rx2);
    assert_eq!(a.iter().map(|a| a.acked_through).collect::<Vec<_>>(), vec![6]);
    assert!(a[0].outcomes.is_empty());
    d.process(req((7..=12).map(|s| payload(s, "a", b"")).collect()), id2).await;
    assert_eq!(acks(&mut rx2).last().unwrap().acked_through, 12);
    assert!(acks(&mut rx1).is_empty(), "acks go on the newest stream only");
    assert_eq!(d.plugin.seen.lock().unwrap().len(), 12);
}

#[tokio::test]
async fn a_restore_moves_the_applied_seq_and_acks_never_go_down() {
    let d = delivery(vec![]);
    let (id, _end, mut rx) = open(&d).await;
    d.process(req((1..=5).map(|s| payload(s, "a", b"")).collect()), id).await;
    assert_eq!(acks(&mut rx).last().unwrap().acked_through, 5);
    restored(&mut *d.exclusive().await, 2);
    // Replay of 3..=5 after the restore: handled again; no ack until past 5.
    d.process(req((3..=5).map(|s| payload(s, "a", b"")).collect()), id).await;
    assert!(acks(&mut rx).is_empty(), "an ack that does not advance is not sent");
    d.process(req(vec![payload(6, "a", b"")]), id).await;
    assert_eq!(acks(&mut rx).last().unwrap().acked_through, 6);
    assert_eq!(d.plugin.seen.lock().unwrap().len(), 9);
}

#[tokio::test]
async fn after_stop_no_item_starts_and_the_final_ack_covers_what_finished() {
    let d = delivery(vec![]);
    let (id, _end, mut rx) = open(&d).await;
    d.process(req(vec![payload(1, "a", b"")]), id).await;
    acks(&mut rx);
    d.stop(std::time::Duration::from_millis(100)).await;
    d.process(req(vec![payload(2, "a", b"")]), id).await;
    assert!(acks(&mut rx).is_empty());
    assert_eq!(d.plugin.seen.lock().unwrap().len(), 1);
}

#[test]
fn typed_errors_carry_the_error_detail_trailer() {
    let s = crate::service::typed_status("fake", &StatefulError::UnsupportedVersion { version: 3, expected: vec![1, 2] });
    assert_eq!(s.code(), tonic::Code::FailedPrecondition);
    let raw = s.metadata().get_bin("plugwire-error-bin").unwrap().to_bytes().unwrap();
    let detail = pb::ErrorDetail::decode(raw).unwrap();
    assert_eq!(detail.plugin, "fake");
    assert_eq!(
        detail.kind,
        Some(pb::error_detail::Kind::UnsupportedVersion(pb::UnsupportedVersion { version: 3, expected: vec![1, 2] }))
    );
    let s = crate::service::typed_status("fake", &StatefulError::RestoreFailed("x".repeat(10_000)));
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().len() <= crate::util::MAX_ERROR_TEXT_BYTES);
    assert_eq!(crate::service::typed_status("fake", &StatefulError::SnapshotFailed("x".into())).code(), tonic::Code::Internal);
}

#[test]
fn error_texts_are_cut_on_a_character_boundary() {
    let t = crate::util::truncate_text(&"é".repeat(5000));
    assert!(t.len() <= 4096);
    assert!(t.ends_with("…(truncated, 10000 bytes)"));
    assert!(crate::util::ct_eq(b"abc", b"abc") && !crate::util::ct_eq(b"abc", b"abd") && !crate::util::ct_eq(b"ab", b"abc"));
}
