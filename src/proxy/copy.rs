//! Copying a tcp listener's byte streams both ways, with buffers that grow.
//!
//! `tokio::io::copy_bidirectional_with_sizes` allocates and zeroes both of
//! its buffers up front: with 64 KiB each (what bulk transfers want) a short
//! connection pays for 128 KiB of memset; with 16 KiB bulk throughput drops
//! by a fifth (measured with benches/load.sh). Here each direction starts with
//! 16 KiB and grows to 64 KiB the first time a read fills its buffer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// First buffer of each direction.
const START: usize = 16 * 1024;
/// Largest buffer of each direction.
const MAX: usize = 64 * 1024;
/// Reads per poll before yielding to other tasks (a busy bulk stream must not
/// hold its worker thread).
const READS_PER_POLL: usize = 16;

/// One direction: read into the buffer, write it all out, at end of stream
/// flush and shut the writer down (half-close).
struct Half {
    buf: Vec<u8>,
    pos: usize,
    cap: usize,
    read_done: bool,
    need_flush: bool,
    done: bool,
    amount: u64,
}

impl Half {
    fn new() -> Self {
        Half {
            buf: vec![0; START],
            pos: 0,
            cap: 0,
            read_done: false,
            need_flush: false,
            done: false,
            amount: 0,
        }
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        let mut reads = 0;
        loop {
            while self.pos < self.cap {
                match writer
                    .as_mut()
                    .poll_write(cx, &self.buf[self.pos..self.cap])
                {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the peer took no more bytes",
                        )));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.pos += n;
                        self.amount += n as u64;
                        self.need_flush = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.read_done {
                if self.need_flush {
                    ready!(writer.as_mut().poll_flush(cx))?;
                    self.need_flush = false;
                }
                ready!(writer.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            if reads == READS_PER_POLL {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut read = ReadBuf::new(&mut self.buf);
            match reader.as_mut().poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    reads += 1;
                    self.pos = 0;
                    self.cap = n;
                    if n == 0 {
                        self.read_done = true;
                    } else if n == self.buf.len() && self.buf.len() < MAX {
                        self.buf.resize(MAX, 0);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if self.need_flush {
                        ready!(writer.as_mut().poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Copies `a` → `b` and `b` → `a` until both directions reached end of stream
/// (each shutting its writer down when its reader ends); the bytes copied
/// each way, or the first error.
pub async fn bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    Bidirectional {
        a,
        b,
        a_to_b: Half::new(),
        b_to_a: Half::new(),
    }
    .await
}

struct Bidirectional<'a, A: ?Sized, B: ?Sized> {
    a: &'a mut A,
    b: &'a mut B,
    a_to_b: Half,
    b_to_a: Half,
}

impl<A, B> Future for Bidirectional<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    type Output = io::Result<(u64, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let forward = this
            .a_to_b
            .poll_copy(cx, Pin::new(&mut *this.a), Pin::new(&mut *this.b))?;
        let backward = this
            .b_to_a
            .poll_copy(cx, Pin::new(&mut *this.b), Pin::new(&mut *this.a))?;
        match (forward, backward) {
            (Poll::Ready(()), Poll::Ready(())) => {
                Poll::Ready(Ok((this.a_to_b.amount, this.b_to_a.amount)))
            }
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_with_half_close_and_grows() {
        let (mut client, mut near) = tokio::io::duplex(256 * 1024);
        let (mut far, mut server) = tokio::io::duplex(256 * 1024);
        let copy = tokio::spawn(async move { bidirectional(&mut near, &mut far).await });
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, big);
        // The other way still works after the first direction closed.
        server.write_all(b"reply").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply");
        assert_eq!(copy.await.unwrap().unwrap(), (300_000, 5));
    }
}
