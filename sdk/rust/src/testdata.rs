//! The shared test vectors, sdk/testdata/vectors.json (made by
//! scripts/generate-testdata.mjs from the TS contract; every SDK's tests read
//! it): prost decodes and encodes each message exactly (the decoded message,
//! mapped to protobuf's canonical JSON here, is the vector's JSON), and the
//! token line and protocol-version parsers agree with the host's.
use prost::Message;
use serde_json::{json, Map, Value};

use crate::env::{check_token_line, parse_versions};
use crate::pb;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/vectors.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).expect("sdk/testdata/vectors.json is JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An object of the fields whose value is not the default (protobuf's canonical JSON omits those).
fn obj(fields: Vec<(&str, Option<Value>)>) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    }
    Value::Object(m)
}

fn bytes_field(b: &[u8]) -> Option<Value> {
    (!b.is_empty()).then(|| json!(base64(b)))
}

fn u64_field(n: u64) -> Option<Value> {
    (n != 0).then(|| json!(n.to_string()))
}

fn str_field(s: &str) -> Option<Value> {
    (!s.is_empty()).then(|| json!(s))
}

fn list(items: Vec<Value>) -> Option<Value> {
    (!items.is_empty()).then(|| Value::Array(items))
}

fn header(h: &pb::SnapshotHeader) -> Value {
    obj(vec![
        ("id", str_field(&h.id)),
        ("version", (h.version != 0).then(|| json!(h.version))),
        ("appliedSeq", u64_field(h.applied_seq)),
        ("sizeBytes", u64_field(h.size_bytes)),
    ])
}

/// Decodes `wire` as `typ` and maps it to canonical JSON; also returns its re-encoding.
fn decode(typ: &str, wire: &[u8]) -> (Value, Vec<u8>) {
    use pb::delivery_item::Item;
    use pb::effect::Effect;
    match typ {
        "plugwire.v1.DeliverRequest" => {
            let m = pb::DeliverRequest::decode(wire).unwrap();
            let items = m
                .items
                .iter()
                .map(|it| {
                    let (key, value) = match &it.item {
                        Some(Item::Payload(p)) => ("payload", obj(vec![("src", bytes_field(&p.src)), ("kind", str_field(&p.kind)), ("body", bytes_field(&p.body))])),
                        Some(Item::PeerForgotten(f)) => ("peerForgotten", obj(vec![("nodeId", bytes_field(&f.node_id))])),
                        None => ("", Value::Null),
                    };
                    obj(vec![("seq", u64_field(it.seq)), ("redelivered", it.redelivered.then(|| json!(true))), (key, (!key.is_empty()).then_some(value))])
                })
                .collect();
            (obj(vec![("items", list(items))]), m.encode_to_vec())
        }
        "plugwire.v1.DeliverResponse" => {
            let m = pb::DeliverResponse::decode(wire).unwrap();
            let outcomes = m
                .outcomes
                .iter()
                .map(|o| {
                    let effects = o
                        .effects
                        .iter()
                        .map(|e| match &e.effect {
                            Some(Effect::SendDirect(s)) => json!({ "sendDirect": obj(vec![("peer", bytes_field(&s.peer)), ("frame", bytes_field(&s.frame))]) }),
                            None => json!({}),
                        })
                        .collect();
                    obj(vec![
                        ("seq", u64_field(o.seq)),
                        ("error", o.error.as_ref().map(|e| obj(vec![("message", str_field(&e.message))]))),
                        ("effects", list(effects)),
                    ])
                })
                .collect();
            (obj(vec![("ackedThrough", u64_field(m.acked_through)), ("outcomes", list(outcomes))]), m.encode_to_vec())
        }
        "plugwire.v1.SnapshotResponse" => {
            use pb::snapshot_response::Part;
            let m = pb::SnapshotResponse::decode(wire).unwrap();
            let v = match &m.part {
                Some(Part::Header(h)) => json!({ "header": header(h) }),
                Some(Part::Chunk(c)) => json!({ "chunk": base64(c) }),
                None => json!({}),
            };
            (v, m.encode_to_vec())
        }
        "plugwire.v1.RestoreRequest" => {
            use pb::restore_request::Part;
            let m = pb::RestoreRequest::decode(wire).unwrap();
            let v = match &m.part {
                Some(Part::Header(h)) => json!({ "header": header(h) }),
                Some(Part::Chunk(c)) => json!({ "chunk": base64(c) }),
                None => json!({}),
            };
            (v, m.encode_to_vec())
        }
        other => panic!("no Rust mapping for {other}: add it to sdk/rust/src/testdata.rs"),
    }
}

#[test]
fn base64_matches_the_standard_alphabet_with_padding() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
}

#[test]
fn messages_decode_to_the_vectors_json_and_encode_to_its_bytes() {
    let v = vectors();
    let messages = v["messages"].as_array().expect("messages");
    assert!(!messages.is_empty());
    for m in messages {
        let (typ, name, wire) = (m["type"].as_str().unwrap(), m["name"].as_str().unwrap(), unhex(m["hex"].as_str().unwrap()));
        let (decoded, encoded) = decode(typ, &wire);
        assert_eq!(decoded, m["json"], "{typ}: {name}: decoding the hex gives the vector's JSON");
        assert_eq!(hex(&encoded), hex(&wire), "{typ}: {name}: encoding gives the host's bytes");
    }
}

