//! A small authoritative DNS server on loopback UDP for the tests: real DNS
//! messages (hickory-proto), records a test changes while edgelb runs, a
//! failure mode (SERVFAIL, silence, NXDOMAIN for everything), and a count of
//! the queries each name got.

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the records.
    Normal,
    /// SERVFAIL to everything.
    ServFail,
    /// No answer at all (the client times out).
    Silent,
    /// NXDOMAIN to everything.
    NxDomain,
}

/// The records served, by lower-case name without the final dot.
#[derive(Debug)]
pub struct Zone {
    pub hosts: HashMap<String, Vec<IpAddr>>,
    /// (priority, weight, port, target host)
    pub srv: HashMap<String, Vec<(u16, u16, u16, String)>>,
    pub ttl: u32,
    pub mode: Mode,
    /// Queries received, by name.
    pub queries: HashMap<String, usize>,
}

/// A running server.
#[derive(Clone)]
pub struct DnsServer {
    pub addr: SocketAddr,
    pub zone: Arc<Mutex<Zone>>,
}

impl DnsServer {
    pub async fn start(ttl: u32) -> DnsServer {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone {
            hosts: HashMap::new(),
            srv: HashMap::new(),
            ttl,
            mode: Mode::Normal,
            queries: HashMap::new(),
        }));
        let served = zone.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&served, &query);
                if let Some(bytes) = reply.and_then(|r| r.to_vec().ok()) {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        DnsServer { addr, zone }
    }

    pub fn set_hosts(&self, name: &str, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().unwrap()).collect();
        self.zone.lock().unwrap().hosts.insert(name.into(), ips);
    }

    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let records = records
            .iter()
            .map(|(p, w, port, host)| (*p, *w, *port, host.to_string()))
            .collect();
        self.zone.lock().unwrap().srv.insert(name.into(), records);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.zone.lock().unwrap().mode = mode;
    }

    /// Queries `name` got so far.
    pub fn queries(&self, name: &str) -> usize {
        *self.zone.lock().unwrap().queries.get(name).unwrap_or(&0)
    }
}

fn answer(zone: &Mutex<Zone>, query: &Message) -> Option<Message> {
    let q = query.queries().first()?.clone();
    let name = q
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut zone = zone.lock().unwrap();
    *zone.queries.entry(name.clone()).or_default() += 1;
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .add_query(q.clone());
    match zone.mode {
        Mode::Silent => return None,
        Mode::ServFail => {
            reply.set_response_code(ResponseCode::ServFail);
            return Some(reply);
        }
        Mode::NxDomain => {
            reply.set_response_code(ResponseCode::NXDomain);
            return Some(reply);
        }
        Mode::Normal => {}
    }
    let owner = q.name().clone();
    let known = zone.hosts.contains_key(&name) || zone.srv.contains_key(&name);
    if !known {
        reply.set_response_code(ResponseCode::NXDomain);
        return Some(reply);
    }
    let ttl = zone.ttl;
    match q.query_type() {
        RecordType::A | RecordType::AAAA => {
            for ip in zone.hosts.get(&name).into_iter().flatten() {
                let rdata = match (ip, q.query_type()) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                    _ => continue,
                };
                reply.add_answer(Record::from_rdata(owner.clone(), ttl, rdata));
            }
        }
        RecordType::SRV => {
            for (priority, weight, port, host) in zone.srv.get(&name).into_iter().flatten() {
                let target = Name::from_ascii(format!("{host}.")).unwrap();
                let rdata = RData::SRV(SRV::new(*priority, *weight, *port, target));
                reply.add_answer(Record::from_rdata(owner.clone(), ttl, rdata));
            }
        }
        _ => {}
    }
    Some(reply)
}
