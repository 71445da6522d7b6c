//! The client commands (SPEC §1): `edgelb status`, `edgelb targets
//! list|register|deregister`, `edgelb reload` and `edgelb cluster
//! push|show`, each one call of the
//! running daemon's admin API, shown as an aligned table (or JSON).
//! Exit codes: 0 done, 1 the API answered an error, 2 it could not be reached.

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the admin API is when neither `--admin` nor `$EDGELB_ADMIN` says.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";
/// The token file when neither `--token-file` nor `$EDGELB_TOKEN_FILE` says.
pub const DEFAULT_TOKEN_FILE: &str = "/etc/edgelb/admin.token";
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach the admin API.
pub struct Admin {
    pub url: String,
    pub token_file: PathBuf,
}

impl Admin {
    /// From the command line's options, the environment, or the defaults.
    pub fn new(url: Option<String>, token_file: Option<PathBuf>) -> Admin {
        Admin {
            url: url
                .or_else(|| std::env::var("EDGELB_ADMIN").ok())
                .unwrap_or_else(|| DEFAULT_ADMIN.to_owned()),
            token_file: token_file
                .or_else(|| std::env::var_os("EDGELB_TOKEN_FILE").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKEN_FILE)),
        }
    }
}

/// Why a command failed, with its exit code.
enum Failure {
    /// The API answered an error (exit 1).
    Api(String),
    /// The API could not be reached (exit 2).
    Unreachable(String),
}

/// `edgelb status [--json]`.
pub fn status(admin: &Admin, as_json: bool) -> u8 {
    finish(call(admin, Method::GET, "/status", None, false).map(|doc| {
        if as_json {
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        } else {
            status_table(&doc)
        }
    }))
}

/// `edgelb targets list GROUP [--json]`.
pub fn list(admin: &Admin, group: &str, as_json: bool) -> u8 {
    let path = format!("/target-groups/{}/targets", encode(group));
    finish(call(admin, Method::GET, &path, None, false).map(|doc| {
        if as_json {
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        } else {
            targets_table(
                group,
                doc["targets"].as_array().map_or(&[][..], Vec::as_slice),
            )
        }
    }))
}

/// `edgelb targets register GROUP ADDRESS [--weight N]`.
pub fn register(admin: &Admin, group: &str, address: &str, weight: u32) -> u8 {
    let path = format!("/target-groups/{}/targets", encode(group));
    let body = json!({ "address": address, "weight": weight });
    finish(
        call(admin, Method::POST, &path, Some(body), true).map(|_| {
            format!("registered {address} in {group} (weight {weight}); it starts initial")
        }),
    )
}

/// `edgelb targets deregister GROUP ADDRESS`.
pub fn deregister(admin: &Admin, group: &str, address: &str) -> u8 {
    let path = format!(
        "/target-groups/{}/targets/{}",
        encode(group),
        encode(address)
    );
    finish(
        call(admin, Method::DELETE, &path, None, true)
            .map(|_| format!("deregistered {address} from {group}; it drains")),
    )
}

/// `edgelb reload`.
pub fn reload(admin: &Admin) -> u8 {
    finish(
        call(admin, Method::POST, "/reload", None, true)
            .map(|doc| format!("reloaded: generation {}", doc["generation"])),
    )
}

fn finish(result: Result<String, Failure>) -> u8 {
    match result {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(Failure::Api(message)) => {
            eprintln!("edgelb: {message}");
            1
        }
        Err(Failure::Unreachable(message)) => {
            eprintln!("edgelb: {message}");
            2
        }
    }
}

/// A path segment, percent-encoded (`[::1]:8080` and the like).
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `edgelb cluster push --config PATH`: the file's text to `PUT
/// /cluster/config`; prints the revision, or every `PATH:LINE:COL: message`
/// line of the node's validation.
pub fn push(admin: &Admin, path: &Path) -> u8 {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}:1:1: cannot read the configuration: {e}", path.display());
            return 1;
        }
    };
    let shown = encode(&path.display().to_string());
    let result = send(
        admin,
        Method::PUT,
        &format!("/cluster/config?name={shown}"),
        Bytes::from(text),
        "application/toml",
        true,
    );
    match result {
        Ok(doc) => {
            println!("pushed: revision {}", doc["revision"]);
            0
        }
        Err(Failure::Api(message)) if message.starts_with("400 ") => {
            // The validation's lines, as `check` prints them.
            let lines = message
                .split_once(": ")
                .map_or(message.as_str(), |(_, m)| m);
            eprintln!("{lines}");
            1
        }
        Err(e) => finish(Err(e)),
    }
}

/// `edgelb cluster show [--json]`: the node, its connection and the members.
pub fn cluster_show(admin: &Admin, as_json: bool) -> u8 {
    finish(
        call(admin, Method::GET, "/cluster", None, false).map(|doc| {
            if as_json {
                return doc.to_string();
            }
            let rows: Vec<Vec<String>> = doc["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    vec![
                        text(&m["name"]),
                        text(&m["generation"]),
                        text(&m["config_revision"]),
                        text(&m["last_reload_ok"]),
                        text(&m["seen"]),
                    ]
                })
                .collect();
            format!(
                "node {} ({}), configuration revision {}\n\n{}",
                text(&doc["node"]),
                if doc["connected"].as_bool() == Some(true) {
                    "connected"
                } else {
                    "NOT connected to etcd"
                },
                text(&doc["revision"]),
                table(
                    &[
                        "MEMBER",
                        "GENERATION",
                        "CONFIG REVISION",
                        "LAST RELOAD OK",
                        "SEEN"
                    ],
                    &rows
                )
            )
        }),
    )
}

