//! # plugwire
//!
//! Write [plugwire](../../docs/protocol.md) plugins in Rust. Implement
//! [`Plugin`] (and [`Stateful`] for a plugin whose state the host
//! snapshots), then call [`serve`] from `main`: it checks the launch
//! environment, reads the token line, listens on the unix socket, prints the
//! handshake, and serves `PluginService` and `Health` with the delivery
//! semantics of docs/protocol.md §8 until the host stops the plugin.
//!
//! ```no_run
//! use plugwire::{BoxError, Context, NodeId, Plugin};
//!
//! struct Echo;
//!
//! impl Plugin for Echo {
//!     fn name(&self) -> &str { "echo-rust" }
//!     fn payload_kinds(&self) -> &[&str] { &["echo.rust"] }
//!     async fn handle_payload(&self, src: NodeId, _kind: &str, body: Vec<u8>, ctx: &Context) -> Result<(), BoxError> {
//!         ctx.send_direct(&src, &body).await?; // an effect, performed when the item is acked
//!         Ok(())
//!     }
//! }
//!
//! fn main() { plugwire::serve(Echo) }
//! ```

mod conn;
mod context;
mod delivery;
mod env;
mod host;
mod life;
pub mod log;
mod plugin;
mod service;
#[cfg(test)]
mod testdata;
mod util;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Status};

pub use context::{Capability, Context, PeerEvent, PeerEvents};
pub use delivery::{ACK_INTERVAL, MAX_PENDING_EFFECTS, MAX_UNACKED};
pub use env::{MAGIC_COOKIE, SUPPORTED_VERSIONS};
pub use plugin::{BoxError, NodeId, Plugin, Snapshot, Stateful, StatefulError};
pub use tonic;

/// The generated `plugwire.v1` messages and services.
pub mod pb {
    tonic::include_proto!("plugwire.v1");
}

/// The generated `grpc.health.v1` messages and service.
pub mod health_pb {
    tonic::include_proto!("grpc.health.v1");
}

/// The line printed once the socket listens (docs/protocol.md §5), with its LF.
pub(crate) fn handshake_line(version: u32, socket_path: &str) -> String {
    format!("PLUGWIRE_HANDSHAKE protocol={version} network=unix address={socket_path} transport=grpc\n")
}

/// The SDK version reported in `Describe.sdk`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Max message size on both ends (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Snapshot chunk size (the TS SDK's 1 MiB, docs/protocol.md §13).
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Shutdown budget for SIGTERM, SIGINT, stdin EOF and `Shutdown{deadline_ms: 0}`.
pub const EXIT_BUDGET: Duration = Duration::from_millis(500);
/// How long the server may take to stop gracefully once the plugin exits.
const STOP_GRACE: Duration = Duration::from_millis(400);

fn die(name: &str, msg: &str) -> ! {
    eprintln!("plugwire plugin '{name}': {msg}");
    std::process::exit(1)
}

/// Checks a plugin's definition as the host would at Describe (§7, §13).
fn validate(name: &str, kinds: &[String], stateful: &Option<(String, Vec<u32>)>) -> Result<(), String> {
    let printable = |s: &str| s.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(format!("name {name:?} must be 1 to 64 characters of [A-Za-z0-9._-]"));
    }
    if kinds.len() > 1024 {
        return Err(format!("claims {} payload kinds, over 1024", kinds.len()));
    }
    for (i, k) in kinds.iter().enumerate() {
        if k.is_empty() || k.len() > 128 || !printable(k) {
            return Err(format!("payload kind {k:?} must be 1 to 128 printable ASCII characters without spaces"));
        }
        if kinds[..i].contains(k) {
            return Err(format!("payload kind {k:?} is listed twice"));
        }
    }
    if let Some((id, versions)) = stateful {
        if id.is_empty() || id.len() > 128 || !printable(id) {
            return Err(format!("stateful id {id:?} must be 1 to 128 printable ASCII characters without spaces"));
        }
        if versions.is_empty() || versions.len() > 64 {
            return Err("stateful versions must list 1 to 64 versions".into());
        }
        for (i, v) in versions.iter().enumerate() {
            if versions[..i].contains(v) {
                return Err(format!("stateful version {v} is listed twice"));
            }
        }
    }
    Ok(())
}

