//! The client of the host's `HostService`: one lazy connection to
//! `PLUGWIRE_HOST_ADDRESS`, the auth header on every call, 16 MiB messages.
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status};
use tower::service_fn;

use crate::pb::host_service_client::HostServiceClient;
use crate::MAX_MESSAGE_BYTES;

/// Adds `authorization: Bearer <token>` to every call, once.
#[derive(Clone)]
pub(crate) struct AuthFn(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for AuthFn {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub(crate) type Client = HostServiceClient<InterceptedService<Channel, AuthFn>>;

pub(crate) struct HostClient {
    client: Option<Client>,
}

/// The socket path of a `unix:` gRPC target (`unix:///p`, `unix:/p`, `unix:p`).
pub(crate) fn unix_path(address: &str) -> Option<String> {
    let rest = address.strip_prefix("unix://").or_else(|| address.strip_prefix("unix:"))?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.to_string())
}

impl HostClient {
    pub(crate) fn new(address: &str, token: &str) -> HostClient {
        let Some(path) = unix_path(address) else {
            return HostClient { client: None };
        };
        let channel = Endpoint::from_static("http://plugwire-host")
            .connect_with_connector_lazy(service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            }));
        let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("token is printable ASCII");
        let auth = AuthFn(value);
        let client = HostServiceClient::with_interceptor(channel, auth)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        HostClient { client: Some(client) }
    }

    /// A client for tests, where no host runs.
    #[cfg(test)]
    pub(crate) fn none() -> HostClient {
        HostClient { client: None }
    }

    pub(crate) fn client(&self) -> ClientOrErr {
        ClientOrErr(self.client.clone())
    }
}

/// A client handle whose calls fail with UNAVAILABLE when there is no host address.
pub(crate) struct ClientOrErr(Option<Client>);

macro_rules! forward {
    ($name:ident, $req:ty, $resp:ty) => {
        pub(crate) async fn $name(self, req: $req) -> Result<tonic::Response<$resp>, Status> {
            match self.0 {
                Some(mut c) => c.$name(req).await,
                None => Err(Status::unavailable("PLUGWIRE_HOST_ADDRESS is not a unix: target")),
            }
        }
    };
}

use crate::pb;
impl ClientOrErr {
    forward!(lookup_x25519, pb::LookupX25519Request, pb::LookupX25519Response);
    forward!(lookup_name, pb::LookupNameRequest, pb::LookupNameResponse);
    forward!(watch_peers, pb::WatchPeersRequest, tonic::Streaming<pb::WatchPeersResponse>);
    forward!(send_direct, pb::SendDirectRequest, pb::SendDirectResponse);
    forward!(send_routed, pb::SendRoutedRequest, pb::SendRoutedResponse);
    forward!(get_signing_seed, pb::GetSigningSeedRequest, pb::GetSigningSeedResponse);
}
