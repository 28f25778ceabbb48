//! What a plugin's hooks get: the launch's facts and the host ports
//! (the pim seed's `PeerDirectory`, `ControlSender`, `IdentitySecrets`).
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::host::HostClient;
use crate::pb;

/// A capability the host granted in `Start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// `LookupX25519`, `LookupName`, `WatchPeers`.
    Peers,
    /// `SendDirect`, `SendRouted`, and effects.
    Control,
    /// `GetSigningSeed`.
    Identity,
}

impl Capability {
    pub(crate) fn from_wire(v: i32) -> Option<Capability> {
        match pb::Capability::try_from(v).ok()? {
            pb::Capability::Peers => Some(Capability::Peers),
            pb::Capability::Control => Some(Capability::Control),
            pb::Capability::Identity => Some(Capability::Identity),
            pb::Capability::Unspecified => None,
        }
    }
}

pub(crate) struct Launch {
    pub(crate) data_dir: PathBuf,
    pub(crate) instance_id: String,
    pub(crate) config_json: String,
    pub(crate) capabilities: Vec<Capability>,
}

pub(crate) struct Shared {
    pub(crate) plugin_name: String,
    pub(crate) launch: RwLock<Launch>,
    pub(crate) host: HostClient,
    pub(crate) cancel: CancellationToken,
}

/// The item a handler is running for: its effects and its routed sends.
pub(crate) struct ItemScope {
    pub(crate) seq: u64,
    pub(crate) redelivered: bool,
    pub(crate) state: Mutex<ScopeState>,
}

#[derive(Default)]
pub(crate) struct ScopeState {
    pub(crate) effects: Vec<pb::Effect>,
    pub(crate) routed: u32,
    /// false once the handler returned: later sends go out as plain host calls.
    pub(crate) closed: bool,
}

/// The context of a plugin's hooks. Cheap to clone. Inside a handler it is
/// tied to the item being handled: `send_direct` records an effect that the
/// host performs when the item's ack arrives, and `send_routed` carries the
/// item's origin, as docs/protocol.md §8 requires.
#[derive(Clone)]
pub struct Context {
    pub(crate) shared: Arc<Shared>,
    pub(crate) item: Option<Arc<ItemScope>>,
}

/// One event of `watch_peers`.
pub type PeerEvent = pb::peer_event::Event;

/// The stream of `watch_peers`.
pub struct PeerEvents {
    inner: tonic::Streaming<pb::WatchPeersResponse>,
}

impl PeerEvents {
    /// The next event; `None` when the host ended the stream.
    pub async fn next(&mut self) -> Option<Result<PeerEvent, Status>> {
        loop {
            match self.inner.message().await {
                Ok(Some(m)) => {
                    if let Some(ev) = m.event.and_then(|e| e.event) {
                        return Some(Ok(ev));
                    }
                }
                Ok(None) => return None,
                Err(s) => return Some(Err(s)),
            }
        }
    }
}

impl Context {
    pub(crate) fn for_item(&self, seq: u64, redelivered: bool) -> (Context, Arc<ItemScope>) {
        let scope = Arc::new(ItemScope { seq, redelivered, state: Mutex::new(ScopeState::default()) });
        (Context { shared: self.shared.clone(), item: Some(scope.clone()) }, scope)
    }

