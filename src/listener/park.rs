//! The parking lot of a listener: idle HTTP/1 client connections wait here for
//! their next request at the cost of under a hundred bytes each (a TLS one
//! keeps its session too: a few KiB).
//!
//! A connection idle for [`super::http::PARK_AFTER`] leaves hyper (which frees
//! its buffers) and its task (which ends). What is left — the socket, the
//! client's address, the idle deadline and the connection's accounting — goes
//! into a slot of this table, and the socket into an epoll set of the lot's own.
//! One task per listener waits on that set: a socket with something to read
//! (its next request, or the client's close) leaves the lot and is served by a
//! new task as if it had just been accepted; a socket whose idle timeout runs
//! out is closed. HAProxy keeps an idle connection in a similar table entry; a
//! task per idle connection would cost ten times as much.

use super::ClientConn;
use super::accept::Held;
use crate::listener::dispatch::{Arrival, serve_http};
use crate::proxy::record::TlsInfo;
use crate::runtime::Live;
use crate::tls::identity::ClientIdentity;
use http::HeaderValue;
use socket2::SockRef;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

/// Idle deadlines are checked at most this often (an idle timeout may run
/// this much longer): one pass over the table serves every deadline due.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Readiness events taken from the lot's epoll set per call.
const EVENTS_PER_CALL: usize = 64;

/// Calls per wake-up before the lot's task yields to other tasks.
const CALLS_PER_WAKE: usize = 16;

/// A connection that can wait in the lot, as its HTTP/1 server lets go of it.
pub enum Parkable {
    /// A plain socket.
    Plain(tokio::net::TcpStream),
    /// A TLS stream: its session (keys, sequence numbers, rustls' 4 KiB read
    /// buffer) waits with it; hyper's buffers and the task go, as for a plain one.
    Tls(Box<TlsStream<tokio::net::TcpStream>>),
}

/// A parked connection's stream.
enum ParkedStream {
    /// Out of the runtime's epoll set.
    Plain(std::net::TcpStream),
    /// Still registered with the runtime (a TLS stream cannot be taken apart
    /// and put together again), its socket in the lot's set as well; with
    /// what the handshake told about the client, for the requests after.
    Tls {
        stream: Box<TlsStream<tokio::net::TcpStream>>,
        info: Option<TlsInfo>,
        identity: Option<ClientIdentity>,
    },
}

impl ParkedStream {
    fn socket(&self) -> SockRef<'_> {
        match self {
            ParkedStream::Plain(s) => SockRef::from(s),
            ParkedStream::Tls { stream, .. } => SockRef::from(stream.get_ref().0),
        }
    }
}

/// One parked connection.
struct Parked {
    stream: ParkedStream,
    peer: SocketAddr,
    /// Milliseconds since the lot's epoch when its idle timeout ends.
    deadline: u64,
    held: Held,
}

/// The slots of parked connections; an index is the connection's epoll token.
#[derive(Default)]
struct Slots {
    slots: Vec<Option<Parked>>,
    free: Vec<u32>,
    /// Milliseconds since the epoch of the next sweep (`u64::MAX`: none due).
    next_sweep: u64,
    /// The listener is finishing: nothing parks any more.
    closed: bool,
}

impl Slots {
    fn insert(&mut self, parked: Parked) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(parked);
                i as usize
            }
            None => {
                self.slots.push(Some(parked));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, index: usize) -> Option<Parked> {
        let parked = self.slots.get_mut(index)?.take()?;
        self.free.push(index as u32);
        Some(parked)
    }

    fn clear(&mut self) {
        self.slots = Vec::new();
        self.free = Vec::new();
    }
}

/// What a connection leaving the lot needs to be served again.
pub struct ResumeContext {
    /// The listener's name: the connection is served with its current settings.
    pub name: Arc<str>,
    /// The live snapshot, for the listener's current settings.
    pub live: Arc<Live>,
    /// The listener's port as a header value, for X-Forwarded-Port.
    pub port: HeaderValue,
    /// The listener's port, for redirects.
    pub local_port: u16,
    /// Turns true when the listener finishes (a drain or a stop).
    pub finish: watch::Receiver<bool>,
}

/// The parked connections of one listener (one accept loop).
pub struct ParkingLot {
    epoll: AsyncFd<OwnedFd>,
    slots: Mutex<Slots>,
    /// Told when a connection parks with a deadline before the next sweep.
    earlier: Notify,
    epoch: Instant,
    context: ResumeContext,
}