/// One call; its JSON answer. `authorized` calls send the token.
fn call(
    admin: &Admin,
    method: Method,
    path: &str,
    body: Option<Value>,
    authorized: bool,
) -> Result<Value, Failure> {
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    send(admin, method, path, body, "application/json", authorized)
}

/// One call with `body` of `content_type`; its JSON answer.
fn send(
    admin: &Admin,
    method: Method,
    path: &str,
    body: Bytes,
    content_type: &str,
    authorized: bool,
) -> Result<Value, Failure> {
    let base: Uri = admin
        .url
        .parse()
        .map_err(|e| Failure::Unreachable(format!("invalid --admin URL {:?}: {e}", admin.url)))?;
    if base.scheme_str().is_some_and(|s| s != "http") {
        return Err(Failure::Unreachable(format!(
            "--admin {:?}: only http:// is spoken (the admin API listens in plain HTTP)",
            admin.url
        )));
    }
    let Some(authority) = base.authority().cloned() else {
        return Err(Failure::Unreachable(format!(
            "--admin {:?} names no host",
            admin.url
        )));
    };
    let token = if authorized {
        Some(read_token(&admin.token_file).map_err(Failure::Api)?)
    } else {
        None
    };
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str());
    if let Some(token) = &token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if !body.is_empty() {
        req = req.header(http::header::CONTENT_TYPE, content_type);
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| Failure::Api(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    let address = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let (status, bytes) = runtime
        .block_on(async { tokio::time::timeout(CALL_TIMEOUT, exchange(&address, req)).await })
        .map_err(|_| {
            Failure::Unreachable(format!(
                "{} did not answer within {CALL_TIMEOUT:?}",
                admin.url
            ))
        })?
        .map_err(|e| {
            Failure::Unreachable(format!("cannot reach the admin API at {}: {e}", admin.url))
        })?;
    let doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = doc["error"].as_str().map_or_else(
            || String::from_utf8_lossy(&bytes).into_owned(),
            str::to_owned,
        );
        let hint = match status {
            StatusCode::UNAUTHORIZED => " (check --token-file)",
            _ => "",
        };
        return Err(Failure::Api(format!("{status}: {message}{hint}")));
    }
    Ok(doc)
}

async fn exchange(
    address: &str,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the admin token from {} ({e}); give --token-file or $EDGELB_TOKEN_FILE",
            path.display()
        )
    })?;
    Ok(text.trim().to_owned())
}

/// Rows as columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn target_rows(group: &str, targets: &[Value]) -> Vec<Vec<String>> {
    targets
        .iter()
        .map(|t| {
            vec![
                group.to_owned(),
                text(&t["address"]),
                text(&t["origin"]),
                text(&t["weight"]),
                text(&t["state"]),
                text(&t["reason"]),
                text(&t["last_check"]),
            ]
        })
        .collect()
}

const TARGET_HEADER: [&str; 7] = [
    "TARGET GROUP",
    "TARGET",
    "ORIGIN",
    "WEIGHT",
    "STATE",
    "REASON",
    "LAST CHECK",
];

fn targets_table(group: &str, targets: &[Value]) -> String {
    table(&TARGET_HEADER, &target_rows(group, targets))
}

fn status_table(doc: &Value) -> String {
    let reload = &doc["last_reload"];
    let reload_line = match reload["ok"].as_bool() {
        Some(false) => format!(
            "failed at {}: {}",
            text(&reload["time"]),
            text(&reload["error"])
        ),
        _ => format!("ok at {}", text(&reload["time"])),
    };
    let head = format!(
        "edgelb {}, generation {}, last reload {reload_line}",
        text(&doc["version"]),
        text(&doc["generation"])
    );
    let listeners: Vec<Vec<String>> = doc["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            vec![
                text(&l["name"]),
                text(&l["protocol"]),
                text(&l["bind"]),
                text(&l["active_connections"]),
            ]
        })
        .collect();
    let targets: Vec<Vec<String>> = doc["target_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| {
            let name = text(&g["name"]);
            let targets = g["targets"].as_array().map_or(&[][..], Vec::as_slice);
            target_rows(&name, targets)
        })
        .collect();
    format!(
        "{head}\n\n{}\n\n{}",
        table(&["LISTENER", "PROTOCOL", "BIND", "CONNECTIONS"], &listeners),
        table(&TARGET_HEADER, &targets)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["x".into(), "1".into()],
                vec!["wider".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A      LONGER\nx      1\nwider  22");
    }

    #[test]
    fn the_admin_api_is_found_by_option_then_environment_then_default() {
        let a = Admin::new(Some("http://10.0.0.1:9".into()), None);
        assert_eq!(a.url, "http://10.0.0.1:9");
        assert!(encode("[::1]:8080").starts_with("%5B"));
    }
}
