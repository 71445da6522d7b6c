//! Copying a tcp listener's byte streams both ways, with buffers that grow.
//!
//! `tokio::io::copy_bidirectional_with_sizes` allocates and zeroes both of
//! its buffers up front: with 64 KiB each (what bulk transfers want) a short
//! connection pays for 128 KiB of memset; with 16 KiB bulk throughput drops
//! by a fifth (measured with benches/load.sh). Here each direction starts with
//! 16 KiB, never zeroed (reads go into the spare capacity), and grows to
//! 64 KiB the first time a read fills its buffer.
//!
//! Between plain sockets, a direction whose writer's socket has ended the
//! other way too does not shut that writer down: the socket is closed right
//! after, which sends the same FIN (that socket was read to its end, so
//! nothing unread could turn it into a reset), and a short connection saves a
//! syscall. And the first direction to end passes its end on only after the
//! runtime has polled its sockets once more: a request-response client has
//! usually closed by then (it had its answer), so the connection ends as two
//! closes with no `shutdown`, and the client side's TIME_WAIT stays with the
//! client, as with HAProxy.
//!
//! A direction whose reader's end is already known when its last bytes are
//! read (on loopback a target's answer and its FIN usually arrive in one
//! event) sends those bytes and its end in one segment where the writer can
//! ([`EndWithData`]: a plain socket, `MSG_MORE` then `shutdown`), as HAProxy
//! does when it has seen the end first: one segment less per connection
//! (TCP segments per proxied short connection 20.1 -> 19.4, HAProxy 19.5).
//! The price is a `shutdown` call, and that end of the connection, having
//! ended first, keeps the TIME_WAIT (the kernel's, ~200 bytes, no
//! descriptor). When the end comes later, the put-off above applies.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writers that can send their last bytes and their end together.
pub trait EndWithData {
    /// Whether [`EndWithData::write_and_end`] can do anything (the copy
    /// then looks for its reader's end before writing a short read out).
    fn ends_with_data(&self) -> bool {
        false
    }
    /// Sends `data` followed by the end of the stream in one go, if the
    /// socket takes it whole at once: how many bytes went, and whether the
    /// end went after them. `None`: nothing was sent (the socket was not
    /// writable); anything short of all of `data` is pushed out without the
    /// end.
    fn write_and_end(&mut self, _data: &[u8]) -> Option<(usize, bool)> {
        None
    }
}

impl EndWithData for tokio::net::TcpStream {
    fn ends_with_data(&self) -> bool {
        true
    }
    fn write_and_end(&mut self, data: &[u8]) -> Option<(usize, bool)> {
        let socket = socket2::SockRef::from(&*self);
        // MSG_MORE holds the bytes back so the FIN of the shutdown rides on
        // their segment.
        let sent = self
            .try_io(tokio::io::Interest::WRITABLE, || {
                socket.send_with_flags(data, libc::MSG_MORE | libc::MSG_NOSIGNAL)
            })
            .ok()?;
        if sent == data.len() && socket.shutdown(std::net::Shutdown::Write).is_ok() {
            return Some((sent, true));
        }
        // Taken in part (or no end): what is held back goes out now.
        let _ = socket.set_tcp_nodelay(true);
        Some((sent, false))
    }
}

impl<S> EndWithData for tokio_rustls::server::TlsStream<S> {}

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
    /// `buf[pos..]` is what was read and not written yet.
    buf: Vec<u8>,
    pos: usize,
    /// A read filled the buffer: the next one gets the largest.
    grow: bool,
    read_done: bool,
    need_flush: bool,
    /// The half-close put off until the runtime has polled its sockets once
    /// more (see the module's doc); boxed as tokio's yield cannot be named.
    put_off: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The put-off half-close has waited.
    waited: bool,
    /// Sending the last bytes with the end was tried.
    end_tried: bool,
    done: bool,
    amount: u64,
}

impl Half {
    fn new() -> Self {
        Self::seeded(Vec::with_capacity(START), 0)
    }

    /// A direction whose first bytes were read already (`buf`), of which the
    /// first `written` went out already.
    fn seeded(mut buf: Vec<u8>, written: usize) -> Self {
        if buf.capacity() < START {
            buf.reserve(START - buf.len());
        }
        Half {
            buf,
            pos: written,
            grow: false,
            read_done: false,
            need_flush: written > 0,
            put_off: None,
            waited: false,
            end_tried: false,
            done: false,
            amount: written as u64,
        }
    }

