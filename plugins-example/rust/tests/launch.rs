//! Launches counter-rust as a host does (env, token line on stdin), reads its
//! handshake, and checks what the kit does not: only the host's connection
//! is served (protocol.md §6.3), and stdin EOF makes it exit 0.
use std::process::Stdio;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use plugwire::pb::plugin_service_client::PluginServiceClient;
use plugwire::pb::DescribeRequest;
use plugwire::tonic::transport::{Channel, Endpoint, Uri};
use plugwire::tonic::{Code, Request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Command;
use tower::service_fn;

const TOKEN: &str = "test-token-0123456789";

async fn connect(path: String) -> Channel {
    Endpoint::from_static("http://plugin")
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("dial the plugin")
}

async fn describe(ch: &Channel) -> Result<(), Code> {
    let mut req = Request::new(DescribeRequest { protocol_version: 1 });
    req.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    PluginServiceClient::new(ch.clone()).describe(req).await.map(|_| ()).map_err(|s| s.code())
}

#[tokio::test]
async fn serves_only_the_hosts_connection_and_exits_on_stdin_eof() {
    let dir = std::env::temp_dir().join(format!("pw-rs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_counter-rust"))
        .env_clear()
        .env("PLUGWIRE_MAGIC_COOKIE", plugwire::MAGIC_COOKIE)
        .env("PLUGWIRE_PROTOCOL_VERSIONS", "1")
        .env("PLUGWIRE_SOCKET_DIR", &dir)
        .env("PLUGWIRE_INSTANCE_ID", "counter-rust-1")
        .env("PLUGWIRE_HOST_ADDRESS", format!("unix://{}/host.sock", dir.display()))
        .env("PLUGWIRE_AUTH_TOKEN_SOURCE", "stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn counter-rust");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("PLUGWIRE_TOKEN {TOKEN}\n").as_bytes()).await.unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.expect("handshake in time").unwrap().unwrap();
    let address = line.split(' ').find_map(|f| f.strip_prefix("address=")).expect("address field").to_string();
    assert_eq!(address, format!("{}/counter-rust-1.sock", dir.display()));

    let host = connect(address.clone()).await;
    let other = connect(address.clone()).await;
    assert_eq!(describe(&host).await, Ok(()));
    assert_eq!(describe(&other).await, Err(Code::Unauthenticated), "a second connection is refused while the host's is open");
    assert_eq!(describe(&host).await, Ok(()));

    drop(stdin); // the host is gone
    let status = tokio::time::timeout(Duration::from_secs(1), child.wait()).await.expect("exit within 1 s of stdin EOF").unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!std::path::Path::new(&address).exists(), "the socket file is removed");
    let _ = std::fs::remove_dir_all(&dir);
}
