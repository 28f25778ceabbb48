//! The delivery loop (docs/protocol.md §8): items one at a time in seq
//! order, duplicates skipped, cumulative acks on the newest stream (after 512
//! items, 20 ms, or once no item waits), outcomes for errors and effects.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::context::Context;
use crate::log;
use crate::pb;
use crate::plugin::Plugin;
use crate::util::truncate_text;

/// Ack after this many items handled since the last ack.
pub const MAX_UNACKED: usize = 512;
/// Ack when this long has passed since the last ack.
pub const ACK_INTERVAL: Duration = Duration::from_millis(20);
/// Ack once the outcomes waiting for an ack carry this many effects.
pub const MAX_PENDING_EFFECTS: usize = 16_384;

pub(crate) type AckSender = mpsc::UnboundedSender<Result<pb::DeliverResponse, Status>>;

/// One Deliver stream as the plugin acks on it.
pub(crate) struct AckStream {
    pub(crate) id: u64,
    send: AckSender,
    /// Highest seq received on this stream: an ack on it never covers more.
    high: u64,
    /// acked_through of its last ack: acks on it never go down.
    acked: u64,
    /// Cancelled when the stream is superseded or the plugin exits: ends our side.
    pub(crate) end: CancellationToken,
}

pub(crate) struct State {
    pub(crate) applied: u64,
    stream: Option<AckStream>,
    outcomes: Vec<pb::ItemOutcome>,
    pending_effects: usize,
    unacked: usize,
    last_ack: Instant,
}

pub(crate) struct Delivery<P: Plugin> {
    pub(crate) plugin: Arc<P>,
    pub(crate) ctx: Context,
    pub(crate) state: Mutex<State>,
    stopping: AtomicBool,
    next_stream: AtomicU64,
    /// Cancelled when the plugin exits: every Deliver stream ends.
    pub(crate) ended: CancellationToken,
}

impl<P: Plugin> Delivery<P> {
    pub(crate) fn new(plugin: Arc<P>, ctx: Context) -> Self {
        Delivery {
            plugin,
            ctx,
            state: Mutex::new(State {
                applied: 0,
                stream: None,
                outcomes: Vec::new(),
                pending_effects: 0,
                unacked: 0,
                last_ack: Instant::now(),
            }),
            stopping: AtomicBool::new(false),
            next_stream: AtomicU64::new(1),
            ended: CancellationToken::new(),
        }
    }

    /// Makes a new stream the one acks go to, ending the one it supersedes.
    /// Nothing is acked on it before an item arrives on it. Outcomes not yet
    /// sent went with the old stream: the host redelivers those items, and
    /// this process skips them as duplicates.
    pub(crate) async fn open_stream(&self, send: AckSender) -> (u64, CancellationToken) {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let end = self.ended.child_token();
        let mut st = self.state.lock().await;
        if let Some(old) = st.stream.take() {
            old.end.cancel();
        }
        st.stream = Some(AckStream { id, send, high: 0, acked: 0, end: end.clone() });
        st.outcomes.clear();
        st.pending_effects = 0;
        st.last_ack = Instant::now();
        (id, end)
    }

