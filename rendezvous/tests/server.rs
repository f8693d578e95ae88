//! The rendezvous server on a real loopback socket, driven by real WebSocket clients:
//! admission, presence, relay, and every limit.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use hearth_proto::ids::DeviceId;
use hearth_proto::membership::{MembershipBody, MembershipRecord, Revocation};
use hearth_rendezvous::client::{self, ClientError, Event, Identity, Join};
use hearth_rendezvous::protocol::ErrorCode;
use hearth_rendezvous::server::Limits;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{join, limits, vault, Server};

async fn next_non_presence(c: &mut client::Connection) -> Event {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.next()).await.expect("event in time").unwrap() {
            Event::Presence(_) => continue,
            e => return e,
        }
    }
}

#[tokio::test]
async fn two_devices_see_each_other_and_exchange_signals() {
    let s = Server::start(limits()).await;
    let (_, ids) = vault(1, 2);
    let mut a = join(&s, &ids[0]).await;
    assert!(a.online.is_empty());
    let mut b = join(&s, &ids[1]).await;
    assert_eq!(b.online, vec![a.device]);
    assert_eq!(a.next().await.unwrap(), Event::Presence(vec![b.device]));
    // Every byte value survives the relay unchanged.
    let payload: Vec<u8> = (0..=255u8).cycle().take(5_000).collect();
    a.signal(b.device, &payload).await.unwrap();
    assert_eq!(next_non_presence(&mut b).await, Event::Signal { from: a.device, payload: payload.clone() });
    b.signal(a.device, b"answer").await.unwrap();
    assert_eq!(next_non_presence(&mut a).await, Event::Signal { from: b.device, payload: b"answer".to_vec() });
    // Unknown recipient: an error reply, and the connection stays usable.
    a.signal(DeviceId([0xAB; 16]), b"x").await.unwrap();
    assert!(matches!(next_non_presence(&mut a).await, Event::Error { code: ErrorCode::UnknownRecipient, .. }));
    b.close().await;
    assert_eq!(a.next().await.unwrap(), Event::Presence(vec![]));
    assert_eq!(s.metric("hearth_rv_signals_relayed_total", None), 2);
    s.stop().await;
}

#[tokio::test]
async fn strangers_and_forgeries_are_refused() {
    let s = Server::start(limits()).await;
    let (_, ids) = vault(1, 1);
    let (_, other) = vault(2, 1);
    // A record of another vault presented with this vault's root key.
    let mut forged = other[0].clone();
    forged.root = ids[0].root;
    let err = client::connect(&s.url(), &Join::Vault(Box::new(forged))).await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::AdmissionFailed, .. }), "{err}");
    // A device key that does not match its record.
    let mut wrong_key = ids[0].clone();
    wrong_key.device_key = SigningKey::from_bytes(&[77; 32]);
    assert!(matches!(
        client::connect(&s.url(), &Join::Vault(Box::new(wrong_key))).await,
        Err(ClientError::Refused { .. })
    ));
    // Another vault's own members get their own room, never this one's presence.
    let mut mine = join(&s, &ids[0]).await;
    let theirs = client::connect(&s.url(), &Join::Vault(Box::new(other[0].clone()))).await.unwrap();
    assert!(theirs.online.is_empty());
    mine.signal(theirs.device, b"hi").await.unwrap();
    assert!(matches!(next_non_presence(&mut mine).await, Event::Error { code: ErrorCode::UnknownRecipient, .. }));
    assert!(s.metric("hearth_rv_admission_failures_total", Some("bad_hello")) >= 2);
    s.stop().await;
}

/// Raw WebSocket for input the client library would never produce.
async fn raw(
    s: &Server,
) -> (tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, String) {
    let (mut ws, _) = tokio_tungstenite::connect_async(s.url()).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("no challenge") };
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["type"], "challenge");
    (ws, v["nonce"].as_str().unwrap().to_owned())
}

