//! The signaling protocol at `GET /v1/signal`: JSON text messages tagged by `type`.
//!
//! ```text
//! server → {"type":"challenge","version":1,"nonce":"<b64 32 bytes>"}
//! client → {"type":"hello","root_key":"<b64>","record":"<b64 postcard MembershipRecord>","sig":"<b64>"}
//!        | {"type":"hello_invite","room":"<hex sha256(invite secret)>"}
//! server → {"type":"welcome","device":"<hex>","online":["<hex>", ...]}
//! server → {"type":"presence","online":[...]}                  (on every join/leave)
//! client → {"type":"signal","to":"<hex>","payload":"<b64>","id":"<optional, ≤ 64 chars>"}
//! server → {"type":"signal","from":"<hex>","payload":"<b64>"}  (byte-identical payload)
//! client → {"type":"revoke","record":"<b64 postcard MembershipRecord>"}
//! server → {"type":"error","code":"...","message":"...","id":"<the signal's id, if any>"}
//! ```
//! The hello signature is the device key's ed25519 signature over
//! `"hearth/v1/rendezvous-hello\0" ‖ nonce ‖ authority`, where `authority` is the server name
//! the client dialled ([`authority_of`]: lowercase, default port dropped). The server checks it
//! against its own configured public names, never against the request's `Host` header, so a
//! hello cannot be replayed with another nonce or relayed through another server.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hearth_proto::ids::{DeviceId, VaultId};
use hearth_proto::membership::{MembershipBody, MembershipError, MembershipRecord};
use serde::{Deserialize, Serialize};

/// Protocol version announced in the challenge.
pub const VERSION: u32 = 1;
/// Domain tag of the hello signature.
const HELLO_DOMAIN: &[u8] = b"hearth/v1/rendezvous-hello\0";

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message: prove membership by signing this nonce.
    Challenge {
        /// Protocol version.
        version: u32,
        /// Base64 of 32 random bytes.
        nonce: String,
    },
    /// Admitted. `device` is this connection's id in the room.
    Welcome {
        /// The connection's device id (hex); for invite rooms a random id.
        device: String,
        /// Other members online (hex).
        online: Vec<String>,
        /// Credentials for the server's TURN relay (vault devices, when one is configured).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turn: Option<TurnCredentials>,
    },
    /// Who of the room is online now.
    Presence {
        /// Members online (hex), this connection excluded.
        online: Vec<String>,
    },
    /// A relayed signal.
    Signal {
        /// Sender's device id (hex), as authenticated by the server.
        from: String,
        /// The sender's payload, unchanged.
        payload: String,
    },
    /// Something went wrong; `code` is stable, `message` is for people.
    Error {
        /// Stable code (see [`ErrorCode`]).
        code: ErrorCode,
        /// Human explanation.
        message: String,
        /// The `id` of the signal this error is about, when its sender gave one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

/// Time-limited credentials for a TURN server that shares a secret with the rendezvous
/// (coturn's `use-auth-secret`: the username is the expiry in Unix seconds, the password
/// base64(HMAC-SHA1(secret, username))).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnCredentials {
    /// `turn:HOST:PORT` URLs of the relay.
    pub urls: Vec<String>,
    /// The username.
    pub username: String,
    /// The password.
    pub credential: String,
    /// When they stop working (Unix seconds).
    pub expires: u64,
}

impl TurnCredentials {
    /// Credentials valid until `now_unix + ttl_secs`, for a TURN server with `secret`.
    pub fn issue(urls: &[String], secret: &[u8], now_unix: u64, ttl_secs: u64) -> Self {
        use hmac::{Hmac, Mac};
        let expires = now_unix.saturating_add(ttl_secs);
        let username = expires.to_string();
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        let credential = match Hmac::<sha1::Sha1>::new_from_slice(secret) {
            Ok(mut m) => {
                m.update(username.as_bytes());
                to_b64(&m.finalize().into_bytes())
            }
            Err(_) => String::new(),
        };
        Self { urls: urls.to_vec(), username, credential, expires }
    }
}