    pub(crate) async fn close_stream(&self, id: u64) {
        let mut st = self.state.lock().await;
        if st.stream.as_ref().map(|s| s.id) == Some(id) {
            if let Some(s) = st.stream.take() {
                s.end.cancel();
            }
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Handles one DeliverRequest received on stream `id`.
    pub(crate) async fn process(&self, req: pb::DeliverRequest, id: u64) {
        let Some(last) = req.items.last().map(|i| i.seq) else { return };
        {
            let mut st = self.state.lock().await;
            if let Some(s) = st.stream.as_mut() {
                if s.id == id && last > s.high {
                    s.high = last;
                }
            }
        }
        for item in req.items {
            if self.is_stopping() {
                break;
            }
            let mut st = self.state.lock().await;
            if self.is_stopping() {
                break;
            }
            if item.seq <= st.applied {
                continue; // a duplicate: applied already (by this process, or in a restored snapshot)
            }
            let seq = item.seq;
            if let Some(outcome) = self.run(item).await {
                st.pending_effects += outcome.effects.len();
                st.outcomes.push(outcome);
            }
            st.applied = seq;
            st.unacked += 1;
            if st.unacked >= MAX_UNACKED || st.last_ack.elapsed() >= ACK_INTERVAL || st.pending_effects >= MAX_PENDING_EFFECTS {
                flush(&mut st);
            }
        }
        let mut st = self.state.lock().await;
        flush(&mut st);
    }

    /// Runs `f` between items, after sending the pending ack.
    pub(crate) async fn exclusive(&self) -> MutexGuard<'_, State> {
        let mut st = self.state.lock().await;
        flush(&mut st);
        st
    }

    /// Begins shutdown: no item starts from now on; once the running handler
    /// finished (waiting at most `budget`), the final ack goes out.
    pub(crate) async fn stop(&self, budget: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Ok(mut st) = tokio::time::timeout(budget, self.state.lock()).await {
            flush(&mut st);
        }
    }

    /// Runs one item's handler and returns its outcome: `None` for a success
    /// without effects. A failed (or panicking) handler is reported, not
    /// retried, and its effects are dropped.
    async fn run(&self, item: pb::DeliveryItem) -> Option<pb::ItemOutcome> {
        let name = self.plugin.name().to_string();
        let (ctx, scope) = self.ctx.for_item(item.seq, item.redelivered);
        let seq = item.seq;
        let fail = |message: String, what: &[(&str, log::Val)]| {
            let mut fields = vec![("seq", log::Val::U(seq)), ("error", log::Val::S(message.clone()))];
            fields.extend(what.iter().cloned());
            log::emit("error", "handler failed", &fields);
            Some(pb::ItemOutcome { seq, error: Some(pb::HandlerError { message: truncate_text(&message) }), effects: vec![] })
        };
        let plugin = self.plugin.clone();
        let result = match item.item {
            Some(pb::delivery_item::Item::Payload(p)) => {
                let what = [("kind", log::Val::S(p.kind.clone()))];
                if !plugin.payload_kinds().iter().any(|k| *k == p.kind) {
                    scope.state.lock().unwrap().closed = true;
                    return fail(format!("plugin '{name}' does not claim payload kind '{}'", p.kind), &what);
                }
                let task = tokio::spawn(async move { plugin.handle_payload(p.src, &p.kind, p.body, &ctx).await });
                (task.await, what.to_vec())
            }
            Some(pb::delivery_item::Item::PeerForgotten(f)) => {
                let what = vec![("forgotten_peer", log::Val::S(hex(&f.node_id)))];
                let task = tokio::spawn(async move { plugin.on_peer_forgotten(f.node_id, &ctx).await });
                (task.await, what)
            }
            None => {
                scope.state.lock().unwrap().closed = true;
                return fail(
                    format!(
                        "plugin '{name}' does not understand delivery item seq {seq} (neither a payload nor a forgotten peer; is the host newer than this plugin?)"
                    ),
                    &[],
                );
            }
        };
        let effects = {
            let mut st = scope.state.lock().unwrap();
            st.closed = true;
            std::mem::take(&mut st.effects)
        };
        match result {
            (Ok(Ok(())), _) if effects.is_empty() => None,
            (Ok(Ok(())), _) => Some(pb::ItemOutcome { seq, error: None, effects }),
            (Ok(Err(e)), what) => {
                // A failed host call (`?` on a tonic::Status) reads best as its message.
                let text = e.downcast_ref::<Status>().map(|s| s.message().to_string()).unwrap_or_else(|| e.to_string());
                fail(text, &what)
            }
            (Err(join), what) => {
                let msg = if join.is_panic() {
                    let p = join.into_panic();
                    let text = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    format!("handler panicked: {text}")
                } else {
                    "handler was cancelled".to_string()
                };
                fail(msg, &what)
            }
        }
    }
}

/// Records a restore: the state includes every item up to `seq` and nothing after it.
pub(crate) fn restored(st: &mut State, seq: u64) {
    st.applied = seq;
    st.outcomes.retain(|o| o.seq <= seq);
    st.pending_effects = st.outcomes.iter().map(|o| o.effects.len()).sum();
}

/// Sends the pending ack on the current stream if it advances it.
pub(crate) fn flush(st: &mut State) {
    let Some(s) = st.stream.as_mut() else { return };
    let through = st.applied.min(s.high);
    if through <= s.acked {
        return;
    }
    let (sent, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.outcomes).into_iter().partition(|o| o.seq <= through);
    st.outcomes = kept;
    st.pending_effects = st.outcomes.iter().map(|o| o.effects.len()).sum();
    s.acked = through;
    st.unacked = 0;
    st.last_ack = Instant::now();
    let _ = s.send.send(Ok(pb::DeliverResponse { acked_through: through, outcomes: sent }));
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
