//! Entry points of the fuzz targets (`fuzz/`), each checking a property on
//! arbitrary bytes rather than only "does not panic". They live in the library
//! so that `tests/fuzz_corpus.rs` replays the committed corpus and every past
//! crash on stable Rust in CI, not only under `cargo fuzz`.

use crate::balance::cookie::CookieKeys;
use crate::config;
use crate::listener::framing::RequestFraming;
use crate::listener::h2_watch::H2FloodWatch;
use crate::proxy::proxy_protocol::{SIGNATURE, encode_v2};
use crate::route::pattern::Pattern;
use crate::route::redirect::{RedirectAction, RedirectSource, valid_host};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// A fuzz target's check of one input.
pub type Check = fn(&[u8]);

/// The fuzz targets by name, for the corpus replay.
pub const TARGETS: &[(&str, Check)] = &[
    ("config", config),
    ("pattern", pattern),
    ("cookie", cookie),
    ("proxy_v2", proxy_v2),
    ("redirect", redirect),
    ("framing", framing),
    ("h2_watch", h2_watch),
];

/// Splits `data` at NUL bytes into at most `n` fields (missing ones empty).
fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == 0).collect();
    out.resize(n, &[]);
    out
}

/// The config parser and validator: any text gives a config or errors that
/// each name `fuzz.toml:LINE:COL:` inside the text.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1) + 1;
    if let Err(e) = config::parse(&text, Path::new("fuzz.toml")) {
        assert!(!e.lines.is_empty());
        for line in &e.lines {
            let rest = line
                .strip_prefix("fuzz.toml:")
                .unwrap_or_else(|| panic!("{line:?}"));
            let mut parts = rest.splitn(3, ':');
            let l: usize = parts.next().unwrap().parse().unwrap();
            let c: usize = parts.next().unwrap().parse().unwrap();
            assert!(l >= 1 && l <= lines && c >= 1, "{line:?}");
        }
    }
}

/// The reference wildcard match: dynamic programming over both strings.
fn reference_match(pattern: &[u8], input: &[u8]) -> bool {
    let mut row = vec![false; input.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; input.len() + 1];
        if p == b'*' {
            let mut any = false;
            for j in 0..=input.len() {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 0..input.len() {
                next[j + 1] = row[j] && (p == b'?' || p == input[j]);
            }
        }
        row = next;
    }
    row[input.len()]
}

/// The rule matcher's wildcard patterns agree with a plain reference
/// implementation, with and without case.
pub fn pattern(data: &[u8]) {
    let f = fields(data, 3);
    let ignore_case = f[0].first().is_some_and(|b| b & 1 == 1);
    let (text, input) = (String::from_utf8_lossy(f[1]), f[2]);
    if text.len() > 256 || input.len() > 1024 {
        return;
    }
    let compiled = Pattern::new(&text, ignore_case);
    let expected = if ignore_case {
        reference_match(
            text.to_ascii_lowercase().as_bytes(),
            &input.to_ascii_lowercase(),
        )
    } else {
        reference_match(text.as_bytes(), input)
    };
    assert_eq!(
        compiled.matches(input),
        expected,
        "{text:?} on {input:?} (ignore case {ignore_case})"
    );
}

/// The stickiness cookie opener: arbitrary values never open; a sealed value
/// opens to what was sealed, and any change to it makes it unopenable.
pub fn cookie(data: &[u8]) {
    let keys = CookieKeys::from_secrets(&[vec![7u8; 32], vec![9u8; 32]]);
    let f = fields(data, 2);
    assert!(keys.open("EDGELB", b"web", f[0], 0).is_none());
    let payload = &f[1][..f[1].len().min(64)];
    let sealed = keys.seal("EDGELB", b"web", payload, 100);
    assert_eq!(
        keys.open("EDGELB", b"web", sealed.as_bytes(), 50)
            .as_deref(),
        Some(payload)
    );
    assert!(
        keys.open("EDGELB", b"web", sealed.as_bytes(), 101)
            .is_none()
    );
    assert!(
        keys.open("EDGELBAPP", b"web", sealed.as_bytes(), 50)
            .is_none()
    );
    if let Some(&b) = f[0].first() {
        let mut tampered = sealed.into_bytes();
        let at = usize::from(b) % tampered.len();
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert!(keys.open("EDGELB", b"web", &tampered, 50).is_none());
    }
}