/// Runs the plugin until the host stops it, then exits the process (0 after
/// a requested stop, 1 on a bad launch environment).
pub fn serve<P: Plugin>(plugin: P) -> ! {
    let name = plugin.name().to_string();
    if std::env::var("PLUGWIRE_MAGIC_COOKIE").as_deref() != Ok(MAGIC_COOKIE) {
        let program = std::env::args().next().unwrap_or_else(|| "plugin".into());
        let program = std::path::Path::new(&program).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or(program);
        eprintln!("This is a plugwire plugin ({program}); it is started by a plugwire host, not run directly.");
        eprintln!("Add it to a host config and run `plugwire run --config FILE`, or test it with `plugwire check -- COMMAND`.");
        std::process::exit(1);
    }
    let kinds: Vec<String> = plugin.payload_kinds().iter().map(|k| k.to_string()).collect();
    let stateful = plugin.stateful().map(|s| (s.id().to_string(), s.versions().to_vec()));
    if let Err(e) = validate(&name, &kinds, &stateful) {
        die(&name, &format!("invalid plugin definition: {e}"));
    }
    let (version, socket_path, host_address, instance_id, source) = env::check_env().unwrap_or_else(|e| die(&name, &e));
    let (eof_tx, eof_rx) = oneshot::channel();
    let token = match source {
        env::TokenSource::Stdin => {
            let rx = env::watch_stdin(true, eof_tx).expect("token channel");
            env::wait_token(rx)
        }
        env::TokenSource::Env => {
            env::watch_stdin(false, eof_tx);
            env::env_token()
        }
    }
    .unwrap_or_else(|e| die(&name, &e));

    // A panic in a hook is reported as the item's error; log it as one JSON line.
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        log::error("panic", &[("error", log::Val::S(msg)), ("at", log::Val::S(at))]);
    }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&name, &format!("cannot start the tokio runtime: {e}")));
    let code = rt.block_on(run(plugin, name, kinds, stateful, version, socket_path, host_address, instance_id, token, eof_rx));
    std::process::exit(code)
}

