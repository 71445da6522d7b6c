//! A body-less request that hyper's server side took (HTTP/2 streams, and
//! HTTP/1 requests the fast path handed over) sent to a plain target on the
//! fast path's own sockets instead of hyper's HTTP/1 client: the head written
//! straight from the request's header map, the response head parsed in place
//! into parts, the body read off the socket into frames that share one buffer.
//! That skips hyper's request channel, dispatcher and a header-map copy kept
//! for replays (the head bytes are kept instead): ~14,000 of ~62,600
//! instructions per HTTP/2 request (docs/performance.md).

mod body;
mod request;
mod response;

pub use body::{RawBody, RawBodyError, RawRelease};
pub use request::{TargetHead, target_head};
pub use response::RawResponse;

use crate::proxy::pool::TARGET_MAX_HEAD_BYTES;
use crate::wire::response::{HEAD_TOO_LARGE, Parsed};
use bytes::{Buf, BytesMut};
use http::Method;
use response::parse;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Room kept free in a response buffer before each read of a body.
const READ_SIZE: usize = 16 * 1024;
/// A response buffer's first size: most heads and small bodies fit, and a
/// smaller block is cheaper to allocate; it grows to [`READ_SIZE`].
pub const FIRST_READ: usize = 4 * 1024;

/// Whether a request of `method` may take this path: no body (so it can be
/// sent again whole), and not asking to switch protocols.
pub fn eligible(method: &Method, body_ended: bool, upgrade: bool) -> bool {
    body_ended && !upgrade && method != Method::CONNECT
}

/// Why no response head came.
#[derive(Debug)]
pub enum HeadError {
    /// Nothing came back (closed or reset): on a reused connection, most
    /// likely closed by the target while idle; the request can go again.
    Stale,
    Broken(&'static str),
}

/// Sends `head` on `stream` and reads the response head into `buf` (1xx
/// heads skipped); the bytes after the head stay in `buf`.
pub async fn exchange(
    stream: &mut TcpStream,
    head: &[u8],
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<RawResponse, HeadError> {
    if stream.write_all(head).await.is_err() {
        return Err(HeadError::Stale);
    }
    buf.clear();
    let mut any = false;
    loop {
        if !buf.is_empty() {
            match parse(buf, head_request) {
                Parsed::Complete(resp) => {
                    buf.advance(resp.len);
                    return Ok(resp);
                }
                Parsed::Informational(n) => {
                    buf.advance(n);
                    continue;
                }
                Parsed::Invalid(why) => return Err(HeadError::Broken(why)),
                Parsed::Partial if buf.len() > TARGET_MAX_HEAD_BYTES => {
                    return Err(HeadError::Broken(HEAD_TOO_LARGE));
                }
                Parsed::Partial => {}
            }
        }
        if buf.capacity() - buf.len() < FIRST_READ / 4 {
            buf.reserve(READ_SIZE);
        }
        let read = std::future::poll_fn(|cx| poll_read_buf(stream, cx, buf)).await;
        match read {
            Ok(0) | Err(_) if !any => return Err(HeadError::Stale),
            Ok(0) | Err(_) => return Err(HeadError::Broken("closed inside its response head")),
            Ok(_) => any = true,
        }
    }
}

/// Reads into the spare capacity of `buf`.
fn poll_read_buf(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<std::io::Result<usize>> {
    let spare = buf.spare_capacity_mut();
    let mut read = ReadBuf::uninit(spare);
    ready!(Pin::new(stream).poll_read(cx, &mut read))?;
    let n = read.filled().len();
    // SAFETY: the reader initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}
