//! PROXY protocol version 2 headers (haproxy.org/download/2.9/doc/proxy-protocol.txt):
//! the client's and the listener's addresses, sent to a target before the first
//! byte of the client's stream.

use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The v2 header for a TCP connection from `client` to `local` (the listener).
/// Mixed families are sent as IPv6 (an IPv4 address as `::ffff:a.b.c.d`).
pub fn encode_v2(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
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
        let mixed = encode_v2("192.0.2.1:1".parse().unwrap(), "[::1]:2".parse().unwrap());
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
        );
        assert_eq!(mapped[13], 0x11);
    }
}