#[test]
fn token_lines_are_judged_like_the_host() {
    for t in vectors()["tokenLines"].as_array().unwrap() {
        let line = t["line"].as_str().unwrap();
        match t["token"].as_str() {
            Some(token) => assert_eq!(check_token_line(line.as_bytes()).as_deref(), Ok(token), "{line:?}"),
            None => assert!(check_token_line(line.as_bytes()).is_err(), "{line:?} must be refused"),
        }
    }
}

#[test]
fn handshake_lines_are_what_the_host_reads() {
    let v = vectors();
    let lines = v["handshakeLines"].as_array().expect("handshakeLines");
    assert!(!lines.is_empty());
    for h in lines {
        let line = crate::handshake_line(h["protocolVersion"].as_u64().unwrap() as u32, h["socketPath"].as_str().unwrap());
        assert_eq!(line, h["line"].as_str().unwrap());
    }
}

#[test]
fn version_lists_are_parsed_like_the_host() {
    for t in vectors()["versionLists"].as_array().unwrap() {
        let value = t["value"].as_str().unwrap();
        let want: Option<Vec<u32>> = t["versions"].as_array().map(|a| a.iter().map(|n| n.as_u64().unwrap() as u32).collect());
        assert_eq!(parse_versions(value), want, "{value:?}");
    }
}

#[test]
fn constants_and_limits() {
    let v = vectors();
    assert_eq!(v["limits"]["maxMessageBytes"], json!(crate::MAX_MESSAGE_BYTES));
    assert_eq!(v["limits"]["snapshotChunkBytes"], json!(crate::SNAPSHOT_CHUNK_BYTES));
    assert!(crate::SUPPORTED_VERSIONS.contains(&(v["protocolVersion"].as_u64().unwrap() as u32)));
}

/// The recorder plugin of the deliverStreams vectors.
#[derive(Default)]
struct VecRecorder {
    calls: std::sync::Mutex<Vec<Value>>,
}

impl crate::plugin::Plugin for VecRecorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn payload_kinds(&self) -> &[&str] {
        &["vec.hit", "vec.ping", "vec.fail"]
    }
    async fn handle_payload(&self, src: crate::plugin::NodeId, kind: &str, _body: Vec<u8>, ctx: &crate::context::Context) -> Result<(), crate::plugin::BoxError> {
        self.calls.lock().unwrap().push(json!({ "seq": ctx.seq().unwrap(), "item": "payload", "redelivered": ctx.redelivered() }));
        match kind {
            "vec.ping" => ctx.send_direct(&src, b"pong").await?,
            "vec.fail" => {
                ctx.send_direct(&src, b"dropped").await?;
                return Err("vec.fail fails".into());
            }
            _ => {}
        }
        Ok(())
    }
    async fn on_peer_forgotten(&self, peer: crate::plugin::NodeId, ctx: &crate::context::Context) -> Result<(), crate::plugin::BoxError> {
        self.calls.lock().unwrap().push(json!({ "seq": ctx.seq().unwrap(), "item": "forget", "redelivered": ctx.redelivered() }));
        ctx.send_direct(&peer, b"bye").await?;
        Ok(())
    }
}

#[tokio::test]
async fn deliver_streams_give_the_vectors_calls_acks_and_outcomes() {
    use std::sync::{Arc, RwLock};

    use crate::context::{self, Capability, Context};
    use crate::delivery::Delivery;
    use crate::host::HostClient;

    let v = vectors();
    let streams = v["deliverStreams"].as_array().expect("deliverStreams");
    assert!(!streams.is_empty());
    for s in streams {
        let name = s["name"].as_str().unwrap();
        let shared = Arc::new(context::Shared {
            plugin_name: "recorder".into(),
            launch: RwLock::new(context::Launch {
                data_dir: Default::default(),
                instance_id: "recorder-1".into(),
                config_json: "{}".into(),
                capabilities: vec![Capability::Control],
            }),
            host: HostClient::none(),
            cancel: tokio_util::sync::CancellationToken::new(),
        });
        let plugin = Arc::new(VecRecorder::default());
        let d = Delivery::new(plugin.clone(), Context { shared, item: None });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (id, _end) = d.open_stream(tx).await;
        for batch in s["batches"].as_array().unwrap() {
            let req = pb::DeliverRequest::decode(unhex(batch.as_str().unwrap()).as_slice()).unwrap();
            d.process(req, id).await;
        }
        let mut acks = vec![];
        while let Ok(m) = rx.try_recv() {
            acks.push(m.expect("an ack, not a status"));
        }
        assert_eq!(Value::Array(plugin.calls.lock().unwrap().clone()), s["calls"], "{name}: handler calls");
        let throughs: Vec<u64> = acks.iter().map(|a| a.acked_through).collect();
        assert!(throughs.windows(2).all(|w| w[0] <= w[1]), "{name}: acks never go down: {throughs:?}");
        assert_eq!(throughs.last().copied(), s["ackedThrough"].as_u64(), "{name}: acked through");
        let outcomes: Vec<Value> = acks
            .iter()
            .flat_map(|a| a.outcomes.iter())
            .map(|o| {
                let effects: Vec<Value> = o
                    .effects
                    .iter()
                    .map(|e| match &e.effect {
                        Some(pb::effect::Effect::SendDirect(sd)) => json!({ "peer": hex(&sd.peer), "frame": String::from_utf8_lossy(&sd.frame) }),
                        None => json!(null),
                    })
                    .collect();
                json!({ "seq": o.seq, "error": o.error.is_some(), "effects": effects })
            })
            .collect();
        assert_eq!(Value::Array(outcomes), s["outcomes"], "{name}: outcomes");
    }
}
