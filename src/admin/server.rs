//! The admin HTTP API on `admin.bind` (SPEC §4).

use crate::admin::status::{status_json, targets_json, unhealthy_groups};
use crate::control::Server;
use crate::control::cluster::{self, ClusterLink};
use crate::runtime::registry::Refusal;
use crate::runtime::snapshot::used_groups;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the admin API serves from: the server and the token (read at start).
pub struct AdminApi {
    pub server: Arc<Server>,
    /// Required for every non-GET call; `None` = such calls are refused (403).
    pub token: Option<String>,
}

type AdminResponse = Response<Full<Bytes>>;

/// The dashboard (SPEC §13): one page, its script inlined, no external
/// assets; it reads `/status` and `/metrics` every 2 s and changes nothing.
const DASHBOARD: &str = concat!(
    include_str!("dashboard/head.html"),
    include_str!("dashboard/dashboard.js"),
    include_str!("dashboard/tail.html")
);

fn json_response(status: StatusCode, value: &Value) -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, message: &str) -> AdminResponse {
    json_response(status, &json!({ "error": message }))
}

/// Compares without an early exit, so the time taken tells nothing of where
/// a guess differs.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminApi {
    /// 403 when no token is configured, 401 when the bearer token is missing or wrong.
    fn authorize(&self, req: &Request<Incoming>) -> Result<(), Box<AdminResponse>> {
        let Some(token) = &self.token else {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "no admin token is configured (admin.token_file): changes through the API are disabled",
            )));
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .unwrap_or(b"");
        if constant_time_eq(given, token.as_bytes()) {
            Ok(())
        } else {
            Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token",
            )))
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> AdminResponse {
        if req.method() != Method::GET
            && req.method() != Method::HEAD
            && let Err(resp) = self.authorize(&req)
        {
            return *resp;
        }
        let path = req.uri().path().trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        match (req.method().clone(), segments.as_slice()) {
            (Method::GET, []) => {
                let mut resp = Response::new(Full::new(Bytes::from_static(DASHBOARD.as_bytes())));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                resp
            }
            (Method::GET, ["healthz"]) => {
                let unhealthy = unhealthy_groups(&self.server.live.load());
                if unhealthy.is_empty() {
                    json_response(StatusCode::OK, &json!({ "status": "ok" }))
                } else {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({ "status": "unhealthy", "unhealthy_groups": unhealthy }),
                    )
                }
            }
            (Method::GET, ["metrics"]) => {
                let mut resp = Response::new(Full::new(Bytes::from(self.server.metrics.render())));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            (Method::GET, ["status"]) => {
                let mut doc = status_json(&self.server.live.load(), &self.server.last_reload());
                if let Some(acme) = self.server.acme_status() {
                    doc["acme"] = Value::Array(acme);
                }
                if let Some(link) = self.server.cluster() {
                    let view = link.view();
                    doc["cluster"] = json!({
                        "node": view.node,
                        "connected": view.connected,
                        "revision": view.revision,
                    });
                }
                json_response(StatusCode::OK, &doc)
            }
            (Method::GET, ["oidc", "jwks"]) => {
                json_response(StatusCode::OK, &self.server.oidc_jwks())
            }
            (Method::POST, ["acme", "renew"]) => {
                let n = self.server.renew_acme();
                json_response(StatusCode::ACCEPTED, &json!({ "renewing": n }))
            }
            (Method::GET, ["cluster"]) => match self.server.cluster() {
                Some(link) => json_response(StatusCode::OK, &cluster_json(link)),
                None => error(StatusCode::NOT_FOUND, NOT_CLUSTERED),
            },
            (Method::PUT, ["cluster", "config"]) => {
                let Some(link) = self.server.cluster().cloned() else {
                    return error(StatusCode::NOT_FOUND, NOT_CLUSTERED);
                };
                let shown = query_value(req.uri().query(), "name")
                    .unwrap_or_else(|| "shared-config.toml".to_owned());
                let body = match read_body(req, MAX_SHARED_CONFIG).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                let Ok(text) = std::str::from_utf8(&body) else {
                    return error(StatusCode::BAD_REQUEST, "the configuration is not UTF-8");
                };
                match cluster::push(&self.server, &link, text, std::path::Path::new(&shown)).await {
                    Ok(revision) => json_response(StatusCode::OK, &json!({ "revision": revision })),
                    Err(Refusal(status, message)) => error(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                        &message,
                    ),
                }
            }
            (Method::POST, ["reload"]) => match self.server.reload().await {
                Ok(generation) => {
                    json_response(StatusCode::OK, &json!({ "generation": generation }))
                }
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            },
            (Method::GET, ["target-groups", name, "targets"]) => {
                match self.server.live.load().group(name) {
                    Some(g) => json_response(
                        StatusCode::OK,
                        &json!({ "target_group": &*g.name, "targets": targets_json(g) }),
                    ),
                    None => error(StatusCode::NOT_FOUND, &format!("no target group {name:?}")),
                }
            }
            (Method::POST, ["target-groups", name, "targets"]) => {
                let name = name.to_string();
                let body = match read_body(req, MAX_BODY).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                let wanted: Registration = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad body: {e}")),
                };
                match self
                    .server
                    .register_target(&name, &wanted.address, wanted.weight.unwrap_or(1))
                    .await
                {
                    Ok(()) => json_response(
                        StatusCode::OK,
                        &json!({ "target_group": name, "address": wanted.address, "state": "initial" }),
                    ),
                    Err(Refusal(status, message)) => error(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                        &message,
                    ),
                }
            }
            (Method::DELETE, ["target-groups", name, "targets", address]) => {
                let Some(address) = percent_decode(address) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad percent-encoding in the address",
                    );
                };
                match self.server.deregister_target(name, &address).await {
                    Ok(()) => json_response(
                        StatusCode::OK,
                        &json!({ "target_group": name, "address": address, "state": "draining" }),
                    ),
                    Err(Refusal(status, message)) => error(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                        &message,
                    ),
                }
            }
            (Method::GET, ["zabbix", "discovery"]) => {
                let snapshot = self.server.live.load();
                let used = used_groups(&snapshot.config);
                let items: Vec<Value> = snapshot
                    .groups
                    .iter()
                    .filter(|g| used.contains(&*g.name))
                    .flat_map(|g| {
                        g.targets
                            .iter()
                            .map(move |t| json!({ "{#TG}": &*g.name, "{#TARGET}": &*t.address }))
                    })
                    .collect();
                json_response(StatusCode::OK, &Value::Array(items))
            }
            (Method::GET, ["zabbix", "discovery", "certificates"]) => {
                // One row per certificate a listener serves (the series of
                // edgelb_certificate_expiry_timestamp_seconds).
                let snapshot = self.server.live.load();
                let items: Vec<Value> = snapshot
                    .listeners
                    .iter()
                    .flat_map(|l| {
                        l.certificates
                            .iter()
                            .map(move |(c, _)| json!({ "{#LISTENER}": &*l.name, "{#CERT}": c }))
                    })
                    .collect();
                json_response(StatusCode::OK, &Value::Array(items))
            }
            (Method::GET, ["zabbix", "discovery", "groups"]) => {
                let snapshot = self.server.live.load();
                let used = used_groups(&snapshot.config);
                let items: Vec<Value> = snapshot
                    .groups
                    .iter()
                    .filter(|g| used.contains(&*g.name))
                    .map(|g| json!({ "{#TG}": &*g.name }))
                    .collect();
                json_response(StatusCode::OK, &Value::Array(items))
            }
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        }
    }
}