    /// The name this plugin reports in `Describe`.
    pub fn plugin_name(&self) -> &str {
        &self.shared.plugin_name
    }
    /// The plugin's private data directory (from `Start`).
    pub fn data_dir(&self) -> PathBuf {
        self.shared.launch.read().unwrap().data_dir.clone()
    }
    /// This launch's instance id.
    pub fn instance_id(&self) -> String {
        self.shared.launch.read().unwrap().instance_id.clone()
    }
    /// The plugin's config as JSON object text (`{}` when there is none).
    pub fn config_json(&self) -> String {
        self.shared.launch.read().unwrap().config_json.clone()
    }
    /// The capabilities the host granted.
    pub fn capabilities(&self) -> Vec<Capability> {
        self.shared.launch.read().unwrap().capabilities.clone()
    }
    pub fn has_capability(&self, c: Capability) -> bool {
        self.shared.launch.read().unwrap().capabilities.contains(&c)
    }
    /// Cancelled when the plugin shuts down: stop long-running work on it.
    pub fn cancellation(&self) -> CancellationToken {
        self.shared.cancel.clone()
    }
    /// Inside a handler: the item's seq.
    pub fn seq(&self) -> Option<u64> {
        self.item.as_ref().map(|s| s.seq)
    }
    /// Inside a handler: whether the item may have been handled by an earlier launch.
    pub fn redelivered(&self) -> bool {
        self.item.as_ref().map(|s| s.redelivered).unwrap_or(false)
    }

    /// The peer's 32-byte X25519 key; `None` when the host does not know the peer.
    pub async fn lookup_x25519(&self, node_id: &[u8]) -> Result<Option<Vec<u8>>, Status> {
        let r = self.shared.host.client().lookup_x25519(pb::LookupX25519Request { node_id: node_id.to_vec() }).await?;
        Ok(r.into_inner().x25519_pub)
    }
    /// The peer's name; `None` when unknown.
    pub async fn lookup_name(&self, node_id: &[u8]) -> Result<Option<String>, Status> {
        let r = self.shared.host.client().lookup_name(pb::LookupNameRequest { node_id: node_id.to_vec() }).await?;
        Ok(r.into_inner().name)
    }
    /// Peer events published from now on (a live view; drop state on `on_peer_forgotten`, not here).
    pub async fn watch_peers(&self) -> Result<PeerEvents, Status> {
        let r = self.shared.host.client().watch_peers(pb::WatchPeersRequest {}).await?;
        Ok(PeerEvents { inner: r.into_inner() })
    }
    /// The 32-byte Ed25519 signing seed (needs the identity capability).
    pub async fn signing_seed(&self) -> Result<Vec<u8>, Status> {
        let r = self.shared.host.client().get_signing_seed(pb::GetSigningSeedRequest {}).await?;
        Ok(r.into_inner().seed)
    }

    /// Sends a control frame to a direct peer. Inside a handler this is an
    /// effect, performed by the host when the item's ack arrives (and dropped
    /// if the handler fails); it needs the control capability.
    pub async fn send_direct(&self, peer: &[u8], frame: &[u8]) -> Result<(), Status> {
        if let Some(scope) = &self.item {
            let mut st = scope.state.lock().unwrap();
            if !st.closed {
                if !self.has_capability(Capability::Control) {
                    return Err(Status::permission_denied(format!(
                        "plugin '{}' is not granted the control capability, so it cannot send_direct",
                        self.shared.plugin_name
                    )));
                }
                st.effects.push(pb::Effect {
                    effect: Some(pb::effect::Effect::SendDirect(pb::SendDirect { peer: peer.to_vec(), frame: frame.to_vec() })),
                });
                return Ok(());
            }
        }
        self.shared
            .host
            .client()
            .send_direct(pb::SendDirectRequest { send: Some(pb::SendDirect { peer: peer.to_vec(), frame: frame.to_vec() }) })
            .await?;
        Ok(())
    }

    /// Sends a control frame along a route; true if a route existed. Inside a
    /// handler it carries the item's origin, so a redelivered item is not sent twice.
    pub async fn send_routed(&self, dst: &[u8], frame: &[u8]) -> Result<bool, Status> {
        let mut origin = None;
        if let Some(scope) = &self.item {
            let mut st = scope.state.lock().unwrap();
            if !st.closed {
                origin = Some(pb::EffectOrigin { seq: scope.seq, index: st.routed });
                st.routed += 1;
            }
        }
        let r = self
            .shared
            .host
            .client()
            .send_routed(pb::SendRoutedRequest { dst: dst.to_vec(), frame: frame.to_vec(), origin })
            .await?;
        Ok(r.into_inner().routed)
    }
}