/// Messages clients send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    /// Join the vault's room.
    Hello {
        /// Base64 vault root public key (its hash is the vault id).
        root_key: String,
        /// Base64 postcard of this device's enrolment record.
        record: String,
        /// Base64 signature by the device key over the challenge (see module docs).
        sig: String,
    },
    /// Join a two-member pairing room.
    HelloInvite {
        /// Hex SHA-256 of the invite secret.
        room: String,
    },
    /// Relay `payload` to device `to` in the same room.
    Signal {
        /// Recipient device id (hex).
        to: String,
        /// Opaque base64 payload (sealed and signed by the peers).
        payload: String,
        /// The sender's name for this signal (at most [`MAX_SIGNAL_ID`] characters), echoed
        /// in any error about it so the sender knows which signal was refused or dropped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Publish a root-signed revocation: the device is removed and refused from now on.
    Revoke {
        /// Base64 postcard of the revocation record.
        record: String,
    },
}

/// Stable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not valid JSON or not a known message.
    BadMessage,
    /// A message that needs admission came before it.
    NotAdmitted,
    /// Hello did not verify.
    AdmissionFailed,
    /// The device has been revoked.
    Revoked,
    /// The recipient is not online in this room.
    UnknownRecipient,
    /// Too many messages; this one was dropped.
    RateLimited,
    /// The room is full.
    RoomFull,
    /// The server is at capacity.
    Busy,
    /// The recipient may be connected to another replica, and the state replicas share
    /// (Redis) cannot be reached right now: try again shortly.
    Unavailable,
    /// A code this version does not know (a newer server's): treat as a failure.
    #[serde(other)]
    Unknown,
}

/// Longest signal `id` the server accepts (it is echoed, never stored).
pub const MAX_SIGNAL_ID: usize = 64;

/// Why a hello or revocation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmitError {
    /// A field is not valid base64/hex/postcard or has the wrong length.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The record is not an enrolment.
    #[error("record is not an enrolment")]
    NotEnrollment,
    /// The membership record does not verify under the root key.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The nonce signature does not verify under the enrolled device key.
    #[error("challenge signature does not verify")]
    BadSignature,
}

/// Who a verified hello admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The room: the vault.
    pub vault: VaultId,
    /// The device.
    pub device: DeviceId,
}

fn b64(field: &'static str, s: &str) -> Result<Vec<u8>, AdmitError> {
    B64.decode(s).map_err(|_| AdmitError::Malformed(field))
}

/// Encodes bytes as standard base64.
pub fn to_b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes standard base64.
pub fn from_b64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}

fn hello_bytes(nonce: &[u8], host: &str) -> Vec<u8> {
    let mut v = HELLO_DOMAIN.to_vec();
    v.extend_from_slice(nonce);
    v.extend_from_slice(host.as_bytes());
    v
}

fn root_key(s: &str) -> Result<VerifyingKey, AdmitError> {
    let raw: [u8; 32] = b64("root_key", s)?.try_into().map_err(|_| AdmitError::Malformed("root_key"))?;
    VerifyingKey::from_bytes(&raw).map_err(|_| AdmitError::Malformed("root_key"))
}

fn record(s: &str) -> Result<MembershipRecord, AdmitError> {
    postcard::from_bytes(&b64("record", s)?).map_err(|_| AdmitError::Malformed("record"))
}

/// Builds a hello for device `device_key` enrolled by `record` in the vault of `root`.
pub fn sign_hello(
    root: &VerifyingKey,
    record: &MembershipRecord,
    device_key: &SigningKey,
    nonce: &[u8],
    host: &str,
) -> ClientMsg {
    ClientMsg::Hello {
        root_key: to_b64(root.as_bytes()),
        record: to_b64(&postcard::to_stdvec(record).unwrap_or_default()),
        sig: to_b64(&device_key.sign(&hello_bytes(nonce, host)).to_bytes()),
    }
}

