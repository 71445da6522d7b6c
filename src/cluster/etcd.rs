//! A client of etcd's v3 API through its JSON gateway (`POST /v3/kv/range`,
//! `/v3/kv/txn`, `/v3/watch`, `/v3/lease/*`), spoken over hyper's HTTP/1.1
//! client: what a node needs and no more. Why not the gRPC client crate:
//! docs/architecture.md (36 more crates and `protoc` at build time).
//!
//! Calls go to one endpoint at a time and move on to the next one when it
//! cannot be reached; every call has a deadline.

use crate::config::{Cluster, EtcdEndpoint};
use crate::tls::stream::TargetStream;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one call to one endpoint may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdError {
    /// No endpoint could be reached, or none answered in time.
    Unavailable(String),
    /// etcd answered with an error.
    Refused(String),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unavailable(e) => write!(f, "etcd unavailable: {e}"),
            EtcdError::Refused(e) => write!(f, "etcd refused: {e}"),
        }
    }
}

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(Kv),
    Delete { key: String, mod_revision: i64 },
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// A condition of a transaction.
pub enum Compare<'a> {
    /// The key does not exist.
    Absent(&'a str),
    /// The key was last changed at this revision.
    ModRevision(&'a str, i64),
}

/// An operation of a transaction.
pub enum Op<'a> {
    Put {
        key: &'a str,
        value: &'a [u8],
        lease: i64,
    },
    Delete(&'a str),
    /// Every key starting with the prefix.
    DeletePrefix(&'a str),
}

/// The client.
pub struct Etcd {
    endpoints: Vec<EtcdEndpoint>,
    /// The endpoint that answered last: tried first.
    current: AtomicUsize,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// What went wrong with one endpoint.
enum Failure {
    /// Nothing was sent: another endpoint may be tried for any call.
    NotSent(String),
    /// Sent, but no answer came: a write may or may not have happened.
    NoAnswer(String),
    /// etcd answered with an error; `retry` when it says it could not serve
    /// the call (no leader, not ready): nothing was done.
    Answered { message: String, retry: bool },
}

impl Etcd {
    /// A client of `cluster`'s endpoints (TLS settings read now).
    pub fn new(cluster: &Cluster) -> Result<Etcd, String> {
        let tls = if cluster.etcd.iter().any(|e| e.tls) {
            Some(tls_config(cluster)?)
        } else {
            None
        };
        Ok(Etcd {
            endpoints: cluster.etcd.clone(),
            current: AtomicUsize::new(0),
            tls,
        })
    }

    /// Reads every key under `prefix`: the store's revision and the keys.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>), EtcdError> {
        let body =
            json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) });
        let v = self.call("/v3/kv/range", &body, true).await?;
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().filter_map(kv).collect())
            .unwrap_or_default();
        Ok((revision(&v), kvs))
    }

    /// Reads one key.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let v = self
            .call("/v3/kv/range", &json!({ "key": B64.encode(key) }), true)
            .await?;
        Ok(v["kvs"].as_array().and_then(|a| a.first()).and_then(kv))
    }

    /// Runs `ops` if every comparison holds: (whether they ran, the revision
    /// after).
    pub async fn txn(
        &self,
        compare: &[Compare<'_>],
        ops: &[Op<'_>],
    ) -> Result<(bool, i64), EtcdError> {
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::Absent(k) => {
                    json!({ "target": "CREATE", "key": B64.encode(k), "create_revision": "0" })
                }
                Compare::ModRevision(k, r) => {
                    json!({ "target": "MOD", "key": B64.encode(k), "mod_revision": r.to_string() })
                }
            })
            .collect();
        let success: Vec<Value> = ops.iter().map(op).collect();
        let v = self
            .call(
                "/v3/kv/txn",
                &json!({ "compare": compare, "success": success }),
                false,
            )
            .await?;
        Ok((v["succeeded"].as_bool().unwrap_or(false), revision(&v)))
    }

    /// Writes `value` at `key` unconditionally (bound to `lease` unless 0).
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let (_, rev) = self.txn(&[], &[Op::Put { key, value, lease }]).await?;
        Ok(rev)
    }

    /// A new lease of `ttl` seconds: its ID.
    pub async fn lease_grant(&self, ttl: i64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }), false)
            .await?;
        Ok(int(&v["ID"]))
    }

    /// Keeps lease `id` alive: its remaining TTL (0 = it has expired).
    pub async fn lease_keepalive(&self, id: i64) -> Result<i64, EtcdError> {
        let v = self
            .call(
                "/v3/lease/keepalive",
                &json!({ "ID": id.to_string() }),
                true,
            )
            .await?;
        Ok(int(&v["result"]["TTL"]))
    }

    /// Watches every key under `prefix` from revision `from` on.
    pub async fn watch(&self, prefix: &str, from: i64) -> Result<Watch, EtcdError> {
        let body = json!({ "create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
            "start_revision": from.to_string(),
        }});
        let body = Bytes::from(body.to_string());
        let mut last = String::from("no endpoint");
        for endpoint in self.order() {
            let attempt = tokio::time::timeout(CALL_TIMEOUT, async {
                let resp = self.send(endpoint, "/v3/watch", body.clone()).await?;
                if !resp.status().is_success() {
                    return Err(Failure::NoAnswer(format!("HTTP {}", resp.status())));
                }
                let mut watch = Watch {
                    body: resp.into_body(),
                    buf: BytesMut::new(),
                };
                // The first message says whether the watch was created.
                match watch.message().await {
                    Ok(m) if m["result"]["created"].as_bool() == Some(true) => Ok(watch),
                    Ok(m) => Err(Failure::Answered {
                        message: m.to_string(),
                        retry: true,
                    }),
                    Err(WatchError::Broken(e)) => Err(Failure::NoAnswer(e)),
                    Err(WatchError::Compacted(r)) => Err(Failure::Answered {
                        message: format!("compacted at {r}"),
                        retry: false,
                    }),
                }
            })
            .await;
            match attempt {
                Ok(Ok(w)) => return Ok(w),
                Ok(Err(Failure::NotSent(e) | Failure::NoAnswer(e))) => last = e,
                Ok(Err(Failure::Answered { message, .. })) => last = message,
                Err(_) => last = format!("{}: no answer in time", endpoint.authority),
            }
        }
        Err(EtcdError::Unavailable(last))
    }

    /// The endpoints, the one that answered last first.
    fn order(&self) -> impl Iterator<Item = &EtcdEndpoint> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        (0..n).map(move |i| &self.endpoints[(first + i) % n])
    }

    /// Posts `body` to `path`, moving to the next endpoint when one cannot
    /// be reached (for a `read`, also when one does not answer in time).
    async fn call(&self, path: &str, body: &Value, read: bool) -> Result<Value, EtcdError> {
        let body = Bytes::from(body.to_string());
        let mut last = String::from("no endpoint");
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        for i in 0..n {
            let index = (first + i) % n;
            let endpoint = &self.endpoints[index];
            let result =
                match tokio::time::timeout(CALL_TIMEOUT, self.post(endpoint, path, body.clone()))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(Failure::NoAnswer(format!(
                        "{}: no answer in time",
                        endpoint.authority
                    ))),
                };
            match result {
                Ok(v) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(Failure::NotSent(e)) => last = e,
                Err(Failure::NoAnswer(e)) if read => last = e,
                Err(Failure::NoAnswer(e)) => return Err(EtcdError::Unavailable(e)),
                Err(Failure::Answered {
                    message,
                    retry: true,
                }) => last = message,
                Err(Failure::Answered { message, .. }) => {
                    return Err(EtcdError::Refused(message));
                }
            }
        }
        Err(EtcdError::Unavailable(last))
    }

    async fn post(
        &self,
        endpoint: &EtcdEndpoint,
        path: &str,
        body: Bytes,
    ) -> Result<Value, Failure> {
        let resp = self.send(endpoint, path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::NoAnswer(format!("{}: {e}", endpoint.authority)))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::NoAnswer(format!("{}: not JSON ({e})", endpoint.authority)))?;
        let error = v.get("error").filter(|e| !e.is_null());
        if !status.is_success() || error.is_some() {
            let message = error
                .and_then(|e| {
                    e.as_str()
                        .map(str::to_owned)
                        .or_else(|| e.get("message").map(Value::to_string))
                })
                .unwrap_or_else(|| format!("HTTP {status}"));
            let retry = status.is_server_error()
                && (message.contains("leader")
                    || message.contains("not ready")
                    || message.contains("unavailable")
                    || message.contains("timed out"));
            return Err(Failure::Answered { message, retry });
        }
        Ok(v)
    }

    async fn send(
        &self,
        endpoint: &EtcdEndpoint,
        path: &str,
        body: Bytes,
    ) -> Result<http::Response<Incoming>, Failure> {
        let not_sent = |e: String| Failure::NotSent(format!("{}: {e}", endpoint.authority));
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        .map_err(|_| not_sent("connect timed out".into()))?
        .map_err(|e| not_sent(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let stream = match (&self.tls, endpoint.tls) {
            (Some(config), true) => {
                let name = ServerName::try_from(endpoint.host.clone())
                    .map_err(|e| not_sent(e.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| not_sent(format!("TLS: {e}")))?;
                TargetStream::Tls(Box::new(tls))
            }
            _ => TargetStream::Plain(tcp),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| not_sent(e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, endpoint.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| not_sent(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| Failure::NoAnswer(format!("{}: {e}", endpoint.authority)))
    }
}

/// Why a watch ended.
#[derive(Debug)]
pub enum WatchError {
    /// The revision asked for was compacted away (this one is the oldest
    /// left): read everything again.
    Compacted(i64),
    /// The stream broke or etcd cancelled it: watch again from where it was.
    Broken(String),
}

/// A running watch: the stream of changes.
pub struct Watch {
    body: Incoming,
    buf: BytesMut,
}

impl Watch {
    /// The next batch of changes (never empty).
    pub async fn next(&mut self) -> Result<Vec<Event>, WatchError> {
        loop {
            let m = self.message().await?;
            let result = &m["result"];
            let events: Vec<Event> = result["events"]
                .as_array()
                .map(|a| a.iter().filter_map(event).collect())
                .unwrap_or_default();
            if !events.is_empty() {
                return Ok(events);
            }
            if result["canceled"].as_bool() == Some(true) {
                return Err(WatchError::Broken(format!(
                    "watch cancelled: {}",
                    result["cancel_reason"]
                        .as_str()
                        .unwrap_or("no reason given")
                )));
            }
        }
    }

    /// The next JSON message of the stream.
    async fn message(&mut self) -> Result<Value, WatchError> {
        loop {
            let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match stream.next() {
                Some(Ok(v)) => {
                    let used = stream.byte_offset();
                    self.buf.advance(used);
                    if let Some(e) = v.get("error") {
                        return Err(WatchError::Broken(e.to_string()));
                    }
                    let compacted = int(&v["result"]["compact_revision"]);
                    if compacted > 0 {
                        return Err(WatchError::Compacted(compacted));
                    }
                    return Ok(v);
                }
                Some(Err(e)) if !e.is_eof() => {
                    return Err(WatchError::Broken(format!("bad watch message: {e}")));
                }
                _ => {}
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(WatchError::Broken(e.to_string())),
                None => return Err(WatchError::Broken("the watch stream ended".into())),
            }
        }
    }
}

/// The end of the range of keys starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn op(o: &Op<'_>) -> Value {
    match o {
        Op::Put { key, value, lease } => {
            let mut put = json!({ "key": B64.encode(key), "value": B64.encode(value) });
            if *lease != 0 {
                put["lease"] = Value::String(lease.to_string());
            }
            json!({ "request_put": put })
        }
        Op::Delete(key) => json!({ "request_delete_range": { "key": B64.encode(key) } }),
        Op::DeletePrefix(prefix) => json!({ "request_delete_range": {
            "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) } }),
    }
}

/// An int64 of the gateway (a JSON string), or 0.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn revision(v: &Value) -> i64 {
    int(&v["header"]["revision"])
}

fn bytes_of(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

fn kv(v: &Value) -> Option<Kv> {
    Some(Kv {
        key: String::from_utf8(bytes_of(&v["key"])).ok()?,
        value: bytes_of(&v["value"]),
        mod_revision: int(&v["mod_revision"]),
    })
}

fn event(v: &Value) -> Option<Event> {
    let kv = kv(&v["kv"])?;
    Some(if v["type"].as_str() == Some("DELETE") {
        Event::Delete {
            key: kv.key,
            mod_revision: kv.mod_revision,
        }
    } else {
        Event::Put(kv)
    })
}

/// TLS to etcd: `ca_file` or the system roots, and the client certificate.
fn tls_config(cluster: &Cluster) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &cluster.ca_file {
        Some(path) => {
            let mut store = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cluster.ca_file {}: {e}", path.display()))?;
            store.add_parsable_certificates(certs);
            store
        }
        None => {
            let mut store = rustls::RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            store
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &cluster.client_cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cluster.cert_file {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cluster.key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("cluster client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("ab"), b"ac".to_vec());
    }

    #[test]
    fn gateway_events_decode() {
        let put = json!({"kv": {"key": B64.encode("/p/x"), "value": B64.encode("v"), "mod_revision": "7"}});
        assert_eq!(
            event(&put),
            Some(Event::Put(Kv {
                key: "/p/x".into(),
                value: b"v".to_vec(),
                mod_revision: 7
            }))
        );
        let del = json!({"type": "DELETE", "kv": {"key": B64.encode("/p/x"), "mod_revision": "8"}});
        assert_eq!(
            event(&del),
            Some(Event::Delete {
                key: "/p/x".into(),
                mod_revision: 8
            })
        );
    }
}
