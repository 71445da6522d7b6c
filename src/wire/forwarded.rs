//! The identity headers edgelb writes into every forwarded request:
//! `X-Forwarded-For`, `-Proto`, `-Port` (per connection) and `X-Request-Id`
//! (per request), and the client headers that could pass for them.

use http::HeaderValue;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-connection values that go into every forwarded request.
#[derive(Clone)]
pub struct ForwardedFor {
    /// The client IP as it goes into `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// `http` or `https`.
    pub proto: HeaderValue,
    /// The listener's port.
    pub port: HeaderValue,
}

impl ForwardedFor {
    /// For connections that carry no HTTP (tcp and tls listeners): nothing to
    /// format per connection.
    pub fn none() -> Self {
        let empty = HeaderValue::from_static("");
        ForwardedFor {
            client_ip: empty.clone(),
            proto: empty.clone(),
            port: empty,
        }
    }
}

/// Whether `name` is an underscore spelling of a header edgelb writes
/// itself (`X_Forwarded_For`, `x-forwarded_proto`, `X_Request_Id`, …).
/// CGI, WSGI, Rack and PHP read `_` and `-` alike (`HTTP_X_FORWARDED_FOR`),
/// so a client could pass such a header off as edgelb's own: such headers
/// are dropped on every path. Other names with `_` pass (as ALB; nginx drops
/// them all by default).
pub fn aliases_own_header(name: &str) -> bool {
    const OWN: [&str; 4] = [
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-port",
        "x-forwarded-proto",
    ];
    matches!(name.len(), 12 | 15 | 16 | 17)
        && name.as_bytes().contains(&b'_')
        && OWN.iter().any(|own| {
            own.len() == name.len()
                && own
                    .bytes()
                    .zip(name.bytes())
                    .all(|(o, n)| o == n.to_ascii_lowercase() || (o == b'-' && n == b'_'))
        })
}

/// The client-certificate headers of SPEC §8 (ALB's names, lower case as
/// header maps hold them), written from `tls::identity`.
pub mod client_cert {
    pub const SERIAL_NUMBER: &str = "x-amzn-mtls-clientcert-serial-number";
    pub const ISSUER: &str = "x-amzn-mtls-clientcert-issuer";
    pub const SUBJECT: &str = "x-amzn-mtls-clientcert-subject";
    pub const VALIDITY: &str = "x-amzn-mtls-clientcert-validity";
    pub const LEAF: &str = "x-amzn-mtls-clientcert-leaf";
    /// `passthrough`: the presented chain.
    pub const CHAIN: &str = "x-amzn-mtls-clientcert";
}

/// Whether `name` (any case, `_` for `-`) is one of the client-certificate
/// headers or any other name of that family (`X-Amzn-Mtls-Clientcert*`):
/// a client's copy is always dropped, so a target can trust what it gets.
pub fn names_client_cert(name: &str) -> bool {
    const PREFIX: &[u8] = client_cert::CHAIN.as_bytes();
    name.len() >= PREFIX.len()
        && PREFIX
            .iter()
            .zip(name.bytes())
            .all(|(&p, n)| p == n.to_ascii_lowercase() || (p == b'-' && n == b'_'))
}

/// The prefix of the identity headers a login gives targets (SPEC §9).
pub const OIDC_PREFIX: &str = "x-amzn-oidc-";

/// Whether `name` is one of the login's identity headers (or spells one with
/// underscores): a client's copy never reaches a target.
pub fn names_oidc(name: &str) -> bool {
    name.len() > OIDC_PREFIX.len()
        && OIDC_PREFIX
            .bytes()
            .zip(name.bytes())
            .all(|(p, n)| p == n.to_ascii_lowercase() || (p == b'-' && n == b'_'))
}

/// A new request id: 32 hex digits that nobody can guess from earlier ones
/// (a client must not predict the id of another client's request).
pub fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&new_request_id_bytes()).expect("hex digits are a valid header value")
}

/// [`new_request_id`] as bytes, for heads written without a header map.
///
/// 128 bits of SipHash-1-3 (a PRF) over a counter, keyed once per process
/// with 128 random bits from the OS: unique within the process (a counter),
/// unguessable outside it (the key), and no system call per request.
pub fn new_request_id_bytes() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(std::collections::hash_map::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // One keyed state, two outputs: the second goes on from the first's
    // state (cheaper than a second hash from the key).
    let mut h = key.build_hasher();
    h.write_u64(n);
    let first = h.finish();
    h.write_u8(0x5a);
    let second = h.finish();
    let mut buf = [0u8; 32];
    hex(first, &mut buf[..16]);
    hex(second, &mut buf[16..]);
    buf
}

/// `v` as 16 lower-case hex digits into `out`, a byte (two digits) at a time.
fn hex(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    const PAIRS: [[u8; 2]; 256] = {
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
            i += 1;
        }
        t
    };
    for (slot, byte) in out.chunks_exact_mut(2).zip(v.to_be_bytes()) {
        slot.copy_from_slice(&PAIRS[byte as usize]);
    }
}