async fn close_code(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> (u16, Vec<String>) {
    let mut texts = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("close in time") {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), texts),
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let s = Server::start(limits()).await;
    let (_, ids) = vault(1, 1);
    // Garbage JSON.
    let (mut ws, _) = raw(&s).await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let (code, texts) = close_code(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(texts[0].contains("bad_message"), "{texts:?}");
    // A signal before admission.
    let (mut ws, _) = raw(&s).await;
    ws.send(Message::Text(r#"{"type":"signal","to":"00","payload":""}"#.into())).await.unwrap();
    let (code, texts) = close_code(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(texts[0].contains("not_admitted"), "{texts:?}");
    // Unknown type, truncated JSON.
    for bad in [r#"{"type":"teleport"}"#, r#"{"type":"hello","root_key":"#] {
        let (mut ws, _) = raw(&s).await;
        ws.send(Message::Text(bad.into())).await.unwrap();
        assert_eq!(close_code(&mut ws).await.0, 1008);
    }
    // Binary where text is expected.
    let (mut ws, _) = raw(&s).await;
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, 1003);
    // A replayed hello: signed over another connection's nonce.
    let (_, old_nonce) = raw(&s).await;
    let old = hearth_rendezvous::protocol::from_b64(&old_nonce).unwrap();
    let replay = hearth_rendezvous::protocol::sign_hello(
        &ids[0].root,
        &ids[0].record,
        &ids[0].device_key,
        &old,
        &s.addr.to_string(),
    );
    let (mut ws, _) = raw(&s).await;
    ws.send(Message::Text(serde_json::to_string(&replay).unwrap().into())).await.unwrap();
    let (code, texts) = close_code(&mut ws).await;
    assert_eq!(code, 1008);
    assert!(texts[0].contains("admission_failed"), "{texts:?}");
    // Oversized frame after admission.
    let mut c = join(&s, &ids[0]).await;
    c.send_raw(Message::Text("x".repeat(200_000).into())).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), c.next()).await.unwrap() {
        Err(ClientError::Closed { code, .. }) => assert_eq!(code, 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
    // Silence: the admission timeout closes it.
    let (mut ws, _) = raw(&s).await;
    assert_eq!(close_code(&mut ws).await.0, 1008);
    assert!(s.metric("hearth_rv_admission_failures_total", Some("timeout")) >= 1);
    s.stop().await;
}

#[tokio::test]
async fn a_flooding_connection_is_limited_and_other_rooms_keep_working() {
    let s = Server::start(Limits { messages_per_sec: 20, ..limits() }).await;
    let (_, ids) = vault(1, 2);
    let (_, others) = vault(3, 2);
    let mut flood = join(&s, &ids[0]).await;
    let mut sink = join(&s, &ids[1]).await;
    let mut x = client::connect(&s.url(), &Join::Vault(Box::new(others[0].clone()))).await.unwrap();
    let mut y = client::connect(&s.url(), &Join::Vault(Box::new(others[1].clone()))).await.unwrap();
    for i in 0..300 {
        flood.signal_with_id(sink.device, b"spam", Some(&format!("spam-{i}"))).await.unwrap();
    }
    // The other room is unaffected.
    x.signal(y.device, b"still here").await.unwrap();
    assert_eq!(next_non_presence(&mut y).await, Event::Signal { from: x.device, payload: b"still here".to_vec() });
    // The flooder was told, and most of its spam never reached the recipient.
    // The error names the signal that triggered it (the first one over the limit).
    let told = next_non_presence(&mut flood).await;
    let Event::Error { code: ErrorCode::RateLimited, id: Some(id), .. } = &told else { panic!("{told:?}") };
    let n: u32 = id.strip_prefix("spam-").and_then(|n| n.parse().ok()).unwrap();
    assert!((20..300).contains(&n), "{id}");
    let dropped = s.metric("hearth_rv_messages_dropped_total", Some("rate_limited"));
    assert!(dropped >= 200, "dropped {dropped}");
    let _ = &mut sink;
    s.stop().await;
}

#[tokio::test]
async fn connection_caps_and_room_size() {
    let s = Server::start(Limits {
        max_connections_per_ip: 3,
        max_room_size: 2,
        handshakes_per_ip_per_sec: 1000,
        ..limits()
    })
    .await;
    let (_, ids) = vault(1, 3);
    let a = join(&s, &ids[0]).await;
    let b = join(&s, &ids[1]).await;
    let err = client::connect(&s.url(), &Join::Vault(Box::new(ids[2].clone()))).await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::RoomFull, .. }), "{err}");
    // The refused third connection is gone; a fourth connection from this IP is still over
    // the per-IP cap only while three are open.
    let (_, others) = vault(5, 2);
    let c = client::connect(&s.url(), &Join::Vault(Box::new(others[0].clone()))).await.unwrap();
    let err = client::connect(&s.url(), &Join::Vault(Box::new(others[1].clone()))).await.unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    drop((a, b, c));
    s.stop().await;

    let s = Server::start(Limits { max_connections: 1, ..limits() }).await;
    let _one = join(&s, &ids[0]).await;
    let err = client::connect(&s.url(), &Join::Vault(Box::new(ids[1].clone()))).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(s.metric("hearth_rv_connections_rejected_total", Some("capacity")), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_not_buffered() {
    let s = Server::start(Limits { queue_len: 8, messages_per_sec: 100_000, ..limits() }).await;
    let (_, ids) = vault(1, 2);
    let mut fast = join(&s, &ids[0]).await;
    let slow = join(&s, &ids[1]).await;
    // `slow` never reads. Large payloads fill the socket buffers, then its queue of 8.
    let big = vec![7u8; 40_000];
    let mut kicked = false;
    for _ in 0..2_000 {
        fast.signal(slow.device, &big).await.unwrap();
        if s.metric("hearth_rv_messages_dropped_total", Some("slow_consumer")) > 0 {
            kicked = true;
            break;
        }
    }
    assert!(kicked, "the slow reader was never disconnected");
    // Reading now drains what was already in flight and ends with a policy close, not more
    // queued signals: the server dropped the connection instead of buffering for it.
    let mut slow = slow;
    let mut drained = 0usize;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .expect("the slow reader's connection ends")
        {
            Ok(_) => drained += 1,
            Err(e) => break e,
        }
    };
    match close {
        ClientError::Closed { code, reason } => {
            assert_eq!(code, 1008, "{reason}");
            assert!(reason.contains("too slow"), "{reason}");
        }
        other => panic!("expected a 1008 close, got {other}"),
    }
    assert!(drained < 2_000, "it was not buffered without bound ({drained} messages)");
    s.stop().await;
}

#[tokio::test]
async fn revoked_devices_are_removed_and_cannot_rejoin() {
    let s = Server::start(limits()).await;
    let (root, ids) = vault(1, 2);
    let mut a = join(&s, &ids[0]).await;
    let mut b = join(&s, &ids[1]).await;
    let vault_id = hearth_proto::vault_id_of(&root.verifying_key());
    let rec = MembershipRecord::sign(
        &root,
        MembershipBody::Revoke(Revocation { vault_id, device_id: b.device, last_seq: 0, last_hash: [0; 32], at_ms: 0 }),
    );
    a.revoke(&rec).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), b.next()).await.unwrap() {
            Err(ClientError::Closed { code, reason }) => {
                assert_eq!(code, 1008);
                assert!(reason.contains("revoked"));
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let err = client::connect(&s.url(), &Join::Vault(Box::new(ids[1].clone()))).await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::Revoked, .. }), "{err}");
    s.stop().await;
}

