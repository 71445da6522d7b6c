//! PROXY protocol version 2 headers (haproxy.org/download/2.9/doc/proxy-protocol.txt):
//! the client's and the listener's addresses, sent to a target before the first
//! byte of the client's stream.

use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// `PP2_TYPE_SSL`: what a TLS client sent (section 2.2.5 of the spec).
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// The TLS of a client connection, for a `PP2_TYPE_SSL` TLV (listeners
/// with mutual TLS, SPEC §8).
#[derive(Debug, Clone, Copy)]
pub struct SslTlv<'a> {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'a str,
    /// The client sent a certificate.
    pub certificate: bool,
    /// … and it was verified against the trust store.
    pub verified: bool,
    /// The certificate's subject CN.
    pub common_name: Option<&'a str>,
}

/// The v2 header for a TCP connection from `client` to `local` (the listener),
/// with a `PP2_TYPE_SSL` TLV when `ssl` is given.
/// Mixed families are sent as IPv6 (an IPv4 address as `::ffff:a.b.c.d`).
pub fn encode_v2(client: SocketAddr, local: SocketAddr, ssl: Option<SslTlv<'_>>) -> Vec<u8> {
    let mut out = addresses_v2(client, local);
    if let Some(ssl) = ssl {
        let mut value = Vec::with_capacity(64);
        let mut flags = PP2_CLIENT_SSL;
        if ssl.certificate {
            flags |= PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS;
        }
        value.push(flags);
        // 0 only for a certificate presented and verified.
        let verify: u32 = if ssl.certificate && ssl.verified {
            0
        } else {
            1
        };
        value.extend_from_slice(&verify.to_be_bytes());
        tlv(&mut value, PP2_SUBTYPE_SSL_VERSION, ssl.version.as_bytes());
        if let Some(cn) = ssl.common_name {
            tlv(&mut value, PP2_SUBTYPE_SSL_CN, cn.as_bytes());
        }
        tlv(&mut out, PP2_TYPE_SSL, &value);
        let len = (out.len() - 16) as u16;
        out[14..16].copy_from_slice(&len.to_be_bytes());
    }
    out
}

/// Appends one TLV (values longer than a TLV holds are cut).
fn tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    let value = &value[..value.len().min(u16::MAX as usize - 256)];
    out.push(kind);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

fn addresses_v2(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, command PROXY
    match (client.ip().to_canonical(), local.ip().to_canonical()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.push(0x11); // TCP over IPv4
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&src.octets());
            out.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21); // TCP over IPv6
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(src).octets());
            out.extend_from_slice(&v6(dst).octets());
        }
    }
    out.extend_from_slice(&client.port().to_be_bytes());
    out.extend_from_slice(&local.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_byte_for_byte() {
        let h = encode_v2(
            "192.0.2.1:51234".parse().unwrap(),
            "198.51.100.7:443".parse().unwrap(),
            None,
        );
        let mut expected = SIGNATURE.to_vec();
        expected.extend_from_slice(&[
            0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 1, 198, 51, 100, 7, 0xc8, 0x22, 0x01, 0xbb,
        ]);
        assert_eq!(h, expected);
    }

    #[test]
    fn ipv6_and_mixed() {
        let h = encode_v2(
            "[2001:db8::1]:1000".parse().unwrap(),
            "[2001:db8::2]:443".parse().unwrap(),
            None,
        );
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 0x24]);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(
            &h[16..32],
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&h[48..52], &[0x03, 0xe8, 0x01, 0xbb]);
        let mixed = encode_v2(
            "192.0.2.1:1".parse().unwrap(),
            "[::1]:2".parse().unwrap(),
            None,
        );
        assert_eq!(mixed[13], 0x21);
        assert_eq!(
            &mixed[16..32],
            &"::ffff:192.0.2.1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        // An IPv4-mapped client on a dual-stack socket is sent as IPv4.
        let mapped = encode_v2(
            "[::ffff:192.0.2.1]:1".parse().unwrap(),
            "[::ffff:127.0.0.1]:2".parse().unwrap(),
            None,
        );
        assert_eq!(mapped[13], 0x11);
    }

    #[test]
    fn ssl_tlv_of_a_verified_client() {
        let ssl = SslTlv {
            version: "TLSv1.3",
            certificate: true,
            verified: true,
            common_name: Some("dev1"),
        };
        let h = encode_v2(
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
            Some(ssl),
        );
        let tlv = &h[28..];
        let value_len = 5 + 3 + 7 + 3 + 4;
        assert_eq!(&h[14..16], &((12 + 3 + value_len) as u16).to_be_bytes());
        assert_eq!(tlv[0], 0x20);
        assert_eq!(&tlv[1..3], &(value_len as u16).to_be_bytes());
        assert_eq!(&tlv[3..8], &[0x07, 0, 0, 0, 0]);
        assert_eq!(&tlv[8..18], b"\x21\x00\x07TLSv1.3");
        assert_eq!(&tlv[18..], b"\x22\x00\x04dev1");
        let bare = SslTlv {
            certificate: false,
            verified: false,
            common_name: None,
            ..ssl
        };
        let h = encode_v2(
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
            Some(bare),
        );
        assert_eq!(&h[31..36], &[0x01, 0, 0, 0, 1]);
    }
}
