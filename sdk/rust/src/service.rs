//! plugwire.v1.PluginService and grpc.health.v1.Health over a Plugin.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::context::{Capability, Launch};
use crate::delivery::{self, Delivery};
use crate::health_pb::{self, health_check_response::ServingStatus};
use crate::life::Life;
use crate::pb;
use crate::plugin::{Plugin, StatefulError};
use crate::util::truncate_text;
use crate::{log, SNAPSHOT_CHUNK_BYTES};

/// A stream that ends (after what it already holds) once `stop` is cancelled.
pub(crate) struct Until<S> {
    inner: S,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Until<S> {
    pub(crate) fn new(inner: S, stop: CancellationToken) -> Self {
        Until { inner, stop: Box::pin(stop.cancelled_owned()) }
    }
}

impl<S: Stream + Unpin> Stream for Until<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<S::Item>> {
        if let Poll::Ready(v) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(v);
        }
        match self.stop.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future;

/// A status carrying a typed error in the `plugwire-error-bin` trailer (§11).
pub(crate) fn typed_status(plugin: &str, err: &StatefulError) -> Status {
    let (code, kind) = match err {
        StatefulError::SnapshotFailed(d) => {
            (Code::Internal, pb::error_detail::Kind::SnapshotFailed(pb::SnapshotFailed { details: truncate_text(d) }))
        }
        StatefulError::RestoreFailed(d) => {
            (Code::InvalidArgument, pb::error_detail::Kind::RestoreFailed(pb::RestoreFailed { details: truncate_text(d) }))
        }
        StatefulError::UnsupportedVersion { version, expected } => (
            Code::FailedPrecondition,
            pb::error_detail::Kind::UnsupportedVersion(pb::UnsupportedVersion { version: *version, expected: expected.clone() }),
        ),
    };
    let detail = pb::ErrorDetail { plugin: plugin.to_string(), kind: Some(kind) };
    let mut md = MetadataMap::new();
    md.insert_bin("plugwire-error-bin", MetadataValue::from_bytes(&detail.encode_to_vec()));
    Status::with_metadata(code, truncate_text(&format!("plugin '{plugin}': {err}")), md)
}

pub(crate) struct PluginSvc<P: Plugin> {
    pub(crate) delivery: Arc<Delivery<P>>,
    pub(crate) life: Arc<Life>,
    pub(crate) version: u32,
    pub(crate) name: String,
    pub(crate) kinds: Vec<String>,
    pub(crate) stateful: Option<(String, Vec<u32>)>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<P: Plugin> pb::plugin_service_server::PluginService for PluginSvc<P> {
    async fn describe(&self, req: Request<pb::DescribeRequest>) -> Result<Response<pb::DescribeResponse>, Status> {
        let asked = req.into_inner().protocol_version;
        if asked != self.version {
            return Err(Status::failed_precondition(format!(
                "plugin '{}' refused Describe: it handshook protocol {}, but Describe asked for protocol {asked}; the host must send the version of the handshake line",
                self.name, self.version
            )));
        }
        Ok(Response::new(pb::DescribeResponse {
            name: self.name.clone(),
            payload_kinds: self.kinds.clone(),
            protocol_version: self.version,
            stateful: self.stateful.as_ref().map(|(id, v)| pb::StatefulSurface { id: id.clone(), snapshot_versions: v.clone() }),
            sdk: Some(pb::SdkInfo { language: "rust".into(), version: crate::SDK_VERSION.into() }),
        }))
    }

    async fn start(&self, req: Request<pb::StartRequest>) -> Result<Response<pb::StartResponse>, Status> {
        let req = req.into_inner();
        let ctx = self.delivery.ctx.clone();
        {
            let mut l = ctx.shared.launch.write().unwrap();
            let instance_id = if req.instance_id.is_empty() { l.instance_id.clone() } else { req.instance_id };
            *l = Launch {
                data_dir: req.data_dir.into(),
                instance_id,
                config_json: if req.config_json.is_empty() { "{}".into() } else { req.config_json },
                capabilities: req.capabilities.iter().filter_map(|c| Capability::from_wire(*c)).collect(),
            };
        }
        let plugin = self.delivery.plugin.clone();
        let r = tokio::spawn(async move { plugin.start(&ctx).await }).await;
        match r {
            Ok(Ok(())) => Ok(Response::new(pb::StartResponse {})),
            Ok(Err(e)) => Err(Status::internal(truncate_text(&format!("plugin '{}' failed to start: {e}", self.name)))),
            Err(e) => Err(Status::internal(truncate_text(&format!("plugin '{}' start hook panicked: {e}", self.name)))),
        }
    }

    type DeliverStream = Until<tokio_stream::wrappers::UnboundedReceiverStream<Result<pb::DeliverResponse, Status>>>;

    async fn deliver(&self, req: Request<Streaming<pb::DeliverRequest>>) -> Result<Response<Self::DeliverStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let (id, end) = self.delivery.open_stream(tx).await;
        let d = self.delivery.clone();
        let stop = end.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    m = inbound.message() => match m {
                        Ok(Some(req)) => d.process(req, id).await,
                        _ => break,
                    },
                }
            }
            d.close_stream(id).await;
        });
        Ok(Response::new(Until::new(tokio_stream::wrappers::UnboundedReceiverStream::new(rx), end)))
    }

    type SnapshotStream = BoxStream<pb::SnapshotResponse>;

    async fn snapshot(&self, _req: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let Some((id, _)) = &self.stateful else {
            return Err(typed_status(&self.name, &StatefulError::SnapshotFailed("this plugin is not stateful".into())));
        };
        let (applied, snap) = {
            let st = self.delivery.exclusive().await;
            let plugin = self.delivery.plugin.clone();
            let snap = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plugin.stateful().expect("stateful").snapshot()))
                .unwrap_or_else(|_| Err(StatefulError::SnapshotFailed("snapshot hook panicked".into())));
            (st.applied, snap)
        };
        let snap = match snap {
            Ok(s) => s,
            Err(e) => {
                let e = match e {
                    StatefulError::SnapshotFailed(_) => e,
                    other => StatefulError::SnapshotFailed(other.to_string()),
                };
                log::error("snapshot failed", &[("error", log::Val::S(e.to_string()))]);
                return Err(typed_status(&self.name, &e));
            }
        };
        if !self.stateful.as_ref().unwrap().1.contains(&snap.version) {
            let e = StatefulError::SnapshotFailed(format!("snapshot hook returned version {}, which this plugin does not declare", snap.version));
            return Err(typed_status(&self.name, &e));
        }
        let header = pb::SnapshotHeader { id: id.clone(), version: snap.version, applied_seq: applied, size_bytes: snap.bytes.len() as u64 };
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let part = pb::snapshot_response::Part::Header(header);
            if tx.send(Ok(pb::SnapshotResponse { part: Some(part) })).await.is_err() {
                return;
            }
            for chunk in snap.bytes.chunks(SNAPSHOT_CHUNK_BYTES) {
                let part = pb::snapshot_response::Part::Chunk(chunk.to_vec());
                if tx.send(Ok(pb::SnapshotResponse { part: Some(part) })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn restore(&self, req: Request<Streaming<pb::RestoreRequest>>) -> Result<Response<pb::RestoreResponse>, Status> {
        let fail = |d: String| Err(typed_status(&self.name, &StatefulError::RestoreFailed(d)));
        let mut inbound = req.into_inner();
        let mut header: Option<pb::SnapshotHeader> = None;
        let mut data: Vec<u8> = Vec::new();
        while let Some(m) = inbound.message().await? {
            match m.part {
                Some(pb::restore_request::Part::Header(h)) => {
                    if header.is_some() {
                        return fail("the restore stream carried a second header".into());
                    }
                    data.reserve(h.size_bytes.min(64 << 20) as usize);
                    header = Some(h);
                }
                Some(pb::restore_request::Part::Chunk(c)) => {
                    let Some(h) = &header else { return fail("the restore stream carried a chunk before its header".into()) };
                    data.extend_from_slice(&c);
                    if data.len() as u64 > h.size_bytes {
                        return fail(format!("snapshot is longer than its header says: over {} bytes", h.size_bytes));
                    }
                }
                None => return fail("the restore stream carried a message with neither header nor chunk".into()),
            }
        }
        let Some((id, versions)) = &self.stateful else { return fail("this plugin is not stateful".into()) };
        let Some(h) = header else { return fail("the restore stream carried no header".into()) };
        if &h.id != id {
            return fail(format!("snapshot id '{}' is not this plugin's id '{id}'", h.id));
        }
        if data.len() as u64 != h.size_bytes {
            return fail(format!("snapshot was truncated: header says {} bytes, got {}", h.size_bytes, data.len()));
        }
        if !versions.contains(&h.version) {
            return Err(typed_status(&self.name, &StatefulError::UnsupportedVersion { version: h.version, expected: versions.clone() }));
        }
        let mut st = self.delivery.exclusive().await;
        let plugin = self.delivery.plugin.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plugin.stateful().expect("stateful").restore(h.version, &data)))
            .unwrap_or_else(|_| Err(StatefulError::RestoreFailed("restore hook panicked".into())));
        match r {
            Ok(()) => {
                delivery::restored(&mut st, h.applied_seq);
                Ok(Response::new(pb::RestoreResponse {}))
            }
            Err(e @ StatefulError::UnsupportedVersion { .. }) | Err(e @ StatefulError::RestoreFailed(_)) => Err(typed_status(&self.name, &e)),
            Err(StatefulError::SnapshotFailed(d)) => fail(d),
        }
    }

    async fn shutdown(&self, req: Request<pb::ShutdownRequest>) -> Result<Response<pb::ShutdownResponse>, Status> {
        let ms = req.into_inner().deadline_ms;
        let budget = if ms == 0 { Duration::from_millis(500) } else { Duration::from_millis(ms as u64) };
        self.life.shutdown(budget).await;
        // Reply first; the process exits once this call has finished.
        let life = self.life.clone();
        tokio::spawn(async move { life.exit().await });
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}

pub(crate) struct HealthSvc {
    pub(crate) serving: watch::Receiver<bool>,
    pub(crate) ended: CancellationToken,
}

fn status_of(serving: bool) -> health_pb::HealthCheckResponse {
    let s = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
    health_pb::HealthCheckResponse { status: s as i32 }
}

#[tonic::async_trait]
impl health_pb::health_server::Health for HealthSvc {
    async fn check(&self, _req: Request<health_pb::HealthCheckRequest>) -> Result<Response<health_pb::HealthCheckResponse>, Status> {
        Ok(Response::new(status_of(*self.serving.borrow())))
    }

    type WatchStream = BoxStream<health_pb::HealthCheckResponse>;

    async fn watch(&self, _req: Request<health_pb::HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let s = WatchStream::new(self.serving.clone()).map(|v| Ok(status_of(v)));
        Ok(Response::new(Box::pin(Until::new(Box::pin(s), self.ended.clone()))))
    }
}
