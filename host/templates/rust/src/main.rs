//! {{name}}: a plugwire plugin.
//!
//! - `{{name}}.ping` answers the sender with "pong:" + body, as an effect
//!   that rides on the payload's ack (the host performs it exactly once).
{{#stateful}}
//! - `{{name}}.hit` counts hits per peer; a forgotten peer's count is wiped.
//! - The counts are snapshotted as JSON (id `{{name}}.counts`, version 1),
//!   so they survive restarts and crashes: the host restores the latest
//!   snapshot and replays the payloads after it.
{{/stateful}}
//!
//! Build: `cargo build --release`; a host runs target/release/{{name}} (plugwire.yaml).
{{#stateful}}
use std::collections::BTreeMap;
use std::sync::Mutex;

use plugwire::{log, BoxError, Context, NodeId, Plugin, Snapshot, Stateful, StatefulError};
{{/stateful}}
{{^stateful}}
use plugwire::{log, BoxError, Context, NodeId, Plugin};
{{/stateful}}

#[derive(Default)]
{{#stateful}}
struct {{pascal}} {
    /// Hits by peer (hex node id).
    counts: Mutex<BTreeMap<String, u64>>,
}
{{/stateful}}
{{^stateful}}
struct {{pascal}};
{{/stateful}}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Plugin for {{pascal}} {
    fn name(&self) -> &str {
        "{{name}}"
    }

    fn payload_kinds(&self) -> &[&str] {
        &[{{#stateful}}"{{name}}.hit", {{/stateful}}"{{name}}.ping"]
    }

    async fn start(&self, _ctx: &Context) -> Result<(), BoxError> {
        log::info("{{name}} started", &[]);
        Ok(())
    }

    async fn handle_payload(
        &self,
        src: NodeId,
        kind: &str,
        body: Vec<u8>,
        ctx: &Context,
    ) -> Result<(), BoxError> {
{{#stateful}}
        if kind == "{{name}}.hit" {
            *self.counts.lock().unwrap().entry(hex(&src)).or_insert(0) += 1;
            return Ok(());
        }
{{/stateful}}
{{^stateful}}
        let _ = kind; // the SDK only passes claimed kinds: here, {{name}}.ping
{{/stateful}}
        ctx.send_direct(&src, &[b"pong:".as_slice(), &body].concat())
            .await?;
        Ok(())
    }

    async fn on_peer_forgotten(&self, peer: NodeId, _ctx: &Context) -> Result<(), BoxError> {
        let key = hex(&peer);
{{#stateful}}
        if self.counts.lock().unwrap().remove(&key).is_some() {
            log::info("wiped a forgotten peer's count", &[("peer", key.into())]);
        }
{{/stateful}}
{{^stateful}}
        // Drop whatever this plugin keeps about the peer.
        log::info("peer forgotten", &[("peer", key.into())]);
{{/stateful}}
        Ok(())
    }

    async fn shutdown(&self, _ctx: &Context) {
        log::info("{{name}} stopping", &[]);
    }
{{#stateful}}

    fn stateful(&self) -> Option<&dyn Stateful> {
        Some(self)
    }
{{/stateful}}
}
{{#stateful}}

/// Snapshot format 1: a JSON object of counts by peer (hex node id).
impl Stateful for {{pascal}} {
    fn id(&self) -> &str {
        "{{name}}.counts"
    }

    fn versions(&self) -> &[u32] {
        &[1]
    }

    fn snapshot(&self) -> Result<Snapshot, StatefulError> {
        let bytes = serde_json::to_vec(&*self.counts.lock().unwrap())
            .map_err(|e| StatefulError::SnapshotFailed(e.to_string()))?;
        Ok(Snapshot { version: 1, bytes })
    }

    /// Only called with a version in `versions` (the SDK refuses others).
    fn restore(&self, _version: u32, bytes: &[u8]) -> Result<(), StatefulError> {
        // Parse and check everything first; replace the state only then.
        let restored: BTreeMap<String, u64> = serde_json::from_slice(bytes).map_err(|e| {
            StatefulError::RestoreFailed(format!(
                "snapshot is not a JSON object of whole-number counts: {e}"
            ))
        })?;
        *self.counts.lock().unwrap() = restored;
        Ok(())
    }
}
{{/stateful}}

fn main() {
    plugwire::serve({{pascal}}::default())
}