#[allow(clippy::too_many_arguments)]
async fn run<P: Plugin>(
    plugin: P,
    name: String,
    kinds: Vec<String>,
    stateful: Option<(String, Vec<u32>)>,
    version: u32,
    socket_path: String,
    host_address: String,
    instance_id: String,
    token: String,
    eof: oneshot::Receiver<()>,
) -> i32 {
    let shared = Arc::new(context::Shared {
        plugin_name: name.clone(),
        launch: RwLock::new(context::Launch {
            data_dir: Default::default(),
            instance_id,
            config_json: "{}".into(),
            capabilities: vec![],
        }),
        host: host::HostClient::new(&host_address, &token),
        cancel: CancellationToken::new(),
    });
    let ctx = Context { shared: shared.clone(), item: None };
    let plugin = Arc::new(plugin);
    let delivery = Arc::new(delivery::Delivery::new(plugin.clone(), ctx.clone()));
    let (serving_tx, serving_rx) = watch::channel(true);
    let stop: life::StopFn = {
        let delivery = delivery.clone();
        let plugin = plugin.clone();
        let ctx = ctx.clone();
        Box::new(move |budget: Duration| {
            let delivery = delivery.clone();
            let plugin = plugin.clone();
            let ctx = ctx.clone();
            Box::pin(async move {
                let started = tokio::time::Instant::now();
                delivery.stop(budget).await;
                ctx.shared.cancel.cancel();
                let rest = budget.saturating_sub(started.elapsed());
                let hook = tokio::spawn(async move { plugin.shutdown(&ctx).await });
                let _ = tokio::time::timeout(rest, hook).await;
            })
        })
    };
    let life = Arc::new(life::Life::new(serving_tx, stop));

    // stdin EOF, SIGTERM, SIGINT: the same shutdown, then exit. Set up before
    // the handshake, so a signal right after it is not fatal.
    {
        let life = life.clone();
        tokio::spawn(async move {
            if eof.await.is_ok() {
                life.shutdown(EXIT_BUDGET).await;
                life.exit().await;
            }
        });
    }
    for kind in [tokio::signal::unix::SignalKind::terminate(), tokio::signal::unix::SignalKind::interrupt()] {
        let life = life.clone();
        if let Ok(mut sig) = tokio::signal::unix::signal(kind) {
            tokio::spawn(async move {
                if sig.recv().await.is_some() {
                    life.shutdown(EXIT_BUDGET).await;
                    life.exit().await;
                }
            });
        }
    }

    // Listen, chmod 0600, print the handshake.
    let _ = std::fs::remove_file(&socket_path);
    let listener = match tokio::net::UnixListener::bind(&socket_path) {
        Ok(l) => l,
        Err(e) => die(&name, &format!("cannot listen on {socket_path}: {e}")),
    };
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600)) {
            die(&name, &format!("cannot chmod {socket_path} to 0600: {e}"));
        }
    }

    let expected: MetadataValue<_> = format!("Bearer {token}").parse().expect("token is printable ASCII");
    let auth_name = name.clone();
    let owner = conn::Owner::default();
    let auth_owner = owner.clone();
    let auth = move |req: Request<()>| -> Result<Request<()>, Status> {
        let values: Vec<_> = req.metadata().get_all("authorization").iter().collect();
        if values.len() != 1 || !util::ct_eq(values[0].as_bytes(), expected.as_bytes()) {
            return Err(Status::unauthenticated(format!(
                "plugin '{auth_name}' refused a call: the call carried no valid plugwire auth token (send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')"
            )));
        }
        // §6.3: only the host's connection is served.
        if let Some(conn::ConnId(id)) = req.extensions().get::<conn::ConnId>().copied() {
            if !auth_owner.admit(id) {
                return Err(Status::unauthenticated(format!(
                    "plugin '{auth_name}' refused a call: it serves one connection, its host's, and another connection is already the host's; only the host that started this plugin may call it (docs/protocol.md §6)"
                )));
            }
        }
        Ok(req)
    };
    let plugin_svc = service::PluginSvc {
        delivery: delivery.clone(),
        life: life.clone(),
        version,
        name: name.clone(),
        kinds,
        stateful,
    };
    let plugin_server = pb::plugin_service_server::PluginServiceServer::new(plugin_svc)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let health_server = health_pb::health_server::HealthServer::new(service::HealthSvc { serving: serving_rx, ended: delivery.ended.clone() });
    let exit = life.exit.clone();
    let server = tonic::transport::Server::builder()
        .add_service(InterceptedService::new(plugin_server, auth.clone()))
        .add_service(InterceptedService::new(health_server, auth))
        .serve_with_incoming_shutdown(
            {
                use tokio_stream::StreamExt;
                tokio_stream::wrappers::UnixListenerStream::new(listener).map(move |r| r.map(|s| conn::ConnIo::new(s, owner.clone())))
            },
            exit.clone().cancelled_owned(),
        );

    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(handshake_line(version, &socket_path).as_bytes());
        let _ = out.flush();
    }
    let server = tokio::spawn(server);

    exit.cancelled().await;
    delivery.ended.cancel();
    let _ = tokio::time::timeout(STOP_GRACE, server).await;
    let _ = std::fs::remove_file(&socket_path);
    0
}

#[cfg(test)]
mod tests;