/// The answer of the cluster calls on a standalone node.
const NOT_CLUSTERED: &str = "this node is not in a cluster (no [cluster] in its configuration)";

/// `GET /cluster` (SPEC §11).
fn cluster_json(link: &ClusterLink) -> Value {
    let view = link.view();
    json!({
        "node": view.node,
        "connected": view.connected,
        "revision": view.revision,
        "members": view.members,
    })
}

/// The percent-decoded value of `name` in a query string.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| percent_decode(&v.replace('+', " ")))
}

/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;
/// Largest shared configuration: etcd takes requests of 1.5 MiB at most by
/// default, and the gateway sends values in base64.
const MAX_SHARED_CONFIG: usize = 1024 * 1024;

/// The body of `POST /target-groups/{name}/targets`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    address: String,
    weight: Option<u32>,
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, AdminResponse> {
    match http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
    {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {limit} bytes"),
        )),
        Err(_) => Err(error(StatusCode::BAD_REQUEST, "the body is unreadable")),
    }
}

/// `%5B%3A%3A1%5D%3A8080` → `[::1]:8080`.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Serves the admin API on `socket` until `stop` is notified. A spare
/// descriptor is kept open: when the process has run out, it is closed so the
/// next admin connection can still be accepted and answered.
pub async fn serve(socket: TcpListener, api: Arc<AdminApi>, stop: Arc<Notify>) {
    let mut spare = std::fs::File::open("/dev/null").ok();
    loop {
        if spare.is_none() {
            spare = std::fs::File::open("/dev/null").ok();
        }
        let (stream, _) = tokio::select! {
            _ = stop.notified() => return,
            r = socket.accept() => match r {
                Ok(a) => a,
                Err(e) if e.raw_os_error() == Some(24) && spare.is_some() => {
                    tracing::warn!("admin accept: out of descriptors; using the spare one");
                    spare = None;
                    continue;
                }
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
