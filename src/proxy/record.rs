//! Access-log records, filled while a request (or a TCP connection) is served
//! and written when it ends. Built only when the access log is on.

use crate::proxy::client::ClientConn;
use crate::telemetry::access_log::{AccessLog, log_time};
use crate::tls::identity::ClientIdentity;
use http::request::Parts;
use http::{HeaderValue, header};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// TLS facts of a client connection, for the log.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub version: &'static str,
    pub cipher: String,
    pub sni: Option<String>,
}

impl TlsInfo {
    /// What a finished server handshake negotiated.
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        TlsInfo {
            version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "-",
            },
            cipher: conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
            sni: conn.server_name().map(str::to_owned),
        }
    }
}

fn seconds(from: Option<Instant>, to: Option<Instant>) -> Value {
    match (from, to) {
        (Some(a), Some(b)) => json!(b.saturating_duration_since(a).as_secs_f64()),
        _ => json!(-1),
    }
}

fn text(v: Option<&HeaderValue>) -> Value {
    v.and_then(|v| v.to_str().ok())
        .map_or(Value::Null, |s| Value::String(s.to_owned()))
}

/// What a record takes from an HTTP/1.1 request head read in place.
pub struct RawHead<'a> {
    pub method: &'a str,
    /// Origin form: `/path?query`.
    pub target: &'a [u8],
    /// The `Host` header's value.
    pub host: &'a [u8],
    pub user_agent: Option<&'a [u8]>,
    /// The declared body length.
    pub body_len: u64,
}

/// What a record takes from a request head.
struct HeadFields<'a> {
    method: &'a str,
    host: Value,
    path: &'a str,
    query: Option<&'a str>,
    protocol: String,
    user_agent: Value,
    received_bytes: u64,
}

