//! A shadow reader of HTTP/1 request framing, fed every byte a client sends.
//!
//! hyper resolves a head with both `Content-Length` and `Transfer-Encoding` the
//! RFC 9112 way (chunked wins, the length is dropped, the connection closes
//! after the response), and merges repeated equal lengths, and hides that it
//! did. ALB's defensive mode, and ours,
//! refuses such a request with 400 instead of forwarding it; to know it was
//! there we follow the framing of the byte stream ourselves: heads line by
//! line, bodies skipped by length or by chunk. It only marks heads; hyper stays
//! the parser of record.
//!
//! It fails closed: a body it cannot follow (a chunk line it does not read, a
//! bare LF inside chunked framing or its trailer section, a Transfer-Encoding
//! other than chunked) marks the request it belongs to, so that request's body
//! fails (400) and every later request on the connection is refused. It keeps
//! following across `Upgrade` requests: only the proxy knows whether the
//! protocol really switched (a 101 was relayed), and it stops the reader then
//! ([`crate::listener::io`]). Only CONNECT stops it (edgelb answers CONNECT
//! with 405 and closes).

/// Longest header name prefix we need to compare (`transfer-encoding`).
const NAME_CAP: usize = 17;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line of the request line (skipping blank lines first).
    RequestLine { started: bool },
    /// At the start of a header line, or inside one.
    Header,
    /// Skipping this many more body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize {
        size: u64,
        digits: bool,
        in_ext: bool,
    },
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// The line ending after chunk data.
    ChunkEnd,
    /// Trailer lines after the last chunk, up to a blank line.
    Trailers { line_empty: bool },
    /// Framing no longer followed: after CONNECT, or after a body this reader
    /// could not follow (its request is marked).
    Off,
}

/// What one header line told us so far.
#[derive(Debug, Default, Clone, Copy)]
struct Line {
    name: [u8; NAME_CAP],
    name_len: usize,
    /// Past the colon.
    in_value: bool,
    /// The line had any byte before its LF (other than CR).
    any: bool,
    /// The name is longer than `NAME_CAP` (so it is neither header we look for).
    long_name: bool,
    value_digits: u64,
    value_overflow: bool,
    value_chunked: Matcher,
    /// The name already differs from every name we look for: the rest of the
    /// line is skipped to its LF at once.
    skip: bool,
}

/// The header names whose lines are read (lower case).
const WATCHED: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"upgrade"];

/// Finds `chunked` inside a value, ignoring case.
#[derive(Debug, Default, Clone, Copy)]
struct Matcher {
    at: usize,
    found: bool,
}

impl Matcher {
    fn feed(&mut self, b: u8) {
        const WORD: &[u8] = b"chunked";
        if self.found {
            return;
        }
        let b = b.to_ascii_lowercase();
        if WORD[self.at] == b {
            self.at += 1;
            if self.at == WORD.len() {
                self.found = true;
            }
        } else {
            self.at = usize::from(WORD[0] == b);
        }
    }
}

/// What the head being read carries.
#[derive(Debug, Default, Clone, Copy)]
struct Head {
    content_length: Option<u64>,
    repeated_content_length: bool,
    transfer_encoding: bool,
    chunked: bool,
    upgrade: bool,
    connect: bool,
}

/// Follows request framing across reads; see the module doc.
#[derive(Debug)]
pub struct RequestFraming {
    state: State,
    line: Line,
    head: Head,
    method: [u8; 8],
    method_len: usize,
    past_method: bool,
    /// Heads completed so far on this connection.
    heads: u64,
    /// Index of the first head that had both Content-Length and Transfer-Encoding.
    ambiguous: Option<u64>,
    /// The last byte read was a CR (chunked framing wants CRLF, not a bare LF).
    cr: bool,
}

impl Default for RequestFraming {
    fn default() -> Self {
        RequestFraming {
            state: State::RequestLine { started: false },
            line: Line::default(),
            head: Head::default(),
            method: [0; 8],
            method_len: 0,
            past_method: false,
            heads: 0,
            ambiguous: None,
            cr: false,
        }
    }
}

impl RequestFraming {
    /// Index (0-based, in order of arrival) of the first request whose head
    /// carried both Content-Length and Transfer-Encoding, or Content-Length twice
    /// (hyper merges equal copies silently).
    pub fn first_ambiguous(&self) -> Option<u64> {
        self.ambiguous
    }

    /// Whether the client stands between requests: every request it sent is
    /// complete, body and all (a close now leaves nothing unfinished).
    pub fn between_requests(&self) -> bool {
        self.state == State::RequestLine { started: false }
    }

