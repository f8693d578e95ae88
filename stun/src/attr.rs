//! STUN attribute type numbers this crate reads or writes (IANA "STUN Attributes" registry).

/// MAPPED-ADDRESS (RFC 8489; the only address RFC 3489 clients read).
pub const MAPPED_ADDRESS: u16 = 0x0001;
/// RESPONSE-ADDRESS (RFC 3489; deprecated, a reflection vector, never honoured).
pub const RESPONSE_ADDRESS: u16 = 0x0002;
/// CHANGE-REQUEST (RFC 5780).
pub const CHANGE_REQUEST: u16 = 0x0003;
/// SOURCE-ADDRESS (RFC 3489), written for classic clients instead of RESPONSE-ORIGIN.
pub const SOURCE_ADDRESS: u16 = 0x0004;
/// CHANGED-ADDRESS (RFC 3489), written for classic clients instead of OTHER-ADDRESS.
pub const CHANGED_ADDRESS: u16 = 0x0005;
/// USERNAME.
pub const USERNAME: u16 = 0x0006;
/// MESSAGE-INTEGRITY.
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
/// ERROR-CODE.
pub const ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES.
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// REALM.
pub const REALM: u16 = 0x0014;
/// NONCE.
pub const NONCE: u16 = 0x0015;
/// MESSAGE-INTEGRITY-SHA256.
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
/// PASSWORD-ALGORITHM.
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
/// USERHASH.
pub const USERHASH: u16 = 0x001E;
/// XOR-MAPPED-ADDRESS.
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// PRIORITY (RFC 8445 ICE connectivity checks).
pub const PRIORITY: u16 = 0x0024;
/// USE-CANDIDATE (RFC 8445).
pub const USE_CANDIDATE: u16 = 0x0025;
/// SOFTWARE.
pub const SOFTWARE: u16 = 0x8022;
/// FINGERPRINT.
pub const FINGERPRINT: u16 = 0x8028;
/// ICE-CONTROLLED (RFC 8445).
pub const ICE_CONTROLLED: u16 = 0x8029;
/// ICE-CONTROLLING (RFC 8445).
pub const ICE_CONTROLLING: u16 = 0x802A;
/// RESPONSE-ORIGIN (RFC 5780).
pub const RESPONSE_ORIGIN: u16 = 0x802B;
/// OTHER-ADDRESS (RFC 5780).
pub const OTHER_ADDRESS: u16 = 0x802C;

/// True for types in the comprehension-required range (0x0000–0x7FFF).
pub fn comprehension_required(typ: u16) -> bool {
    typ < 0x8000
}

/// True for comprehension-required attributes a Binding request may carry that this server
/// understands. Authentication attributes are "understood" in the sense of RFC 8489 §6.3: a
/// binding server without credentials ignores them rather than rejecting the request.
/// RESPONSE-PORT and PADDING (RFC 5780) are deliberately absent: they let a third party aim
/// responses elsewhere or inflate them, so the server answers 420 as the RFC allows.
pub fn understood_in_binding_request(typ: u16) -> bool {
    matches!(
        typ,
        MAPPED_ADDRESS
            | CHANGE_REQUEST
            | USERNAME
            | MESSAGE_INTEGRITY
            | REALM
            | NONCE
            | MESSAGE_INTEGRITY_SHA256
            | PASSWORD_ALGORITHM
            | USERHASH
            | XOR_MAPPED_ADDRESS
            | PRIORITY
            | USE_CANDIDATE
    )
}