impl ParkingLot {
    /// An empty lot, with its own epoll set registered with the current runtime.
    pub fn new(context: ResumeContext) -> std::io::Result<Arc<Self>> {
        // SAFETY: epoll_create1 takes no pointers; the descriptor is checked
        // and then owned by the OwnedFd alone.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd keeps its one open descriptor until dropped with
        // the AsyncFd.
        let epoll = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(Arc::new(ParkingLot {
            epoll,
            slots: Mutex::new(Slots {
                next_sweep: u64::MAX,
                ..Slots::default()
            }),
            earlier: Notify::new(),
            epoch: Instant::now(),
            context,
        }))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Parks an idle connection of `conn` until its next request or for
    /// `idle_left`; closes it at once when the listener is finishing.
    pub fn park(&self, stream: Parkable, conn: &ClientConn, idle_left: Duration, held: Held) {
        let peer = conn.peer;
        let stream = match stream {
            // Out of the runtime's epoll set (the socket stays non-blocking).
            Parkable::Plain(stream) => match stream.into_std() {
                Ok(stream) => ParkedStream::Plain(stream),
                Err(_) => return,
            },
            Parkable::Tls(stream) => ParkedStream::Tls {
                stream,
                info: conn.tls.get().cloned(),
                identity: conn.identity.get().cloned(),
            },
        };
        let deadline = self.now_ms() + idle_left.as_millis() as u64;
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        if slots.closed || *self.context.finish.borrow() {
            return;
        }
        let fd = stream.socket().as_raw_fd();
        let index = slots.insert(Parked {
            stream,
            peer,
            deadline,
            held,
        });
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: index as u64,
        };
        // SAFETY: both descriptors are open; `event` outlives the call.
        let added = unsafe {
            libc::epoll_ctl(
                self.epoll.get_ref().as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd,
                &mut event,
            )
        };
        if added != 0 {
            tracing::debug!(%peer, "cannot park: {}", std::io::Error::last_os_error());
            slots.remove(index);
            return;
        }
        if deadline < slots.next_sweep {
            slots.next_sweep = deadline;
            self.earlier.notify_one();
        }
    }

    /// Runs the lot until its listener finishes, then closes what is parked.
    pub async fn run(self: Arc<Self>) {
        let mut finish = self.context.finish.clone();
        loop {
            if *finish.borrow() {
                break;
            }
            let next_sweep = self.slots.lock().map(|s| s.next_sweep).unwrap_or(u64::MAX);
            let sweep_at =
                self.epoch + Duration::from_millis(next_sweep.min(self.now_ms() + 86_400_000));
            tokio::select! {
                changed = finish.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                ready = self.epoll.readable() => {
                    let Ok(mut guard) = ready else { break };
                    if self.take_ready() {
                        guard.clear_ready();
                    }
                }
                _ = tokio::time::sleep_until(sweep_at) => self.sweep(),
                _ = self.earlier.notified() => {}
            }
        }
        if let Ok(mut slots) = self.slots.lock() {
            slots.closed = true;
            slots.clear();
        }
    }

    /// Serves the connections that have something to read; `true` when none
    /// is left to take.
    fn take_ready(self: &Arc<Self>) -> bool {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_CALL];
        for _ in 0..CALLS_PER_WAKE {
            // SAFETY: `events` has room for EVENTS_PER_CALL entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.get_ref().as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS_PER_CALL as i32,
                    0,
                )
            };
            if n <= 0 {
                return true;
            }
            let Ok(mut slots) = self.slots.lock() else {
                return true;
            };
            for event in &events[..n as usize] {
                let Some(parked) = slots.remove(event.u64 as usize) else {
                    continue;
                };
                self.forget(&parked.stream);
                if closed_by_peer(event.events, &parked.stream) {
                    // Nothing to serve: closing needs no task.
                    continue;
                }
                tokio::spawn(resume(self.clone(), parked));
            }
        }
        false
    }

    /// Takes a socket out of the lot's epoll set.
    fn forget(&self, stream: &ParkedStream) {
        // SAFETY: both descriptors are open; DEL ignores the event argument.
        unsafe {
            libc::epoll_ctl(
                self.epoll.get_ref().as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                stream.socket().as_raw_fd(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Closes the connections whose idle timeout ran out and sets the next sweep.
    fn sweep(&self) {
        let now = self.now_ms();
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let mut next = u64::MAX;
        let mut expired = Vec::new();
        for (i, slot) in slots.slots.iter().enumerate() {
            if let Some(parked) = slot {
                if parked.deadline <= now {
                    expired.push(i);
                } else {
                    next = next.min(parked.deadline);
                }
            }
        }
        // Closing a socket takes it out of the epoll set too.
        for i in expired {
            slots.remove(i);
        }
        let floor = now + SWEEP_EVERY.as_millis() as u64;
        slots.next_sweep = if next == u64::MAX {
            next
        } else {
            next.max(floor)
        };
    }
}

/// Whether a parked socket woke up only because the client closed it (no
/// request waiting): then it is closed without serving.
/// (A TLS client's close_notify is bytes to read: served, and read as the end.)
fn closed_by_peer(events: u32, stream: &ParkedStream) -> bool {
    let hangup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
    if events & hangup == 0 {
        return false;
    }
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    !matches!(stream.socket().peek(&mut byte), Ok(n) if n > 0)
}

/// Serves a connection that left the lot with a request (or its close) to read.
async fn resume(lot: Arc<ParkingLot>, parked: Parked) {
    let context = &lot.context;
    // The next request is served with the listener's current settings.
    let Some(runtime) = context.live.load().listener(&context.name).cloned() else {
        return;
    };
    let conn = Arc::new(ClientConn::new(
        parked.peer,
        &runtime,
        context.live.clone(),
        &context.port,
        context.local_port,
    ));
    let finish = context.finish.clone();
    let lot = Some(lot.clone());
    let arrival = Arrival::Unparked;
    match parked.stream {
        ParkedStream::Plain(stream) => {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                return;
            };
            serve_http(stream, conn, runtime, finish, lot, parked.held, arrival).await;
        }
        ParkedStream::Tls {
            stream,
            info,
            identity,
        } => {
            if let Some(info) = info {
                let _ = conn.tls.set(info);
            }
            if let Some(identity) = identity {
                let _ = conn.identity.set(identity);
            }
            serve_http(*stream, conn, runtime, finish, lot, parked.held, arrival).await;
        }
    }
}