#[tokio::test]
async fn invite_rooms_hold_two() {
    let s = Server::start(limits()).await;
    let room = [9u8; 32];
    let mut a = client::connect(&s.url(), &Join::Invite(room)).await.unwrap();
    let mut b = client::connect(&s.url(), &Join::Invite(room)).await.unwrap();
    assert_eq!(b.online, vec![a.device]);
    let err = client::connect(&s.url(), &Join::Invite(room)).await.unwrap_err();
    assert!(matches!(err, ClientError::Refused { code: ErrorCode::RoomFull, .. }));
    b.signal(a.device, b"pake msg").await.unwrap();
    assert_eq!(next_non_presence(&mut a).await, Event::Signal { from: b.device, payload: b"pake msg".to_vec() });
    let _ = &mut b;
    s.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_with_going_away() {
    let s = Server::start(limits()).await;
    let (_, ids) = vault(1, 1);
    let mut a = join(&s, &ids[0]).await;
    let stop = tokio::spawn(s.stop());
    match tokio::time::timeout(Duration::from_secs(5), a.next()).await.unwrap() {
        Err(ClientError::Closed { code, .. }) => assert_eq!(code, 1001),
        other => panic!("{other:?}"),
    }
    stop.await.unwrap();
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let s = Server::start(Limits { idle_timeout: Duration::from_secs(1), ..limits() }).await;
    let (_, ids) = vault(1, 1);
    // A raw client that never answers pings (a library client would pong on its own, and
    // its late pong to an already closed socket would turn the close into a reset).
    let mut c = RawTcp::connect(&s).await;
    c.admit(&s, &ids[0]).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    loop {
        match c.frame().await {
            (0x9, _) => continue, // the pings it ignored
            (0x8, body) => {
                assert_eq!(&body[..2], &1008u16.to_be_bytes());
                assert!(String::from_utf8_lossy(&body[2..]).contains("idle"), "{body:?}");
                break;
            }
            other => panic!("expected pings then an idle close, got {other:?}"),
        }
    }
    assert_eq!(s.metric("hearth_rv_messages_dropped_total", Some("idle")), 1);
    s.stop().await;
}

#[tokio::test]
async fn new_connections_per_ip_are_rate_limited() {
    let s = Server::start(Limits { handshakes_per_ip_per_sec: 2, ..limits() }).await;
    let (_, ids) = vault(1, 8);
    // Burst of 4 (twice the rate) is allowed; the next ones in the same instant get 429.
    let mut refused = 0;
    let mut held = Vec::new();
    for id in &ids {
        match client::connect(&s.url(), &Join::Vault(Box::new(id.clone()))).await {
            Ok(c) => held.push(c),
            Err(e) => {
                assert!(e.to_string().contains("429"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused >= 3, "only {refused} refused");
    assert!(s.metric("hearth_rv_connections_rejected_total", Some("handshake_rate")) >= 3);
    drop(held);
    s.stop().await;
}

/// A WebSocket on a bare socket, for frames no client library would send.
struct RawTcp {
    io: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawTcp {
    async fn connect(s: &Server) -> Self {
        use tokio::io::AsyncWriteExt;
        let mut io = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let req = format!(
            "GET /v1/signal HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            s.addr
        );
        io.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Self { io, buf: Vec::new() };
        let end = loop {
            if let Some(i) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            raw.read_more().await;
        };
        let head = String::from_utf8_lossy(&raw.buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // RFC 6455 §1.3's example key and accept value.
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        raw.buf.drain(..end);
        raw
    }

    async fn read_more(&mut self) {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), self.io.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next server frame: opcode and payload.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                    126 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let op = self.buf[0] & 0x0F;
                    let body = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return (op, body);
                }
            }
            self.read_more().await;
        }
    }

    /// Reads the challenge and returns the signed hello for `id` (not sent).
    async fn hello(&mut self, s: &Server, id: &Identity) -> String {
        let (op, challenge) = self.frame().await;
        assert_eq!(op, 0x1);
        let v: serde_json::Value = serde_json::from_slice(&challenge).unwrap();
        let nonce = hearth_rendezvous::protocol::from_b64(v["nonce"].as_str().unwrap()).unwrap();
        let hello =
            hearth_rendezvous::protocol::sign_hello(&id.root, &id.record, &id.device_key, &nonce, &s.addr.to_string());
        serde_json::to_string(&hello).unwrap()
    }

    /// Sends the hello for `id` and waits for the welcome.
    async fn admit(&mut self, s: &Server, id: &Identity) {
        let hello = self.hello(s, id).await;
        let mut wire = Vec::new();
        hearth_rendezvous::ws::encode_masked(0x1, hello.as_bytes(), [7, 7, 7, 7], &mut wire);
        self.send(&wire).await;
        let (op, welcome) = self.frame().await;
        assert_eq!(op, 0x1);
        assert!(String::from_utf8_lossy(&welcome).contains("\"welcome\""));
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.io.write_all(bytes).await.unwrap();
    }
}

#[tokio::test]
async fn websocket_framing_edge_cases() {
    use hearth_rendezvous::ws::{self, opcode};
    let s = Server::start(limits()).await;
    let (_, ids) = vault(11, 1);
    // A hello in two fragments with a ping between them: the ping is answered, the hello
    // assembled and admitted.
    let mut c = RawTcp::connect(&s).await;
    let hello = c.hello(&s, &ids[0]).await;
    let (a, b) = hello.split_at(40);
    let mut wire = Vec::new();
    ws::encode_masked(opcode::TEXT, a.as_bytes(), [1, 2, 3, 4], &mut wire);
    wire[0] &= 0x7F; // not the final fragment
    ws::encode_masked(opcode::PING, b"hi", [5, 6, 7, 8], &mut wire);
    ws::encode_masked(opcode::CONTINUATION, b.as_bytes(), [9, 9, 9, 9], &mut wire);
    c.send(&wire).await;
    assert_eq!(c.frame().await, (opcode::PONG, b"hi".to_vec()));
    let (op, welcome) = c.frame().await;
    assert_eq!(op, opcode::TEXT);
    assert!(String::from_utf8_lossy(&welcome).contains("\"welcome\""));
    // An unmasked client frame breaks the protocol: close 1002.
    let mut unmasked = Vec::new();
    ws::encode(opcode::TEXT, b"{}", &mut unmasked);
    c.send(&unmasked).await;
    let (op, body) = c.frame().await;
    assert_eq!((op, &body[..2]), (opcode::CLOSE, &1002u16.to_be_bytes()[..]));
    // Text that is not UTF-8: close 1007, before admission too.
    let mut c = RawTcp::connect(&s).await;
    c.frame().await;
    let mut bad = Vec::new();
    ws::encode_masked(opcode::TEXT, &[0xC3, 0x28], [1, 1, 1, 1], &mut bad);
    c.send(&bad).await;
    let (op, body) = c.frame().await;
    assert_eq!((op, &body[..2]), (opcode::CLOSE, &1007u16.to_be_bytes()[..]));
    // A client's close is answered with its code.
    let mut c = RawTcp::connect(&s).await;
    c.frame().await;
    let mut close = Vec::new();
    ws::encode_masked(opcode::CLOSE, &1000u16.to_be_bytes(), [2, 2, 2, 2], &mut close);
    c.send(&close).await;
    assert_eq!(c.frame().await, (opcode::CLOSE, 1000u16.to_be_bytes().to_vec()));
    // Not a WebSocket upgrade at all: a plain 400.
    let plain = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut plain = RawTcp { io: plain, buf: Vec::new() };
    plain.send(b"GET /v1/signal HTTP/1.1\r\nHost: x\r\n\r\n").await;
    plain.read_more().await;
    assert!(plain.buf.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&plain.buf));
    // A reserved close code (1005 must never be sent) is a protocol error, not echoed.
    let mut c = RawTcp::connect(&s).await;
    c.frame().await;
    let mut close = Vec::new();
    ws::encode_masked(opcode::CLOSE, &1005u16.to_be_bytes(), [3, 3, 3, 3], &mut close);
    c.send(&close).await;
    let (op, body) = c.frame().await;
    assert_eq!((op, &body[..2]), (opcode::CLOSE, &1002u16.to_be_bytes()[..]));
    // A Sec-WebSocket-Key that is not 16 bytes of base64: 400.
    for key in ["c2hvcnQ=", "not base64 at all", ""] {
        let raw = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let mut raw = RawTcp { io: raw, buf: Vec::new() };
        let req = format!("GET /v1/signal HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n");
        raw.send(req.as_bytes()).await;
        raw.read_more().await;
        assert!(raw.buf.starts_with(b"HTTP/1.1 400"), "{key:?}: {}", String::from_utf8_lossy(&raw.buf));
    }
    s.stop().await;
}

#[tokio::test]
async fn signals_for_a_device_that_just_left_wait_in_its_mailbox() {
    let s = Server::start(limits()).await;
    let (_, ids) = vault(12, 2);
    let mut a = join(&s, &ids[0]).await;
    let b = join(&s, &ids[1]).await;
    let b_dev = b.device;
    assert_eq!(a.next().await.unwrap(), Event::Presence(vec![b_dev]));
    b.close().await;
    assert_eq!(a.next().await.unwrap(), Event::Presence(vec![]));
    // Held, not refused: the only error is for a device never seen here.
    a.signal(b_dev, b"while you were away").await.unwrap();
    a.signal(DeviceId([0xAB; 16]), b"x").await.unwrap();
    match next_non_presence(&mut a).await {
        Event::Error { code: ErrorCode::UnknownRecipient, message, .. } => {
            assert!(message.contains("abab"), "{message}")
        }
        other => panic!("expected the stranger's error, got {other:?}"),
    }
    // Back within the TTL: the held signal arrives, once.
    let mut b = join(&s, &ids[1]).await;
    assert_eq!(
        next_non_presence(&mut b).await,
        Event::Signal { from: a.device, payload: b"while you were away".to_vec() }
    );
    assert_eq!(s.metric("hearth_rv_signals_held_total", None), 1);
    s.stop().await;

    // Mailboxes off: a signal for a device that left is refused at once.
    let s = Server::start(Limits { mailbox_ttl: Duration::ZERO, ..limits() }).await;
    let mut a = join(&s, &ids[0]).await;
    let b = join(&s, &ids[1]).await;
    assert_eq!(a.next().await.unwrap(), Event::Presence(vec![b_dev]));
    b.close().await;
    assert_eq!(a.next().await.unwrap(), Event::Presence(vec![]));
    a.signal(b_dev, b"gone").await.unwrap();
    assert!(matches!(next_non_presence(&mut a).await, Event::Error { code: ErrorCode::UnknownRecipient, .. }));
    s.stop().await;
}

#[tokio::test]
async fn a_ping_is_answered_and_the_client_knows_when_it_last_heard_the_server() {
    let s = Server::start(limits()).await;
    let (_, ids) = vault(1, 1);
    let mut a = join(&s, &ids[0]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.silent_for() >= Duration::from_millis(300));
    a.ping().await.unwrap();
    // The pong is no event; reading for it still counts as hearing from the server.
    assert!(tokio::time::timeout(Duration::from_millis(100), a.next()).await.is_err(), "no event");
    // Unheard, it would be 400 ms by now.
    assert!(a.silent_for() < Duration::from_millis(250), "the pong was heard: {:?}", a.silent_for());
    s.stop().await;
}
