//! Cuts off HTTP/2 clients that flood control frames.
//!
//! The h2 crate bounds what each frame can cost (concurrent streams, header
//! list size, reset streams pending accept, one pending PING answer), but it
//! answers a flood of PING or SETTINGS frames, or empty CONTINUATION frames,
//! for as long as it lasts, spending CPU on every one. This reader follows the
//! frame headers of the client's byte stream and closes the connection when
//! the client sends control frames (PING, SETTINGS, RST_STREAM, PRIORITY,
//! WINDOW_UPDATE) faster than a token bucket allows, or a header block in more
//! CONTINUATION frames than any real header list needs — as HAProxy's and
//! nginx's flood counters do.

use std::time::Duration;
use tokio::time::Instant;

/// Length of the client connection preface (`PRI * HTTP/2.0...`).
const PREFACE_LEN: usize = 24;
/// Control frames a client may send in a burst.
const CONTROL_BURST: u32 = 500;
/// One more control frame is allowed every this long (50 per second).
const CONTROL_REFILL: Duration = Duration::from_millis(20);
/// CONTINUATION frames allowed after one HEADERS frame (16 KiB frames make
/// 512 KiB of header block, far past any `max_header_bytes`).
const MAX_CONTINUATIONS: u32 = 32;

const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// Follows a client's HTTP/2 frames; see the module doc.
#[derive(Debug)]
pub struct H2FloodWatch {
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    payload_left: usize,
    /// CONTINUATION frames since the last HEADERS without END_HEADERS.
    continuations: Option<u32>,
    tokens: u32,
    refilled_at: Option<Instant>,
}

impl H2FloodWatch {
    /// A watch for a connection whose first `preface_seen` bytes were read already.
    pub fn new(preface_seen: usize) -> Self {
        H2FloodWatch {
            preface_left: PREFACE_LEN.saturating_sub(preface_seen),
            header: [0; 9],
            header_len: 0,
            payload_left: 0,
            continuations: None,
            tokens: CONTROL_BURST,
            refilled_at: None,
        }
    }

    /// Reads the next bytes from the client; `Err` names the flood when the
    /// connection must be closed.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), &'static str> {
        let skip = self.preface_left.min(data.len());
        self.preface_left -= skip;
        data = &data[skip..];
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                self.payload_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (9 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 9 {
                self.header_len = 0;
                let h = self.header;
                self.payload_left =
                    usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                self.frame(h[3], h[4])?;
            }
        }
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8) -> Result<(), &'static str> {
        match kind {
            HEADERS | PUSH_PROMISE => {
                self.continuations = (flags & FLAG_END_HEADERS == 0).then_some(0);
            }
            CONTINUATION => {
                let count = self.continuations.get_or_insert(0);
                *count += 1;
                if *count > MAX_CONTINUATIONS {
                    return Err("CONTINUATION flood");
                }
                if flags & FLAG_END_HEADERS != 0 {
                    self.continuations = None;
                }
            }
            PING | SETTINGS if flags & FLAG_ACK != 0 => {}
            PING | SETTINGS | RST_STREAM | PRIORITY | WINDOW_UPDATE => self.spend()?,
            _ => {}
        }
        Ok(())
    }

    fn spend(&mut self) -> Result<(), &'static str> {
        let now = Instant::now();
        let at = *self.refilled_at.get_or_insert(now);
        let earned = (now - at).as_millis() / CONTROL_REFILL.as_millis();
        if earned > 0 {
            self.tokens = (u128::from(self.tokens) + earned).min(u128::from(CONTROL_BURST)) as u32;
            self.refilled_at = Some(at + CONTROL_REFILL * earned as u32);
        }
        match self.tokens.checked_sub(1) {
            Some(left) => {
                self.tokens = left;
                Ok(())
            }
            None => Err("control frame flood"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn preface() -> Vec<u8> {
        let mut v = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        v.extend(frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]));
        v
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_flood_is_cut_and_a_steady_rate_is_not() {
        let mut w = H2FloodWatch::new(0);
        w.feed(&preface()).unwrap();
        // Well under the refill rate: never cut.
        for _ in 0..2000 {
            w.feed(&frame(PING, 0, &[0; 8])).unwrap();
            tokio::time::advance(Duration::from_millis(25)).await;
        }
        // A burst past what is left is.
        let flood = frame(PING, 0, &[0; 8]).repeat(CONTROL_BURST as usize + 1);
        assert_eq!(w.feed(&flood), Err("control frame flood"));
    }

    #[tokio::test(start_paused = true)]
    async fn acks_and_data_cost_nothing() {
        let mut w = H2FloodWatch::new(0);
        w.feed(&preface()).unwrap();
        let mut stream = Vec::new();
        for _ in 0..5000 {
            stream.extend(frame(PING, FLAG_ACK, &[0; 8]));
            stream.extend(frame(SETTINGS, FLAG_ACK, &[]));
            stream.extend(frame(0, 0, &[7; 100]));
        }
        // Fed in odd pieces: frame headers split across reads.
        for part in stream.chunks(7) {
            w.feed(part).unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn endless_continuation_is_cut() {
        let mut w = H2FloodWatch::new(3);
        let mut p = preface();
        p.drain(..3);
        w.feed(&p).unwrap();
        w.feed(&frame(HEADERS, 0, &[0x82])).unwrap();
        for _ in 0..MAX_CONTINUATIONS {
            w.feed(&frame(CONTINUATION, 0, &[])).unwrap();
        }
        assert_eq!(
            w.feed(&frame(CONTINUATION, 0, &[])),
            Err("CONTINUATION flood")
        );
        // A block that ends in time is fine, again and again.
        let mut w = H2FloodWatch::new(0);
        w.feed(&preface()).unwrap();
        for _ in 0..100 {
            w.feed(&frame(HEADERS, 0, &[0x82])).unwrap();
            w.feed(&frame(CONTINUATION, 0, &[0x84])).unwrap();
            w.feed(&frame(CONTINUATION, FLAG_END_HEADERS, &[0x86]))
                .unwrap();
        }
    }
}
