//! Worker threads: a listener's long-lived connections are spread evenly over
//! them, whichever worker's socket the kernel gave each one to.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP target that answers every read with the same bytes, and keeps the
/// connection open.
async fn echo_each_read() -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = socket.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// For each poller (epoll instance) of process `pid` that watches any of its
/// established connections on local `port`, how many it watches, sorted.
/// Each worker's runtime has a poller of its own, so this is how many client
/// connections each worker serves.
fn connections_per_poller(pid: i32, port: u16) -> Vec<usize> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let inodes: HashSet<u64> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(fields[1].rsplit(':').next()?, 16).ok()?;
            // State 01 is ESTABLISHED.
            (local_port == port && fields[3] == "01").then(|| fields[9].parse().ok())?
        })
        .collect();
    let mut socket_fds = HashSet::new();
    let mut pollers = Vec::new();
    let fd_dir = format!("/proc/{pid}/fd");
    for entry in std::fs::read_dir(&fd_dir).unwrap().flatten() {
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let link = link.to_string_lossy().into_owned();
        let fd: i32 = entry.file_name().to_string_lossy().parse().unwrap();
        if link == "anon_inode:[eventpoll]" {
            pollers.push(fd);
        } else if let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
            && inodes.contains(&inode)
        {
            socket_fds.insert(fd);
        }
    }
    // A poller may be open under several descriptors (duplicates show the same
    // watch list): count each watch list once.
    let mut counts: HashMap<Vec<i32>, usize> = HashMap::new();
    for poller in pollers {
        let info =
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{poller}")).unwrap_or_default();
        // "tfd:       12 events:       19 data: ..."
        let watched: Vec<i32> = info
            .lines()
            .filter_map(|line| {
                line.strip_prefix("tfd:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        let clients = watched.iter().filter(|fd| socket_fds.contains(fd)).count();
        if clients > 0 {
            counts.insert(watched, clients);
        }
    }
    let mut counts: Vec<usize> = counts.into_values().collect();
    counts.sort_unstable();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_connections_are_spread_evenly_over_the_workers() {
    let target = echo_each_read().await;
    let listen = listen_addr();
    let config = one_group_config(listen, &[(target, 1)], "")
        .replace("[global]\n", "[global]\nworker_threads = 2\n")
        .replace("protocol = \"http\"\nbind", "protocol = \"tcp\"\nbind")
        .replace(
            "name = \"web\"\nprotocol = \"http\"",
            "name = \"web\"\nprotocol = \"tcp\"",
        );
    let lb = Edgelb::start(&config).await;
    // One after another, each proxied both ways before the next one connects:
    // the kernel's hash alone splits twenty connections 10/10 one time in six.
    let mut clients = Vec::new();
    for i in 0..20u8 {
        let mut c = TcpStream::connect(listen).await.unwrap();
        echoes(&mut c, &[b'a' + i; 4]).await;
        clients.push(c);
    }
    assert_eq!(
        connections_per_poller(lb.pid(), listen.port()),
        vec![10, 10],
        "client connections per worker"
    );
    // Every connection still works where it landed.
    for (i, c) in clients.iter_mut().enumerate() {
        echoes(c, &[b'k' + i as u8; 3]).await;
    }
}

/// Sends `msg` through the balancer and checks the target's echo of it.
async fn echoes(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut back))
        .await
        .expect("echo within 5 s")
        .unwrap();
    assert_eq!(back, msg);
}
