//! The `Connection` header's tokens (RFC 9110 §7.6.1), read one way on every
//! path: the fast path's request and response heads, hyper's header maps, the
//! raw target sockets. A comma list, surrounding whitespace and empty members
//! ignored, keywords compared without case.

/// One member of a `Connection` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    Close,
    KeepAlive,
    Upgrade,
    /// Any other name: a header that is hop-by-hop on this connection.
    Other(&'a [u8]),
}

/// The members of one `Connection` header value.
#[inline]
pub fn tokens(value: &[u8]) -> impl Iterator<Item = Token<'_>> {
    value.split(|&b| b == b',').filter_map(|t| {
        let t = t.trim_ascii();
        Some(if t.is_empty() {
            return None;
        } else if t.eq_ignore_ascii_case(b"close") {
            Token::Close
        } else if t.eq_ignore_ascii_case(b"keep-alive") {
            Token::KeepAlive
        } else if t.eq_ignore_ascii_case(b"upgrade") {
            Token::Upgrade
        } else {
            Token::Other(t)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_without_case_or_blanks() {
        let got: Vec<Token> = tokens(b" Close ,, keep-alive,UPGRADE , X-Hop ,").collect();
        assert_eq!(
            got,
            [
                Token::Close,
                Token::KeepAlive,
                Token::Upgrade,
                Token::Other(b"X-Hop")
            ]
        );
        assert_eq!(tokens(b"").count(), 0);
    }
}