    /// After a short read: whether the reader's end came with those bytes.
    /// Costs nothing when it did not (tokio cleared the readiness on the
    /// short read); when the FIN is there, the read that finds it is the one
    /// the next turn would have made.
    fn look_for_end<R: AsyncRead + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        reader: Pin<&mut R>,
    ) -> io::Result<()> {
        // No room would read as an end.
        debug_assert!(self.buf.len() < self.buf.capacity());
        let mut more = ReadBuf::uninit(self.buf.spare_capacity_mut());
        match reader.poll_read(cx, &mut more) {
            Poll::Ready(Ok(())) => {
                let m = more.filled().len();
                if m == 0 {
                    self.read_done = true;
                } else {
                    let len = self.buf.len() + m;
                    // SAFETY: the reader initialised the next `m` bytes of the
                    // spare capacity.
                    unsafe { self.buf.set_len(len) };
                }
                Ok(())
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(()),
        }
    }

    /// Copies until end of stream; `shut_down` says whether the writer is then
    /// shut down (or left for the caller to close), and `put_off` whether that
    /// shutdown waits one scheduler turn first.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        shut_down: bool,
        put_off: bool,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + EndWithData + Unpin + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        let mut reads = 0;
        loop {
            if self.read_done
                && self.pos < self.buf.len()
                && !self.end_tried
                && writer.ends_with_data()
            {
                if let Some((n, ended)) = writer
                    .as_mut()
                    .get_mut()
                    .write_and_end(&self.buf[self.pos..])
                {
                    self.pos += n;
                    self.amount += n as u64;
                    if ended {
                        self.done = true;
                        return Poll::Ready(Ok(()));
                    }
                }
                // Tried once: the rest goes the usual way.
                self.end_tried = true;
            }
            while self.pos < self.buf.len() {
                match writer.as_mut().poll_write(cx, &self.buf[self.pos..]) {
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
                if shut_down {
                    if put_off && !self.waited {
                        let wait = self
                            .put_off
                            .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
                        ready!(wait.as_mut().poll(cx));
                        self.put_off = None;
                        self.waited = true;
                        // The other way may have ended meanwhile: ask again.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    ready!(writer.as_mut().poll_shutdown(cx))?;
                }
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            if reads == READS_PER_POLL {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.grow {
                self.grow = false;
                self.buf = Vec::with_capacity(MAX);
            }
            self.buf.clear();
            self.pos = 0;
            let mut read = ReadBuf::uninit(self.buf.spare_capacity_mut());
            match reader.as_mut().poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    // SAFETY: the reader initialised the first `n` bytes of the
                    // spare capacity (ReadBuf's filled part starts at its start).
                    unsafe { self.buf.set_len(n) };
                    reads += 1;
                    if n == 0 {
                        self.read_done = true;
                    } else if n == self.buf.capacity() {
                        // A full read: more is likely waiting.
                        self.grow = n < MAX;
                    } else if writer.ends_with_data() {
                        self.look_for_end(cx, reader.as_mut())?;
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
/// (each shutting its writer down when its reader ends; with `plain`, the
/// last one leaves that to the caller's close); the bytes copied each way, or
/// the first error.
pub async fn bidirectional<A, B>(a: &mut A, b: &mut B, plain: bool) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + EndWithData + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + EndWithData + Unpin + ?Sized,
{
    bidirectional_seeded(a, b, plain, Vec::new(), 0).await
}

/// As [`bidirectional`], with `first` already read from `a`, of which the
/// first `written` bytes were already written to `b`.
pub async fn bidirectional_seeded<A, B>(
    a: &mut A,
    b: &mut B,
    plain: bool,
    first: Vec<u8>,
    written: usize,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + EndWithData + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + EndWithData + Unpin + ?Sized,
{
    Bidirectional {
        a,
        b,
        a_to_b: Half::seeded(first, written),
        b_to_a: Half::new(),
        plain,
    }
    .await
}

struct Bidirectional<'a, A: ?Sized, B: ?Sized> {
    a: &'a mut A,
    b: &'a mut B,
    a_to_b: Half,
    b_to_a: Half,
    /// Both sides are plain sockets, closed by the caller once done.
    plain: bool,
}

impl<A, B> Future for Bidirectional<'_, A, B>
where
    A: AsyncRead + AsyncWrite + EndWithData + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + EndWithData + Unpin + ?Sized,
{
    type Output = io::Result<(u64, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Between plain sockets a writer whose socket has also ended the other
        // way (read to its end: nothing unread to turn a close into a reset)
        // is left to the caller's close.
        let shut_a_to_b = !(this.plain && this.b_to_a.read_done);
        let forward = this.a_to_b.poll_copy(
            cx,
            Pin::new(&mut *this.a),
            Pin::new(&mut *this.b),
            shut_a_to_b,
            this.plain,
        )?;
        let shut_b_to_a = !(this.plain && this.a_to_b.read_done);
        let backward = this.b_to_a.poll_copy(
            cx,
            Pin::new(&mut *this.b),
            Pin::new(&mut *this.a),
            shut_b_to_a,
            this.plain,
        )?;
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
        let copy = tokio::spawn(async move { bidirectional(&mut near, &mut far, false).await });
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

    impl EndWithData for tokio::io::DuplexStream {}
    impl<S> EndWithData for Shutdowns<S> {}

    /// Segments the socket has sent (`TCP_INFO`).
    fn segments_out(socket: &tokio::net::TcpStream) -> u32 {
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        use std::os::fd::AsRawFd;
        // SAFETY: a tcp_info-sized buffer and its length for TCP_INFO.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "TCP_INFO");
        info.tcpi_segs_out
    }

    /// A connected pair of loopback sockets (the accepted one second).
    async fn socket_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (connected, accepted) = tokio::join!(connect, listener.accept());
        let accepted = accepted.unwrap().0;
        accepted.set_nodelay(true).unwrap();
        (connected.unwrap(), accepted)
    }

    #[tokio::test]
    async fn a_socket_sends_its_last_bytes_and_its_end_in_one_segment() {
        let (mut peer, mut socket) = socket_pair().await;
        socket.writable().await.unwrap();
        assert!(socket.ends_with_data());
        let before = segments_out(&socket);
        assert_eq!(socket.write_and_end(b"answer"), Some((6, true)));
        assert_eq!(segments_out(&socket) - before, 1, "data and FIN apart");
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
        // Written the usual way, the same bytes and end take two segments.
        let (mut peer, mut socket) = socket_pair().await;
        let before = segments_out(&socket);
        socket.write_all(b"answer").await.unwrap();
        socket.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
        assert_eq!(segments_out(&socket) - before, 2);
    }

    #[tokio::test]
    async fn an_answer_that_ends_with_its_target_reaches_the_client_whole_over_sockets() {
        for size in [6usize, 20_000, 200_000] {
            let (mut client, mut near) = socket_pair().await;
            let (mut far, mut server) = socket_pair().await;
            let copy = tokio::spawn(async move {
                let moved = bidirectional(&mut near, &mut far, true).await;
                (moved, near, far)
            });
            let answer: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            client.write_all(b"ask").await.unwrap();
            let mut asked = [0u8; 3];
            server.read_exact(&mut asked).await.unwrap();
            server.write_all(&answer).await.unwrap();
            server.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got.len(), size);
            assert!(got == answer, "answer of {size} bytes changed");
            client.shutdown().await.unwrap();
            let (moved, _near, _far) = copy.await.unwrap();
            assert_eq!(moved.unwrap(), (3, size as u64));
        }
    }

    /// Counts the shutdowns of the stream it wraps.
    struct Shutdowns<S>(S, std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl<S: AsyncRead + Unpin> AsyncRead for Shutdowns<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Shutdowns<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, data)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// Shutdowns counted on the copy's client-side and server-side ends.
    type Shuts = [std::sync::Arc<std::sync::atomic::AtomicUsize>; 2];

    /// A copy between two plain ends and the peers at each end.
    struct PlainCopy {
        client: tokio::io::DuplexStream,
        server: tokio::io::DuplexStream,
        shuts: Shuts,
        copy: tokio::task::JoinHandle<io::Result<(u64, u64)>>,
    }

    /// A copy between two plain ends (client side, server side), counting the
    /// shutdowns of each end the copy writes to.
    fn plain_copy() -> PlainCopy {
        let (client, near) = tokio::io::duplex(1024);
        let (far, server) = tokio::io::duplex(1024);
        let shuts: Shuts = Default::default();
        let mut near = Shutdowns(near, shuts[0].clone());
        let mut far = Shutdowns(far, shuts[1].clone());
        let copy = tokio::spawn(async move { bidirectional(&mut near, &mut far, true).await });
        PlainCopy {
            client,
            server,
            shuts,
            copy,
        }
    }

    /// The shutdowns of the client's end and of the server's end so far.
    fn shut_downs(shuts: &Shuts) -> (usize, usize) {
        let n = |i: usize| shuts[i].load(std::sync::atomic::Ordering::SeqCst);
        (n(0), n(1))
    }

    /// The client asks, the server answers and ends its side.
    async fn ask_and_answer_then_server_ends(
        client: &mut tokio::io::DuplexStream,
        server: &mut tokio::io::DuplexStream,
    ) {
        client.write_all(b"ask").await.unwrap();
        let mut asked = [0u8; 3];
        server.read_exact(&mut asked).await.unwrap();
        server.write_all(b"answer").await.unwrap();
        server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn between_plain_sockets_only_the_first_end_is_shut_down() {
        let PlainCopy {
            mut client,
            mut server,
            shuts,
            copy,
        } = plain_copy();
        // The server answers and closes first: its end reaches the client.
        ask_and_answer_then_server_ends(&mut client, &mut server).await;
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer");
        assert_eq!(shut_downs(&shuts).0, 1);
        // Then the client closes: the copy ends without shutting the server side
        // down (closing the socket sends that end).
        client.shutdown().await.unwrap();
        assert_eq!(copy.await.unwrap().unwrap(), (3, 6));
        assert_eq!(shut_downs(&shuts), (1, 0));
    }

    #[tokio::test]
    async fn a_client_that_closes_after_its_answer_ends_the_copy_without_a_shutdown() {
        let PlainCopy {
            mut client,
            mut server,
            shuts,
            copy,
        } = plain_copy();
        ask_and_answer_then_server_ends(&mut client, &mut server).await;
        // The client has its answer and closes before the server's end reaches it.
        let mut answer = [0u8; 6];
        client.read_exact(&mut answer).await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(copy.await.unwrap().unwrap(), (3, 6));
        assert_eq!(shut_downs(&shuts), (0, 0));
    }
}
