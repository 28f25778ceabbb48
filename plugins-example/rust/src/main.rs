//! counter-rust: a stateful plugin. It counts `rust.hit` payloads per peer,
//! answers `rust.echo` payloads with an effect (a SendDirect back to the
//! sender), wipes a peer's count when the host forgets the peer, and
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
        &["rust.hit", "rust.echo"]
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
            "rust.echo" => ctx.send_direct(&src, &body).await?,
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

/// Snapshot format 1: one `<peer hex> <count>` line per peer.
impl Stateful for Counter {
    fn id(&self) -> &str {
        "example.counter-rust"
    }

    fn versions(&self) -> &[u32] {
        &[1]
    }

    fn snapshot(&self) -> Result<Snapshot, StatefulError> {
        let mut text = String::new();
        for (peer, n) in self.counts.lock().unwrap().iter() {
            text.push_str(&format!("{peer} {n}\n"));
        }
        Ok(Snapshot { version: 1, bytes: text.into_bytes() })
    }

    fn restore(&self, _version: u32, bytes: &[u8]) -> Result<(), StatefulError> {
        let text = std::str::from_utf8(bytes).map_err(|e| StatefulError::RestoreFailed(format!("snapshot is not UTF-8: {e}")))?;
        let mut restored = BTreeMap::new();
        for line in text.lines() {
            let (peer, n) = line
                .split_once(' ')
                .ok_or_else(|| StatefulError::RestoreFailed(format!("line {line:?} is not '<peer> <count>'")))?;
            if peer.is_empty() || !peer.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(StatefulError::RestoreFailed(format!("peer {peer:?} is not hex")));
            }
            let n: u64 = n.parse().map_err(|_| StatefulError::RestoreFailed(format!("count {n:?} of {peer} is not a whole number")))?;
            restored.insert(peer.to_string(), n);
        }
        // Replace the state only once every entry checked out.
        *self.counts.lock().unwrap() = restored;
        Ok(())
    }
}

fn main() {
    plugwire::serve(Counter::default())
}
