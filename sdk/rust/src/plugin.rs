//! The traits a plugin implements: [`Plugin`] (the pim-plugin `DaemonPlugin`
//! seed) and [`Stateful`] (the bmux `StatefulPlugin` seed).
use std::fmt;
use std::future::Future;

use crate::context::Context;

/// A node id (the host's 32-byte peer id), as the host sent it.
pub type NodeId = Vec<u8>;

/// The error a handler or hook returns: anything that is an error (`?` works).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A plugin. The SDK calls the handlers one at a time, in the order of the
/// host's `Deliver` stream, and never while a snapshot or restore runs, so
/// a `std::sync::Mutex` around the plugin's state is never contended.
pub trait Plugin: Send + Sync + 'static {
    /// Stable name (1 to 64 characters of `[A-Za-z0-9._-]`), reported in `Describe`.
    fn name(&self) -> &str;

    /// The payload kinds this plugin claims (may be empty: a watch-only plugin).
    fn payload_kinds(&self) -> &[&str];

    /// Called once, from the host's `Start`. The context carries the data dir,
    /// the config and the host ports; it lives until shutdown.
    fn start(&self, _ctx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }

    /// Handles one payload of a claimed kind. An error becomes the item's error
    /// outcome (the item is acked and not retried); the effects it made are dropped.
    /// `ctx.send_direct` inside it is an effect that travels on the ack;
    /// `ctx.send_routed` carries the item's origin.
    fn handle_payload(
        &self,
        src: NodeId,
        kind: &str,
        body: Vec<u8>,
        ctx: &Context,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// The host forgot `peer`: drop any state kept for it. This is an item of
    /// the `Deliver` stream, ordered among the payloads and replayed like them.
    fn on_peer_forgotten(&self, _peer: NodeId, _ctx: &Context) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }

    /// Cleanup at shutdown (the host's `Shutdown`, SIGTERM, SIGINT or stdin EOF),
    /// after the final ack. It runs within the shutdown budget; the context's
    /// cancellation token is already cancelled.
    fn shutdown(&self, _ctx: &Context) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// `Some(self)` for a plugin whose state the host snapshots.
    fn stateful(&self) -> Option<&dyn Stateful> {
        None
    }
}

/// A snapshot of a stateful plugin's state: a format version and opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub version: u32,
    pub bytes: Vec<u8>,
}

/// The typed errors of snapshot and restore (the bmux seed's kinds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatefulError {
    /// The state could not be serialized (`snapshot_failed`).
    SnapshotFailed(String),
    /// The bytes could not be decoded or are not a valid state (`restore_failed`).
    RestoreFailed(String),
    /// The snapshot's format version is not one this plugin reads. Not fatal:
    /// the host discards its snapshots and the plugin goes on with its default state.
    UnsupportedVersion { version: u32, expected: Vec<u32> },
}

impl fmt::Display for StatefulError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatefulError::SnapshotFailed(d) => write!(f, "snapshot failed: {d}"),
            StatefulError::RestoreFailed(d) => write!(f, "restore failed: {d}"),
            StatefulError::UnsupportedVersion { version, expected } => {
                let e: Vec<String> = expected.iter().map(|v| v.to_string()).collect();
                write!(f, "cannot read snapshot version {version} (it reads {})", e.join(", "))
            }
        }
    }
}

impl std::error::Error for StatefulError {}

/// The snapshot surface of a stateful plugin. `snapshot` and `restore` run
/// between items, never while a handler runs.
pub trait Stateful: Send + Sync {
    /// Stable id of the state (1 to 128 printable ASCII characters without spaces).
    fn id(&self) -> &str;
    /// The snapshot format versions this plugin can restore (1 to 64, distinct).
    fn versions(&self) -> &[u32];
    /// Serializes the current state. The version must be one of `versions()`.
    fn snapshot(&self) -> Result<Snapshot, StatefulError>;
    /// Replaces the state with a snapshot's. Change nothing when it fails.
    /// `version` is always one of `versions()` (the SDK checks it first).
    fn restore(&self, version: u32, bytes: &[u8]) -> Result<(), StatefulError>;
}
