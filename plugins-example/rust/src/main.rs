//! counter-rust: a stateful plugin. It counts `rust.hit` payloads per peer,
//! answers `rust.ping` payloads with "pong:" + body as an effect (a
//! SendDirect back to the sender, performed when the item is acked), wipes a peer's count when the host forgets the peer, and
//! snapshots its counts so a restart (or a crash) resumes where it was.
use std::collections::BTreeMap;
use std::sync::Mutex;

use plugwire::{log, BoxError, Context, NodeId, Plugin, Snapshot, Stateful, StatefulError};

#[derive(Default)]
struct Counter {
    counts: Mutex<BTreeMap<String, u64>>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Plugin for Counter {
    fn name(&self) -> &str {
        "counter-rust"
    }

    fn payload_kinds(&self) -> &[&str] {
        &["rust.hit", "rust.ping"]
    }

    async fn start(&self, ctx: &Context) -> Result<(), BoxError> {
        log::info("counter-rust started", &[("data_dir", ctx.data_dir().display().to_string().into())]);
        Ok(())
    }

    async fn handle_payload(&self, src: NodeId, kind: &str, body: Vec<u8>, ctx: &Context) -> Result<(), BoxError> {
        match kind {
            "rust.hit" => {
                *self.counts.lock().unwrap().entry(hex(&src)).or_insert(0) += 1;
            }
            "rust.ping" => ctx.send_direct(&src, &[b"pong:".as_slice(), &body].concat()).await?,
            _ => unreachable!("the SDK only passes claimed kinds"),
        }
        Ok(())
    }

    async fn on_peer_forgotten(&self, peer: NodeId, _ctx: &Context) -> Result<(), BoxError> {
        let key = hex(&peer);
        if self.counts.lock().unwrap().remove(&key).is_some() {
            log::info("wiped a forgotten peer's count", &[("peer", key.into())]);
        }
        Ok(())
    }

    async fn shutdown(&self, _ctx: &Context) {
        log::info("counter-rust stopping", &[]);
    }

    fn stateful(&self) -> Option<&dyn Stateful> {
        Some(self)
    }
}

/// Snapshot format 1: a JSON object of counts by peer (hex node id), the
/// same format as the TS, Python and Go counters.
impl Stateful for Counter {
    fn id(&self) -> &str {
        "example.counter-rust"
    }

    fn versions(&self) -> &[u32] {
        &[1]
    }

    fn snapshot(&self) -> Result<Snapshot, StatefulError> {
        let bytes = serde_json::to_vec(&*self.counts.lock().unwrap()).map_err(|e| StatefulError::SnapshotFailed(e.to_string()))?;
        Ok(Snapshot { version: 1, bytes })
    }

    fn restore(&self, _version: u32, bytes: &[u8]) -> Result<(), StatefulError> {
        // Parse and check everything first; replace the state only then.
        let restored: BTreeMap<String, u64> = serde_json::from_slice(bytes)
            .map_err(|e| StatefulError::RestoreFailed(format!("snapshot is not a JSON object of whole-number counts: {e}")))?;
        *self.counts.lock().unwrap() = restored;
        Ok(())
    }
}

fn main() {
    plugwire::serve(Counter::default())
}