/// Verifies a hello against the challenge `nonce`, signed for one of `names` (this
/// server's public names, normalised by [`public_name`]).
pub fn verify_hello<S: AsRef<str>>(
    root_key_b64: &str,
    record_b64: &str,
    sig_b64: &str,
    nonce: &[u8],
    names: &[S],
) -> Result<Admitted, AdmitError> {
    let root = root_key(root_key_b64)?;
    let vault = hearth_proto::vault_id_of(&root);
    let rec = record(record_b64)?;
    rec.verify(&root, vault)?;
    let MembershipBody::Enroll(e) = &rec.body else { return Err(AdmitError::NotEnrollment) };
    let sig: [u8; 64] = b64("sig", sig_b64)?.try_into().map_err(|_| AdmitError::Malformed("sig"))?;
    let device_pk = VerifyingKey::from_bytes(&e.sign_pk).map_err(|_| AdmitError::Malformed("record"))?;
    let sig = Signature::from_bytes(&sig);
    if !names.iter().any(|n| device_pk.verify(&hello_bytes(nonce, n.as_ref()), &sig).is_ok()) {
        return Err(AdmitError::BadSignature);
    }
    Ok(Admitted { vault, device: e.device_id })
}

/// The authority a client signs for the server it dialled: lowercase host, `:port` only when
/// it is not the scheme's default, no user info. `None` for a URL without a host.
pub fn authority_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "wss" | "https" => Some(443),
        "ws" | "http" => Some(80),
        _ => None,
    };
    normalise(authority, default)
}

/// A configured public name (`--public-host HOST[:PORT]`) in the form clients sign: lowercase,
/// and `:443`/`:80` dropped (the defaults of `wss`/`ws`). `None` if it is not a host name.
pub fn public_name(s: &str) -> Option<String> {
    let a = normalise(s.trim(), Some(443))?;
    normalise(&a, Some(80))
}

fn normalise(authority: &str, default_port: Option<u16>) -> Option<String> {
    let a = authority.to_ascii_lowercase();
    // Split off a port: after a `]` for IPv6 literals, else after the only `:`.
    let (host, port) = match a.rfind(':') {
        Some(i) if a.starts_with('[') && a[..i].ends_with(']') => (&a[..i], Some(&a[i + 1..])),
        Some(i) if !a.starts_with('[') && a.matches(':').count() == 1 => (&a[..i], Some(&a[i + 1..])),
        _ => (a.as_str(), None),
    };
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']');
    if host.is_empty() || !host.chars().all(ok_char) {
        return None;
    }
    match port {
        None => Some(host.to_owned()),
        Some(p) => {
            let p: u16 = p.parse().ok()?;
            Some(if Some(p) == default_port { host.to_owned() } else { format!("{host}:{p}") })
        }
    }
}

/// Verifies a revocation record for `vault` under the room's root key; returns the device.
pub fn verify_revocation(root_key_b64: &str, record_b64: &str, vault: VaultId) -> Result<DeviceId, AdmitError> {
    let root = root_key(root_key_b64)?;
    let rec = record(record_b64)?;
    rec.verify(&root, vault)?;
    match rec.body {
        // A fork settlement shuts the forked id out too (the device re-enrols under a new one).
        MembershipBody::Revoke(r) | MembershipBody::Fork(r) => Ok(r.device_id),
        MembershipBody::Enroll(_) | MembershipBody::Retire(_) => Err(AdmitError::Malformed("record")),
    }
}

/// Parses a hex device id.
pub fn parse_device(s: &str) -> Option<DeviceId> {
    DeviceId::from_hex(s)
}

/// Parses a hex invite room (32 bytes).
pub fn parse_invite_room(s: &str) -> Option<[u8; 32]> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).ok()?;
    Some(b)
}

/// A `signal` as the server reads it on its hot path: borrowed from the frame, no copies
/// unless the client used JSON escapes. Anything else falls back to [`ClientMsg`].
#[derive(Debug, Deserialize)]
pub struct SignalIn<'a> {
    /// Must be `"signal"`.
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    /// Recipient device id (hex).
    #[serde(borrow)]
    pub to: std::borrow::Cow<'a, str>,
    /// Opaque payload.
    #[serde(borrow)]
    pub payload: std::borrow::Cow<'a, str>,
    /// The sender's id for this signal.
    #[serde(default, borrow)]
    pub id: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> SignalIn<'a> {
    /// Parses `text` if it is a `signal` message.
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str::<SignalIn<'a>>(text).ok().filter(|s| s.kind == "signal")
    }
}

