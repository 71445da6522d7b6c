//! Following a chunked body through, byte for byte, to find where it ends: the
//! fast path passes the chunks on as they are and needs only their end (to
//! reuse the target connection for the next request); a response relayed to an
//! HTTP/2 client needs the chunks' data too ([`ChunkedScan::next_data`]).

use std::ops::Range;

/// Longest chunk-size line accepted (size and extensions).
const MAX_SIZE_LINE: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// Extensions (or whitespace) up to the line's LF.
    SizeLine {
        value: u64,
        seen: u32,
    },
    /// Chunk data still to pass.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// Trailer lines after the last chunk; `at_start` of a line.
    Trailer {
        at_start: bool,
        seen: u32,
    },
    /// The LF of the blank line that ends the trailers.
    EndLf,
    Done,
}

/// Where a chunked body is.
#[derive(Debug)]
pub struct ChunkedScan {
    state: State,
}

/// A body that does not follow the chunked format.
#[derive(Debug, PartialEq, Eq)]
pub struct BadChunk;

impl Default for ChunkedScan {
    fn default() -> Self {
        ChunkedScan {
            state: State::Size {
                value: 0,
                digits: 0,
            },
        }
    }
}

impl ChunkedScan {
    /// Whether the body's last byte has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Follows `data`; returns how many of its bytes belong to the body (all
    /// of them, unless the body ends inside `data`).
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, BadChunk> {
        self.walk(data, false).map(|(n, _)| n)
    }

    /// Follows `data` up to the end of its first run of chunk data: how many
    /// bytes were followed, and where in `data` that run is (none when `data`
    /// held only framing, or the body ended).
    pub fn next_data(&mut self, data: &[u8]) -> Result<(usize, Option<Range<usize>>), BadChunk> {
        self.walk(data, true)
    }

    fn walk(
        &mut self,
        data: &[u8],
        stop_after_data: bool,
    ) -> Result<(usize, Option<Range<usize>>), BadChunk> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.state = match self.state {
                State::Size { value, digits } => match hex(b) {
                    Some(d) if digits < 15 => State::Size {
                        value: value << 4 | d,
                        digits: digits + 1,
                    },
                    Some(_) => return Err(BadChunk),
                    None if digits == 0 => return Err(BadChunk),
                    None if b == b'\n' => after_size(value),
                    None if matches!(b, b';' | b' ' | b'\t' | b'\r') => {
                        State::SizeLine { value, seen: 0 }
                    }
                    None => return Err(BadChunk),
                },
                State::SizeLine { value, seen } => match b {
                    b'\n' => after_size(value),
                    _ if seen >= MAX_SIZE_LINE => return Err(BadChunk),
                    _ => State::SizeLine {
                        value,
                        seen: seen + 1,
                    },
                },
                State::Data(left) => {
                    let take = left.min((data.len() - i) as u64) as usize;
                    let run = i..i + take;
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                    if stop_after_data {
                        return Ok((i, Some(run)));
                    }
                    continue;
                }
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    b'\n' => State::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(BadChunk),
                },
                State::DataLf => match b {
                    b'\n' => State::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(BadChunk),
                },
                State::Trailer { at_start, seen } => match b {
                    b'\r' if at_start => State::EndLf,
                    b'\n' if at_start => State::Done,
                    b'\n' => State::Trailer {
                        at_start: true,
                        seen,
                    },
                    _ if seen >= MAX_SIZE_LINE * 4 => return Err(BadChunk),
                    _ => State::Trailer {
                        at_start: false,
                        seen: seen + 1,
                    },
                },
                State::EndLf => match b {
                    b'\n' => State::Done,
                    _ => return Err(BadChunk),
                },
                State::Done => return Ok((i, None)),
            };
            i += 1;
            if self.state == State::Done {
                return Ok((i, None));
            }
        }
        Ok((i, None))
    }
}

fn after_size(value: u64) -> State {
    if value == 0 {
        State::Trailer {
            at_start: true,
            seen: 0,
        }
    } else {
        State::Data(value)
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u64),
        b'a'..=b'f' => Some((b - b'a' + 10) as u64),
        b'A'..=b'F' => Some((b - b'A' + 10) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes; the body's length if it ended.
    fn scan(body: &[u8], step: usize) -> Result<Option<usize>, BadChunk> {
        let mut s = ChunkedScan::default();
        let mut total = 0;
        for piece in body.chunks(step) {
            let n = s.feed(piece)?;
            total += n;
            if s.is_done() {
                return Ok(Some(total));
            }
        }
        Ok(None)
    }

    #[test]
    fn finds_the_end_whatever_the_pieces() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: y\r\n\r\nNEXT";
        let end = body.len() - 4;
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(scan(body, step), Ok(Some(end)), "step {step}");
        }
        assert_eq!(scan(b"0\r\n\r\n", 1), Ok(Some(5)));
        assert_eq!(scan(b"A\r\n0123456789\r\n", 4), Ok(None));
    }

    /// Decodes `body` fed in pieces of `step` bytes: its data, and whether it ended.
    fn decode(body: &[u8], step: usize) -> (Vec<u8>, bool) {
        let mut s = ChunkedScan::default();
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for piece in body.chunks(step) {
            pending.extend_from_slice(piece);
            while !pending.is_empty() && !s.is_done() {
                let (n, run) = s.next_data(&pending).unwrap();
                if let Some(run) = run {
                    out.extend_from_slice(&pending[run]);
                }
                pending.drain(..n);
                if n == 0 {
                    break;
                }
            }
        }
        (out, s.is_done())
    }

    #[test]
    fn gives_the_data_of_each_chunk_whatever_the_pieces() {
        let body =
            b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: y\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                decode(body, step),
                (b"helloabcdefghijklmnopqrstuvwxyz".to_vec(), true),
                "step {step}"
            );
        }
        assert_eq!(decode(b"3\r\nabc\r\n", 100), (b"abc".to_vec(), false));
        // One run per call: the framing before it is followed, the next chunk is not.
        let mut s = ChunkedScan::default();
        assert_eq!(s.next_data(b"2\r\nab\r\n1\r\nc"), Ok((5, Some(3..5))));
    }

    #[test]
    fn refuses_what_is_not_chunked() {
        assert_eq!(scan(b"zz\r\n", 10), Err(BadChunk));
        assert_eq!(scan(b"\r\n", 10), Err(BadChunk));
        assert_eq!(scan(b"2\r\nabX", 10), Err(BadChunk));
        assert_eq!(scan(b"ffffffffffffffff1\r\n", 30), Err(BadChunk));
    }
}
