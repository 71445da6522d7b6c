//! Where a response body ends on the target connection, followed as its
//! bytes come. Written once for the fast path (which passes the body on as
//! it is, chunk framing included) and the raw target sockets (which hand its
//! data out as frames).

use super::chunked::{BadChunk, ChunkedScan};
use super::response::Framing;
use std::ops::Range;

/// A response body being followed to its end.
#[derive(Debug)]
pub struct BodyEnd {
    framing: Framing,
    /// Body bytes still to come ([`Framing::Length`]).
    left: u64,
    chunks: ChunkedScan,
    done: bool,
}

/// One step of [`BodyEnd::next_data`].
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// How many of the bytes given belong to the body (framing included).
    pub taken: usize,
    /// Where the body's data among them is (empty when they held only
    /// chunk framing).
    pub data: Range<usize>,
}

impl BodyEnd {
    /// A body delimited by `framing`.
    pub fn new(framing: Framing) -> Self {
        BodyEnd {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunks: ChunkedScan::default(),
            done: framing == Framing::Empty,
        }
    }

    /// How the body is delimited.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether the body's last byte has been seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Body bytes still to come, when the target said how many.
    pub fn remaining(&self) -> Option<u64> {
        match self.framing {
            Framing::Empty => Some(0),
            Framing::Length(_) => Some(self.left),
            _ if self.done => Some(0),
            _ => None,
        }
    }

    /// Follows `data` as far as the body goes: how many of its bytes belong
    /// to the body (all of them, unless the body ends inside `data`).
    pub fn pass(&mut self, data: &[u8]) -> Result<usize, BadChunk> {
        match self.framing {
            Framing::Chunked => {
                let n = self.chunks.feed(data)?;
                self.done = self.chunks.is_done();
                Ok(n)
            }
            _ => Ok(self.take_plain(data.len())),
        }
    }

    /// Follows `data` up to the end of its first run of body data.
    pub fn next_data(&mut self, data: &[u8]) -> Result<Step, BadChunk> {
        match self.framing {
            Framing::Chunked => {
                let (taken, run) = self.chunks.next_data(data)?;
                self.done = self.chunks.is_done();
                Ok(Step {
                    taken,
                    data: run.unwrap_or(0..0),
                })
            }
            _ => {
                let taken = self.take_plain(data.len());
                Ok(Step {
                    taken,
                    data: 0..taken,
                })
            }
        }
    }

    /// The target closed its connection: that ends a body delimited by the
    /// close; true when the body is complete.
    pub fn closed(&mut self) -> bool {
        if self.framing == Framing::UntilClose {
            self.done = true;
        }
        self.done
    }

    /// A body not chunked: how many of `avail` bytes it takes.
    fn take_plain(&mut self, avail: usize) -> usize {
        match self.framing {
            Framing::Length(_) => {
                let take = self.left.min(avail as u64);
                self.left -= take;
                self.done = self.left == 0;
                take as usize
            }
            Framing::UntilClose => avail,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sized_body_ends_at_its_length() {
        let mut end = BodyEnd::new(Framing::Length(5));
        assert_eq!(end.pass(b"abc"), Ok(3));
        assert!(!end.is_done());
        assert_eq!(end.remaining(), Some(2));
        assert_eq!(
            end.next_data(b"deHTTP"),
            Ok(Step {
                taken: 2,
                data: 0..2
            })
        );
        assert!(end.is_done());
    }

    #[test]
    fn a_chunked_body_passes_whole_or_gives_its_data() {
        let body = b"3\r\nabc\r\n0\r\n\r\nextra";
        let mut passed = BodyEnd::new(Framing::Chunked);
        assert_eq!(passed.pass(body), Ok(body.len() - 5));
        assert!(passed.is_done());
        let mut framed = BodyEnd::new(Framing::Chunked);
        let step = framed.next_data(body).unwrap();
        assert_eq!(&body[step.data.clone()], b"abc");
        let rest = framed.next_data(&body[step.taken..]).unwrap();
        assert!(rest.data.is_empty());
        assert!(framed.is_done());
        assert!(BodyEnd::new(Framing::Chunked).pass(b"zz\r\n").is_err());
    }

    #[test]
    fn only_a_close_ends_a_body_delimited_by_it() {
        let mut end = BodyEnd::new(Framing::UntilClose);
        assert_eq!(end.pass(b"anything"), Ok(8));
        assert_eq!(end.remaining(), None);
        assert!(end.closed());
        let mut sized = BodyEnd::new(Framing::Length(3));
        assert!(!sized.closed(), "a close inside a sized body breaks it");
        assert!(BodyEnd::new(Framing::Empty).is_done());
    }
}