/// Decodes a PROXY v2 header (the reference for the encoder).
fn decode_v2(h: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    if h.len() < 16 || h[..12] != SIGNATURE || h[12] != 0x21 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    let body = h.get(16..16 + len)?;
    if h.len() != 16 + len {
        return None;
    }
    let (src, dst, ports) = match (h[13], len) {
        (0x11, 12) => (
            IpAddr::from(<[u8; 4]>::try_from(&body[0..4]).ok()?),
            IpAddr::from(<[u8; 4]>::try_from(&body[4..8]).ok()?),
            &body[8..12],
        ),
        (0x21, 36) => (
            IpAddr::from(<[u8; 16]>::try_from(&body[0..16]).ok()?),
            IpAddr::from(<[u8; 16]>::try_from(&body[16..32]).ok()?),
            &body[32..36],
        ),
        _ => return None,
    };
    Some((
        SocketAddr::new(src, u16::from_be_bytes([ports[0], ports[1]])),
        SocketAddr::new(dst, u16::from_be_bytes([ports[2], ports[3]])),
    ))
}

fn addr_from(bytes: &[u8]) -> SocketAddr {
    let mut b = [0u8; 19];
    let n = bytes.len().min(19);
    b[..n].copy_from_slice(&bytes[..n]);
    let port = u16::from_be_bytes([b[1], b[2]]);
    let ip = if b[0] & 1 == 0 {
        IpAddr::V4(Ipv4Addr::new(b[3], b[4], b[5], b[6]))
    } else {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[3..19]).unwrap()))
    };
    SocketAddr::new(ip, port)
}

/// The PROXY v2 encoder: what it writes decodes to the same two addresses
/// (IPv4-mapped IPv6 as IPv4 when both are, as IPv6 otherwise).
pub fn proxy_v2(data: &[u8]) {
    let client = addr_from(data);
    let local = addr_from(data.get(19..).unwrap_or(&[]));
    let header = encode_v2(client, local, None);
    let (src, dst) = decode_v2(&header).expect("the encoder wrote a valid header");
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let same = |decoded: SocketAddr, original: SocketAddr| canon(decoded) == canon(original);
    assert!(same(src, client), "{src} for {client}");
    assert!(same(dst, local), "{dst} for {local}");
}

/// The redirect renderer: whatever the templates and the request, a
/// `Location` either is refused or is one absolute http(s) URL with a valid
/// host and no control character.
pub fn redirect(data: &[u8]) {
    let f = fields(data, 8);
    let text = |b: &[u8]| {
        let s = String::from_utf8_lossy(b).into_owned();
        (!s.is_empty()).then_some(s)
    };
    let action = RedirectAction::compile(&config::Redirect {
        protocol: text(f[0]),
        host: text(f[1]),
        port: text(f[2]),
        path: text(f[3]),
        query: text(f[4]),
        status: 302,
    });
    let source = RedirectSource {
        protocol: "https",
        host: f[5],
        port: 8443,
        path: f[6],
        query: f[7],
    };
    if let Ok(location) = action.location(&source) {
        let bytes = location.as_bytes();
        assert!(!bytes.iter().any(|b| b.is_ascii_control()), "{location:?}");
        let uri: http::Uri = location.to_str().unwrap().parse().expect("a URI");
        assert!(matches!(uri.scheme_str(), Some("http" | "https")), "{uri}");
        let authority = uri.authority().expect("an absolute URL");
        assert!(valid_host(authority.host().as_bytes()), "{uri}");
        assert!(!authority.as_str().contains('@'), "{uri}");
        assert!(
            uri.path().starts_with('/') && !uri.path().starts_with("//"),
            "{uri}"
        );
        assert!(!location.to_str().unwrap().contains('\\'), "{uri}");
    }
}

/// The request framing reader: reading a stream in one piece or in small
/// pieces gives the same verdict.
pub fn framing(data: &[u8]) {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut whole = RequestFraming::default();
    whole.feed(data);
    let mut pieces = RequestFraming::default();
    for part in data.chunks(step) {
        pieces.feed(part);
    }
    assert_eq!(whole.first_ambiguous(), pieces.first_ambiguous());
    assert_eq!(whole.is_following(), pieces.is_following());
}

/// The HTTP/2 flood watch: read in one piece or in pieces, the same frames
/// give the same verdict.
pub fn h2_watch(data: &[u8]) {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut whole = H2FloodWatch::new(0);
    let a = whole.feed(data);
    let mut pieces = H2FloodWatch::new(0);
    let mut b = Ok(());
    for part in data.chunks(step) {
        b = pieces.feed(part);
        if b.is_err() {
            break;
        }
    }
    assert_eq!(a, b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_match_basics() {
        assert!(reference_match(b"a*c", b"abbc"));
        assert!(reference_match(b"*", b""));
        assert!(!reference_match(b"a?c", b"ac"));
        assert!(reference_match(b"?*?", b"ab"));
    }

    #[test]
    fn every_target_takes_empty_input() {
        for (_, target) in TARGETS {
            target(b"");
        }
    }
}