/// A header value as [`text`] shows it (visible ASCII only, else null).
fn raw_text(v: Option<&[u8]>) -> Value {
    v.filter(|v| v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map_or(Value::Null, |s| Value::String(s.to_owned()))
}

/// One HTTP request's record.
pub struct RequestRecord {
    log: Arc<AccessLog>,
    fields: Map<String, Value>,
    received: Instant,
    sent_to_target: Option<Instant>,
    target_head: Option<Instant>,
    response_head: Option<Instant>,
    sent_bytes: u64,
}

impl RequestRecord {
    /// Starts a record for a request whose head is `parts`.
    pub fn new(
        log: &Arc<AccessLog>,
        conn: &ClientConn,
        listener: &str,
        parts: &Parts,
    ) -> Box<Self> {
        let received_bytes = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let head = HeadFields {
            method: parts.method.as_str(),
            host: text(parts.headers.get(header::HOST))
                .as_str()
                .map_or_else(|| json!(parts.uri.host()), |h| json!(h)),
            path: parts.uri.path(),
            query: parts.uri.query(),
            protocol: format!("{:?}", parts.version),
            user_agent: text(parts.headers.get(header::USER_AGENT)),
            received_bytes,
        };
        Self::start(log, conn, listener, head)
    }

    /// Starts a record for an HTTP/1.1 request head read in place (the fast path).
    pub fn new_raw(
        log: &Arc<AccessLog>,
        conn: &ClientConn,
        listener: &str,
        raw: RawHead<'_>,
    ) -> Box<Self> {
        let target = std::str::from_utf8(raw.target).unwrap_or("");
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let head = HeadFields {
            method: raw.method,
            host: raw_text(Some(raw.host)),
            path,
            query,
            protocol: "HTTP/1.1".to_owned(),
            user_agent: raw_text(raw.user_agent),
            received_bytes: raw.body_len,
        };
        Self::start(log, conn, listener, head)
    }

    fn start(
        log: &Arc<AccessLog>,
        conn: &ClientConn,
        listener: &str,
        head: HeadFields,
    ) -> Box<Self> {
        let mut f = Map::new();
        f.insert("type".into(), json!("http"));
        f.insert("time".into(), json!(log_time(SystemTime::now())));
        f.insert("listener".into(), json!(listener));
        f.insert("client".into(), json!(conn.peer.to_string()));
        f.insert("method".into(), json!(head.method));
        f.insert("host".into(), head.host);
        f.insert("path".into(), json!(head.path));
        f.insert("query".into(), json!(head.query));
        f.insert("protocol".into(), json!(head.protocol));
        f.insert("user_agent".into(), head.user_agent);
        f.insert("received_bytes".into(), json!(head.received_bytes));
        let tls = conn.tls.get();
        f.insert("tls_version".into(), json!(tls.map(|t| t.version)));
        f.insert("tls_cipher".into(), json!(tls.map(|t| t.cipher.clone())));
        f.insert("sni".into(), json!(tls.and_then(|t| t.sni.clone())));
        client_cert_fields(&mut f, conn.identity.get());
        Box::new(RequestRecord {
            log: log.clone(),
            fields: f,
            received: Instant::now(),
            sent_to_target: None,
            target_head: None,
            response_head: None,
            sent_bytes: 0,
        })
    }

    /// Which rule (or the default) routed the request, and to what action.
    pub fn routed(&mut self, priority: Option<u32>, action: &'static str) {
        self.fields.insert(
            "rule_priority".into(),
            json!(priority.map_or(Value::from("default"), Value::from)),
        );
        self.fields.insert("action".into(), json!(action));
    }

    /// The request id the target saw.
    pub fn request_id(&mut self, id: Option<&HeaderValue>) {
        self.fields.insert("request_id".into(), text(id));
    }

    /// [`Self::request_id`] from the bytes of a head written in place.
    pub fn request_id_raw(&mut self, id: Option<&[u8]>) {
        self.fields.insert("request_id".into(), raw_text(id));
    }

    /// The target group and target tried last.
    pub fn target(&mut self, group: &str, target: SocketAddr) {
        self.fields.insert("target_group".into(), json!(group));
        self.fields
            .insert("target".into(), json!(target.to_string()));
        self.sent_to_target = Some(Instant::now());
    }

    /// The target's response head arrived with `status`.
    pub fn target_status(&mut self, status: u16) {
        self.target_head = Some(Instant::now());
        self.fields
            .insert("target_status_code".into(), json!(status));
    }

    /// Why edgelb answered itself (`connect_failed`, `target_timeout`, …).
    pub fn error(&mut self, reason: &'static str) {
        self.fields.insert("error_reason".into(), json!(reason));
    }

    /// The response head edgelb sends.
    pub fn response(&mut self, status: u16) {
        self.response_head = Some(Instant::now());
        self.fields.insert("elb_status_code".into(), json!(status));
    }

    /// The gRPC status of the response (SPEC §7): the target's, or the one
    /// edgelb answered with. Absent (null in the line) when not gRPC.
    pub fn grpc_status(&mut self, code: u32) {
        self.fields.insert("grpc_status".into(), json!(code));
    }

    /// Body bytes sent to the client.
    #[inline]
    pub fn add_sent(&mut self, n: usize) {
        self.sent_bytes += n as u64;
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let done = Some(Instant::now());
        let mut f = std::mem::take(&mut self.fields);
        let received = Some(self.received);
        let (request_time, target_time) = match (self.sent_to_target, self.target_head) {
            (Some(sent), Some(head)) => (
                seconds(received, Some(sent)),
                seconds(Some(sent), Some(head)),
            ),
            (Some(sent), None) => (seconds(received, Some(sent)), json!(-1)),
            _ => (seconds(received, self.response_head), json!(-1)),
        };
        f.insert("request_processing_time".into(), request_time);
        f.insert("target_processing_time".into(), target_time);
        f.insert(
            "response_processing_time".into(),
            seconds(self.target_head.or(self.response_head), done),
        );
        f.insert("sent_bytes".into(), json!(self.sent_bytes));
        f.entry("grpc_status").or_insert(Value::Null);
        self.log.emit(f);
    }
}

/// One TCP (or tls) connection's record, written when it closes.
pub struct StreamRecord {
    log: Arc<AccessLog>,
    fields: Map<String, Value>,
    opened: Instant,
}

impl StreamRecord {
    /// Starts a record for a connection from `client` on `listener`.
    pub fn new(
        log: &Arc<AccessLog>,
        listener: &str,
        client: SocketAddr,
        tls: Option<&TlsInfo>,
        identity: Option<&ClientIdentity>,
    ) -> Self {
        let mut f = Map::new();
        f.insert("type".into(), json!("tcp"));
        f.insert("time".into(), json!(log_time(SystemTime::now())));
        f.insert("listener".into(), json!(listener));
        f.insert("client".into(), json!(client.to_string()));
        f.insert("tls_version".into(), json!(tls.map(|t| t.version)));
        f.insert("tls_cipher".into(), json!(tls.map(|t| t.cipher.clone())));
        f.insert("sni".into(), json!(tls.and_then(|t| t.sni.clone())));
        client_cert_fields(&mut f, identity);
        StreamRecord {
            log: log.clone(),
            fields: f,
            opened: Instant::now(),
        }
    }

    /// The target the connection went to.
    pub fn target(&mut self, group: &str, target: SocketAddr) {
        self.fields.insert("target_group".into(), json!(group));
        self.fields
            .insert("target".into(), json!(target.to_string()));
    }

    /// Why the connection ended early, if it did.
    pub fn error(&mut self, reason: &'static str) {
        self.fields.insert("error_reason".into(), json!(reason));
    }

    /// Closes the record with the bytes moved each way.
    pub fn finish(mut self, received: u64, sent: u64) {
        self.fields.insert("received_bytes".into(), json!(received));
        self.fields.insert("sent_bytes".into(), json!(sent));
        self.fields.insert(
            "duration".into(),
            json!(self.opened.elapsed().as_secs_f64()),
        );
        let f = std::mem::take(&mut self.fields);
        self.log.emit(f);
    }
}

/// The client-certificate fields of a record (SPEC §8): the leaf's subject
/// and serial, null without one; `mtls_error` is null on every connection
/// that got as far as a request or a stream.
fn client_cert_fields(f: &mut Map<String, Value>, identity: Option<&ClientIdentity>) {
    f.insert(
        "client_cert_subject".into(),
        json!(identity.and_then(|i| i.subject.clone())),
    );
    f.insert(
        "client_cert_serial".into(),
        json!(identity.and_then(|i| i.serial.clone())),
    );
    f.insert("mtls_error".into(), Value::Null);
}

/// Writes the record of a handshake refused for the client's certificate
/// (`mtls_error`: one of `tls::client_auth::REASONS`): the one trace in the
/// access log of a client that never got to send a request.
pub fn handshake_refused(
    log: &Arc<AccessLog>,
    listener: &str,
    client: SocketAddr,
    reason: &'static str,
) {
    let mut f = Map::new();
    f.insert("type".into(), json!("handshake"));
    f.insert("time".into(), json!(log_time(SystemTime::now())));
    f.insert("listener".into(), json!(listener));
    f.insert("client".into(), json!(client.to_string()));
    f.insert("client_cert_subject".into(), Value::Null);
    f.insert("client_cert_serial".into(), Value::Null);
    f.insert("mtls_error".into(), json!(reason));
    log.emit(f);
}