/// The relayed form of a signal: the same JSON as [`ServerMsg::Signal`], built from borrows.
pub fn signal_out(from: &str, payload: &str) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        from: &'a str,
        payload: &'a str,
    }
    serde_json::to_string(&Out { kind: "signal", from, payload }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::membership::Enrollment;

    fn setup() -> (SigningKey, SigningKey, MembershipRecord) {
        let root = SigningKey::from_bytes(&[1; 32]);
        let dev = SigningKey::from_bytes(&[2; 32]);
        let rec = MembershipRecord::sign(
            &root,
            MembershipBody::Enroll(Enrollment {
                vault_id: hearth_proto::vault_id_of(&root.verifying_key()),
                device_id: DeviceId([3; 16]),
                sign_pk: dev.verifying_key().to_bytes(),
                dh_pk: [4; 32],
                at_ms: 0,
            }),
        );
        (root, dev, rec)
    }

    fn fields(m: &ClientMsg) -> (String, String, String) {
        match m {
            ClientMsg::Hello { root_key, record, sig } => (root_key.clone(), record.clone(), sig.clone()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn turn_credentials_follow_the_shared_secret_scheme() {
        // The value an independent HMAC-SHA1 gives (Python's hmac, as coturn computes it).
        let c = TurnCredentials::issue(&["turn:relay.example:3478".into()], b"north-wind", 1_700_000_000, 86_400);
        assert_eq!(c.username, "1700086400");
        assert_eq!(c.credential, "u+ptJxKxWPxDmYVnWt+XRANGbJI=");
        assert_eq!(c.expires, 1_700_086_400);
        let w = ServerMsg::Welcome { device: "01".into(), online: vec![], turn: None };
        assert!(!serde_json::to_string(&w).unwrap().contains("turn"), "absent, not null: older clients see no change");
        let parsed: ServerMsg = serde_json::from_str(r#"{"type":"welcome","device":"01","online":[]}"#).unwrap();
        assert_eq!(parsed, w);
    }

    #[test]
    fn hello_round_trip_and_replays() {
        let (root, dev, rec) = setup();
        let m = sign_hello(&root.verifying_key(), &rec, &dev, b"nonce-1", "rv.example:443");
        let (k, r, s) = fields(&m);
        let ok = verify_hello(&k, &r, &s, b"nonce-1", &["rv.example:443"]).unwrap();
        assert_eq!(ok.device, DeviceId([3; 16]));
        let two = ["other.example", "rv.example:443"];
        assert_eq!(verify_hello(&k, &r, &s, b"nonce-1", &two).unwrap(), ok, "any of the server's names");
        assert_eq!(verify_hello(&k, &r, &s, b"nonce-2", &two), Err(AdmitError::BadSignature), "old nonce");
        assert_eq!(
            verify_hello(&k, &r, &s, b"nonce-1", &["evil.example"]),
            Err(AdmitError::BadSignature),
            "other server"
        );
        assert_eq!(verify_hello::<&str>(&k, &r, &s, b"nonce-1", &[]), Err(AdmitError::BadSignature), "no names");
        // A record from another vault: the root key does not match the record's vault.
        let other = SigningKey::from_bytes(&[9; 32]);
        let k2 = to_b64(other.verifying_key().as_bytes());
        assert!(matches!(verify_hello(&k2, &r, &s, b"nonce-1", &["rv.example:443"]), Err(AdmitError::Membership(_))));
        assert_eq!(verify_hello("!!", &r, &s, b"n", &["h"]), Err(AdmitError::Malformed("root_key")));
    }

    #[test]
    fn the_signed_authority_and_configured_names_meet() {
        for (url, want) in [
            ("wss://RV.Example/v1/signal", Some("rv.example")),
            ("wss://rv.example:443/v1/signal", Some("rv.example")),
            ("wss://rv.example:8443/v1/signal", Some("rv.example:8443")),
            ("ws://rv.example:80/v1/signal", Some("rv.example")),
            ("ws://rv.example:443/v1/signal", Some("rv.example:443")),
            ("ws://127.0.0.1:9000/v1/signal", Some("127.0.0.1:9000")),
            ("ws://[::1]:9000/v1/signal", Some("[::1]:9000")),
            ("wss://[::1]:443/v1/signal", Some("[::1]")),
            ("ws://[::1]/v1/signal", Some("[::1]")),
            ("wss://user:pw@rv.example/x", Some("rv.example")),
            ("ws://rv.example:99999/", None),
            ("ws:///v1/signal", None),
            ("rv.example", None),
        ] {
            assert_eq!(authority_of(url).as_deref(), want, "{url}");
        }
        assert_eq!(public_name("RV.example:443").as_deref(), Some("rv.example"));
        assert_eq!(public_name("rv.example:80").as_deref(), Some("rv.example"));
        assert_eq!(public_name("rv.example:8443").as_deref(), Some("rv.example:8443"));
        assert_eq!(public_name("[::1]:9000").as_deref(), Some("[::1]:9000"));
        // A bare IPv6 address's last group is not a port.
        assert_eq!(public_name("2001:db8::443").as_deref(), Some("2001:db8::443"));
        assert_eq!(public_name("rv.example/path"), None);
        assert_eq!(public_name(""), None);
    }

    #[test]
    fn signal_fast_path_matches_the_enum() {
        let text = r#"{"type":"signal","to":"0a","payload":"a\/b+c=="}"#;
        let fast = SignalIn::parse(text).unwrap();
        let ClientMsg::Signal { to, payload, .. } = serde_json::from_str(text).unwrap() else { panic!() };
        assert_eq!((fast.to.as_ref(), fast.payload.as_ref()), (to.as_str(), payload.as_str()));
        assert!(SignalIn::parse(r#"{"type":"revoke","to":"0a","payload":"x"}"#).is_none());
        assert!(SignalIn::parse(r#"{"type":"signal","to":"0a"}"#).is_none());
        let out = signal_out("ff", &payload);
        assert_eq!(out, serde_json::to_string(&ServerMsg::Signal { from: "ff".into(), payload }).unwrap());
    }

    #[test]
    fn json_shapes() {
        let m: ClientMsg = serde_json::from_str(r#"{"type":"signal","to":"00","payload":"AA=="}"#).unwrap();
        assert!(matches!(m, ClientMsg::Signal { .. }));
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"signal","to":"00"}"#).is_err());
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"nope"}"#).is_err());
        let c = serde_json::to_string(&ServerMsg::Challenge { version: 1, nonce: "x".into() }).unwrap();
        assert!(c.starts_with(r#"{"type":"challenge""#), "{c}");
        let e = serde_json::to_string(&ServerMsg::Error {
            code: ErrorCode::UnknownRecipient,
            message: "m".into(),
            id: None,
        })
        .unwrap();
        assert!(e.contains(r#""code":"unknown_recipient""#) && !e.contains("id"), "{e}");
    }

    #[test]
    fn signal_ids_are_optional_both_ways_and_unknown_codes_parse() {
        let with = r#"{"type":"signal","to":"0a","payload":"AA==","id":"offer-7"}"#;
        assert_eq!(SignalIn::parse(with).and_then(|s| s.id).as_deref(), Some("offer-7"));
        let ClientMsg::Signal { id, .. } = serde_json::from_str(with).unwrap() else { panic!() };
        assert_eq!(id.as_deref(), Some("offer-7"));
        let without = r#"{"type":"signal","to":"0a","payload":"AA=="}"#;
        assert!(SignalIn::parse(without).is_some_and(|s| s.id.is_none()));
        let e: ServerMsg =
            serde_json::from_str(r#"{"type":"error","code":"unavailable","message":"m","id":"x"}"#).unwrap();
        assert_eq!(e, ServerMsg::Error { code: ErrorCode::Unavailable, message: "m".into(), id: Some("x".into()) });
        // An older client's view of a newer server's code: still an error it can report.
        let e: ServerMsg = serde_json::from_str(r#"{"type":"error","code":"from_the_future","message":"m"}"#).unwrap();
        assert!(matches!(e, ServerMsg::Error { code: ErrorCode::Unknown, .. }));
    }
}