    /// Whether this reader still follows the stream.
    pub fn is_following(&self) -> bool {
        self.state != State::Off
    }

    /// Reads the next bytes the client sent.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Body(left) => {
                    let n = (left.min(data.len() as u64)) as usize;
                    data = &data[n..];
                    self.state = if left == n as u64 {
                        self.next_head()
                    } else {
                        State::Body(left - n as u64)
                    };
                }
                State::ChunkData(left) => {
                    let n = (left.min(data.len() as u64)) as usize;
                    data = &data[n..];
                    self.state = if left == n as u64 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left - n as u64)
                    };
                }
                _ if self.skipping() => match memchr::memchr(b'\n', data) {
                    // The LF itself goes through the state machine.
                    Some(at) => {
                        data = &data[at + 1..];
                        self.byte(b'\n');
                    }
                    None => return,
                },
                _ => {
                    let b = data[0];
                    data = &data[1..];
                    self.byte(b);
                }
            }
        }
    }

    /// Whether the bytes up to the next LF can be skipped unread: the rest of a
    /// request line after its method, or of a header line we do not watch.
    #[inline]
    fn skipping(&self) -> bool {
        match self.state {
            State::Header => self.line.skip,
            State::RequestLine { started: true } => self.past_method,
            _ => false,
        }
    }

    fn next_head(&mut self) -> State {
        State::RequestLine { started: false }
    }

    /// The body of the current request cannot be followed: it and every
    /// later request are refused, and reading stops.
    fn lost(&mut self) -> State {
        let current = self.heads.saturating_sub(1);
        if self.ambiguous.is_none_or(|a| a > current) {
            self.ambiguous = Some(current);
        }
        State::Off
    }

    fn byte(&mut self, b: u8) {
        let after_cr = std::mem::replace(&mut self.cr, b == b'\r');
        self.state = match self.state {
            State::RequestLine { started } => match b {
                b'\n' if !started => State::RequestLine { started: false },
                b'\r' => State::RequestLine { started },
                b'\n' => {
                    self.head = Head {
                        connect: &self.method[..self.method_len] == b"CONNECT",
                        ..Head::default()
                    };
                    self.line = Line::default();
                    State::Header
                }
                _ => {
                    if !started {
                        self.method_len = 0;
                        self.past_method = false;
                    }
                    if b == b' ' {
                        self.past_method = true;
                    } else if !self.past_method && self.method_len < self.method.len() {
                        self.method[self.method_len] = b;
                        self.method_len += 1;
                    }
                    State::RequestLine { started: true }
                }
            },
            State::Header => self.header_byte(b),
            State::ChunkSize {
                size,
                digits,
                in_ext,
            } => match b {
                b'\n' if digits && after_cr => {
                    if size == 0 {
                        State::Trailers { line_empty: true }
                    } else {
                        State::ChunkData(size)
                    }
                }
                b'\n' => self.lost(),
                b'\r' => State::ChunkSize {
                    size,
                    digits,
                    in_ext,
                },
                _ if in_ext => State::ChunkSize {
                    size,
                    digits,
                    in_ext,
                },
                b';' | b' ' | b'\t' => State::ChunkSize {
                    size,
                    digits,
                    in_ext: true,
                },
                _ => match (b as char).to_digit(16) {
                    Some(d) if size >> 60 == 0 => State::ChunkSize {
                        size: size * 16 + u64::from(d),
                        digits: true,
                        in_ext,
                    },
                    _ => self.lost(),
                },
            },
            State::ChunkEnd => match b {
                b'\r' if !after_cr => State::ChunkEnd,
                b'\n' if after_cr => State::ChunkSize {
                    size: 0,
                    digits: false,
                    in_ext: false,
                },
                _ => self.lost(),
            },
            State::Trailers { .. } if b == b'\n' && !after_cr => self.lost(),
            State::Trailers { line_empty } => match b {
                b'\r' => State::Trailers { line_empty },
                b'\n' if line_empty => self.next_head(),
                b'\n' => State::Trailers { line_empty: true },
                _ => State::Trailers { line_empty: false },
            },
            State::Body(_) | State::ChunkData(_) | State::Off => State::Off,
        };
    }

    fn header_byte(&mut self, b: u8) -> State {
        let line = &mut self.line;
        match b {
            b'\r' => State::Header,
            b'\n' if !line.any => self.end_of_head(),
            b'\n' => {
                self.end_of_header_line();
                self.line = Line::default();
                State::Header
            }
            _ => {
                line.any = true;
                if line.in_value {
                    line.value_chunked.feed(b);
                    match b {
                        b'0'..=b'9' => {
                            match line
                                .value_digits
                                .checked_mul(10)
                                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                            {
                                Some(v) => line.value_digits = v,
                                None => line.value_overflow = true,
                            }
                        }
                        b' ' | b'\t' => {}
                        _ => line.value_overflow = true,
                    }
                } else if b == b':' {
                    line.in_value = true;
                } else if line.name_len < NAME_CAP {
                    line.name[line.name_len] = b.to_ascii_lowercase();
                    line.name_len += 1;
                    let name = &line.name[..line.name_len];
                    if !WATCHED.iter().any(|w| w.starts_with(name)) {
                        line.skip = true;
                        line.long_name = true;
                    }
                } else {
                    line.long_name = true;
                }
                State::Header
            }
        }
    }

    fn end_of_header_line(&mut self) {
        let line = &self.line;
        if !line.in_value || line.long_name {
            return;
        }
        match &line.name[..line.name_len] {
            b"content-length" => {
                self.head.repeated_content_length |= self.head.content_length.is_some();
                // A malformed value is hyper's to refuse; length 0 here keeps us in step.
                self.head.content_length = Some(if line.value_overflow {
                    0
                } else {
                    line.value_digits
                });
            }
            b"transfer-encoding" => {
                self.head.transfer_encoding = true;
                self.head.chunked = line.value_chunked.found;
            }
            b"upgrade" => self.head.upgrade = true,
            _ => {}
        }
    }

    fn end_of_head(&mut self) -> State {
        let head = self.head;
        let index = self.heads;
        self.heads += 1;
        let ambiguous = (head.transfer_encoding && head.content_length.is_some())
            || head.repeated_content_length;
        if ambiguous && self.ambiguous.is_none() {
            self.ambiguous = Some(index);
        }
        if head.connect {
            // Answered 405 and closed: nothing after it is read as HTTP.
            return State::Off;
        }
        if head.transfer_encoding {
            if head.chunked {
                State::ChunkSize {
                    size: 0,
                    digits: false,
                    in_ext: false,
                }
            } else {
                self.lost()
            }
        } else {
            match head.content_length {
                Some(0) | None => self.next_head(),
                Some(n) => State::Body(n),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(stream: &[u8], step: usize) -> RequestFraming {
        let mut f = RequestFraming::default();
        for part in stream.chunks(step) {
            f.feed(part);
        }
        f
    }

    #[test]
    fn follows_lengths_and_chunks_to_the_ambiguous_head() {
        let stream = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 49\r\n\r\n\
Transfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n\
GET /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n0\r\nTrailer: y\r\n\r\n\
\r\nPOST /c HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: Chunked\r\n\r\n";
        for step in [1, 2, 3, 7, 64, stream.len()] {
            let f = read_all(stream, step);
            assert_eq!(f.first_ambiguous(), Some(2), "step {step}");
            assert!(f.is_following());
        }
    }

    #[test]
    fn either_order_of_the_two_headers_is_seen() {
        let f = read_all(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            5,
        );
        assert_eq!(f.first_ambiguous(), Some(0));
        let f = read_all(
            b"GET / HTTP/1.1\nContent-Length: 0\nTransfer-Encoding: chunked\n\n",
            1,
        );
        assert_eq!(f.first_ambiguous(), Some(0));
        let f = read_all(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            2,
        );
        assert_eq!(f.first_ambiguous(), Some(1));
    }

    #[test]
    fn ordinary_streams_are_not_marked() {
        let stream = b"GET / HTTP/1.1\r\nHost: x\r\nX-Transfer-Encoding: chunked\r\n\r\n\
POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n\
GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
        let f = read_all(stream, 4);
        assert_eq!(f.first_ambiguous(), None);
    }

    #[test]
    fn an_upgrade_header_does_not_stop_the_reader() {
        // Answered 200 (no switch): the next request is still read.
        let f = read_all(
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            3,
        );
        assert!(f.is_following());
        assert_eq!(f.first_ambiguous(), Some(1));
        let f = read_all(b"CONNECT x:1 HTTP/1.1\r\n\r\nanything", 1);
        assert!(!f.is_following());
    }

    #[test]
    fn bare_lf_in_chunked_framing_marks_the_request() {
        for stream in [
            &b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\nGET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            for step in [1, 2, 5, stream.len()] {
                let f = read_all(stream, step);
                assert_eq!(f.first_ambiguous(), Some(1), "{step}");
                assert!(!f.is_following());
            }
        }
        // CRLF everywhere: nothing marked, the next head is read.
        let f = read_all(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            1,
        );
        assert_eq!(f.first_ambiguous(), None);
        assert!(f.is_following());
    }
}
