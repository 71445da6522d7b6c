//! Logging in at the edge with OpenID Connect (SPEC §9), against a real
//! OpenID Provider: the certified `oidc-provider` package from the npm
//! registry (tests/oidc/, installed by `.ci/run`), run by node with its
//! development login, driven by a small cookie-keeping browser.
//!
//! `.ci/run` runs this with `EDGELB_OIDC=1`, which makes a missing node or
//! provider package a failure; elsewhere the tests are skipped without them.

mod common;

use bytes::Bytes;
use common::tls::TestCa;
use common::*;
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "provider-client-secret";

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

fn oidc_available() -> bool {
    let have = provider_dir().join("node_modules/oidc-provider").exists()
        && Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        have || std::env::var_os("EDGELB_OIDC").is_none(),
        "EDGELB_OIDC=1 but node or tests/oidc/node_modules is missing (npm ci --prefix tests/oidc)"
    );
    if !have {
        eprintln!("skipped: no node or oidc-provider (EDGELB_OIDC=1 makes this a failure)");
    }
    have
}

/// The provider process; killed when dropped.
struct Idp {
    child: Child,
    log: PathBuf,
}

impl Idp {
    async fn start(port: u16, dir: &Path, redirect_uri: &str, rotate: bool) -> Idp {
        let log = dir.join(format!("idp-{port}-{rotate}.log"));
        let mut command = Command::new("node");
        command
            .arg(provider_dir().join("provider.mjs"))
            .arg(port.to_string())
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key"))
            .arg(redirect_uri)
            .arg(SECRET)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null());
        if rotate {
            command.env("ROTATE_KEYS", "1");
        }
        let child = command.spawn().expect("node starts");
        let idp = Idp { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&idp.log)
            .unwrap_or_default()
            .contains("ready")
        {
            assert!(Instant::now() < deadline, "the provider did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        idp
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An answer as the browser got it.
#[derive(Debug)]
struct Page {
    status: u16,
    location: Option<String>,
    body: String,
}

/// A browser: HTTPS (trusting the test CA), a cookie jar per origin, no
/// automatic redirects.
struct Browser {
    tls: Arc<rustls::ClientConfig>,
    jars: HashMap<String, Vec<(String, String)>>,
}

impl Browser {
    fn new(ca: &TestCa) -> Browser {
        Browser {
            tls: ca.client_config(&[&rustls::version::TLS13], &[b"http/1.1"]),
            jars: HashMap::new(),
        }
    }

    fn cookie(&self, origin: &str, name: &str) -> Option<String> {
        self.jars
            .get(origin)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn set_cookie(&mut self, origin: &str, name: &str, value: &str) {
        let jar = self.jars.entry(origin.to_owned()).or_default();
        jar.retain(|(n, _)| n != name);
        if !value.is_empty() {
            jar.push((name.to_owned(), value.to_owned()));
        }
    }

    async fn request(
        &mut self,
        method: &str,
        url: &str,
        form: Option<String>,
        extra: &[(&str, &str)],
    ) -> Page {
        let uri: http::Uri = url.parse().unwrap();
        let origin = uri.authority().unwrap().to_string();
        let addr: SocketAddr = origin.parse().unwrap();
        let tls = common::tls::tls_connect(self.tls.clone(), addr, "127.0.0.1")
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().unwrap().as_str())
            .header("host", &origin);
        let jar = self.jars.get(&origin).cloned().unwrap_or_default();
        if !jar.is_empty() {
            let cookies: Vec<String> = jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
            req = req.header("cookie", cookies.join("; "));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let body = match form {
            Some(f) => {
                req = req.header("content-type", "application/x-www-form-urlencoded");
                Bytes::from(f)
            }
            None => Bytes::new(),
        };
        let resp = sender
            .send_request(req.body(Full::new(body)).unwrap())
            .await
            .unwrap();
        for set in resp.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (n, v) = pair.split_once('=').unwrap();
            let expired = set.to_str().unwrap().contains("Max-Age=0");
            self.set_cookie(&origin, n, if expired { "" } else { v });
        }
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .map(|l| {
                if l.starts_with('/') {
                    format!("https://{origin}{l}")
                } else {
                    l
                }
            });
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            location,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&mut self, url: &str) -> Page {
        self.request("GET", url, None, &[]).await
    }

    /// Logs in at the provider from its authorization URL: follows its
    /// redirects and submits its development forms (login, consent) until it
    /// sends the browser back to edgelb; returns that callback URL.
    async fn log_in(&mut self, authorization: &str, user: &str) -> String {
        let mut url = authorization.to_owned();
        for _ in 0..12 {
            let page = self.get(&url).await;
            if let Some(next) = page.location {
                if next.contains("/oauth2/idpresponse") {
                    return next;
                }
                url = next;
                continue;
            }
            assert_eq!(page.status, 200, "{}", page.body);
            // The development interaction: one form posting to itself.
            let action = between(&page.body, "action=\"", "\"").expect("a form");
            let mut fields = Vec::new();
            for input in page.body.split("<input").skip(1) {
                let name = between(input, "name=\"", "\"").unwrap_or_default();
                let value = match name.as_str() {
                    "login" => user.to_owned(),
                    "password" => "any".to_owned(),
                    _ => between(input, "value=\"", "\"").unwrap_or_default(),
                };
                fields.push(format!("{name}={value}"));
            }
            let posted = self
                .request("POST", &action, Some(fields.join("&")), &[])
                .await;
            url = posted.location.expect("the form redirects");
        }
        panic!("the login did not come back to edgelb");
    }
}

/// One HTTP/2 GET over TLS (ALPN h2) with an optional session cookie: its status.
async fn h2_get(ca: &TestCa, addr: SocketAddr, path: &str, session: Option<&str>) -> u16 {
    let tls = common::tls::tls_connect(
        ca.client_config(&[&rustls::version::TLS13], &[b"h2"]),
        addr,
        "127.0.0.1",
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(format!("https://{addr}{path}"));
    if let Some(s) = session {
        req = req.header("cookie", format!("EDGELBAUTH={s}"));
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    resp.status().as_u16()
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(text[from..to].replace("&amp;", "&"))
}

/// edgelb's https listener with rules behind the provider `corp`.
fn config(
    https: SocketAddr,
    idp_port: u16,
    dir: &Path,
    target: SocketAddr,
    key_file: &Path,
) -> String {
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    format!(
        r#"[global]
stickiness_key_file = "{key}"

[admin]
bind = "ADMIN"

[[oidc]]
name = "corp"
issuer = "https://127.0.0.1:{idp_port}"
client_id = "edgelb"
client_secret_file = "{dir}/secret"
scope = "openid email profile"
ca_file = "{dir}/ca.pem"

[[listeners]]
name = "secure"
protocol = "https"
bind = "{https}"
certificates = [ {{ cert = "{dir}/server.pem", key = "{dir}/server.key" }} ]
default_action = {{ forward = "app" }}

[[listeners.rules]]
priority = 1
conditions = {{ path = ["/admin/*"] }}
action = {{ authenticate = {{ oidc = "corp" }}, forward = "app" }}

[[listeners.rules]]
priority = 2
conditions = {{ path = ["/api/*"] }}
action = {{ authenticate = {{ oidc = "corp", on_unauthenticated = "deny" }}, forward = "app" }}

[[listeners.rules]]
priority = 3
conditions = {{ path = ["/open/*"] }}
action = {{ authenticate = {{ oidc = "corp", on_unauthenticated = "allow" }}, forward = "app" }}

[[target_groups]]
name = "app"
protocol = "http"
targets = [ {{ address = "{target}", weight = 1 }} ]
"#,
        key = key_file.display(),
        dir = dir.display(),
    )
}

/// What the target saw of the last request: the identity headers.
fn seen_identity(target: &TestTarget) -> (Option<String>, Option<String>, Option<String>) {
    let last = target.last();
    let h = |n: &str| last.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    (
        h("x-amzn-oidc-identity"),
        h("x-amzn-oidc-data"),
        h("x-amzn-oidc-accesstoken"),
    )
}

/// A directory with the test CA, the server certificate for 127.0.0.1 and
/// a stickiness key file; and the target.
async fn fixture() -> (tempfile::TempDir, TestCa, PathBuf, TestTarget) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    ca.write_pem(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "server", &["127.0.0.1"]);
    let key_file = dir.path().join("cookie.key");
    std::fs::write(&key_file, "k".repeat(48)).unwrap();
    (dir, ca, key_file, TestTarget::start("app").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_at_the_edge_from_start_to_session_and_every_way_it_must_fail() {
    if !oidc_available() {
        return;
    }
    let (dir, ca, key_file, target) = fixture().await;
    let https = listen_addr();
    let idp_port = free_port();
    let origin = format!("https://{https}");
    let mut idp = Idp::start(
        idp_port,
        dir.path(),
        &format!("{origin}/oauth2/idpresponse"),
        false,
    )
    .await;
    let lb = Edgelb::start(&config(https, idp_port, dir.path(), target.addr, &key_file)).await;
    let mut browser = Browser::new(&ca);

    // Unauthenticated: to the provider, with PKCE S256, state and nonce.
    let first = browser.get(&format!("{origin}/admin/page?x=1")).await;
    assert_eq!(first.status, 302, "{first:?}");
    let authorization = first.location.clone().unwrap();
    assert!(
        authorization.starts_with(&format!("https://127.0.0.1:{idp_port}/auth?")),
        "{authorization}"
    );
    for p in [
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "client_id=edgelb",
    ] {
        assert!(authorization.contains(p), "{authorization}");
    }
    let callback = browser.log_in(&authorization, "alice").await;
    let back = browser.get(&callback).await;
    assert_eq!(back.status, 302, "{back:?}");
    assert_eq!(
        back.location.as_deref(),
        Some(format!("{origin}/admin/page?x=1").as_str())
    );
    assert!(browser.cookie(&https.to_string(), "EDGELBAUTH").is_some());

    // The session: forwarded with the identity, the client's copies gone.
    let page = browser
        .request(
            "GET",
            &format!("{origin}/admin/page"),
            None,
            &[("x-amzn-oidc-identity", "mallory")],
        )
        .await;
    assert_eq!((page.status, page.body.as_str()), (200, "app"));
    let (identity, data, access) = seen_identity(&target);
    assert_eq!(identity.as_deref(), Some("alice"));
    assert!(access.is_some());
    // The data JWT verifies with GET /oidc/jwks and carries the claims.
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&get(lb.admin, "/oidc/jwks").await.text()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(data.as_deref().unwrap(), &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.com");

    // HTTP/2 clients: the same gate (a login to start, the session honoured).
    let session = browser.cookie(&https.to_string(), "EDGELBAUTH").unwrap();
    assert_eq!(h2_get(&ca, https, "/admin/h2", None).await, 302);
    assert_eq!(h2_get(&ca, https, "/admin/h2", Some(&session)).await, 200);
    assert_eq!(seen_identity(&target).0.as_deref(), Some("alice"));

    // Replayed callback (same URL, login cookie restored): 401, no session.
    let mut replay = Browser::new(&ca);
    let state_cookie = "EDGELBAUTHSTATE";
    let mut fresh = Browser::new(&ca);
    let again = fresh.get(&format!("{origin}/admin/other")).await;
    let login_cookie = fresh.cookie(&https.to_string(), state_cookie).unwrap();
    let cb = fresh.log_in(&again.location.unwrap(), "bob").await;
    assert_eq!(fresh.get(&cb).await.status, 302);
    replay.set_cookie(&https.to_string(), state_cookie, &login_cookie);
    let replayed = replay.get(&cb).await;
    assert_eq!(replayed.status, 401);
    assert!(replay.cookie(&https.to_string(), "EDGELBAUTH").is_none());
    // Forged: a state that is not the login's; no login cookie at all.
    let mut forger = Browser::new(&ca);
    assert_eq!(forger.get(&format!("{origin}/admin/x")).await.status, 302);
    let bad_state = forger
        .get(&format!(
            "{origin}/oauth2/idpresponse?code=abc&state=forged"
        ))
        .await;
    assert_eq!(bad_state.status, 401);
    let nobody = Browser::new(&ca)
        .get(&format!("{origin}/oauth2/idpresponse?code=abc&state=x"))
        .await;
    assert_eq!(nobody.status, 401);

    // A tampered session cookie is no session.
    let mut tampered = Browser::new(&ca);
    let good = browser.cookie(&https.to_string(), "EDGELBAUTH").unwrap();
    let mut bytes = good.into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    tampered.set_cookie(
        &https.to_string(),
        "EDGELBAUTH",
        &String::from_utf8(bytes).unwrap(),
    );
    assert_eq!(
        tampered.get(&format!("{origin}/admin/page")).await.status,
        302
    );

    // deny: 401 without a session, through with one; allow: through, no identity.
    assert_eq!(
        Browser::new(&ca)
            .get(&format!("{origin}/api/x"))
            .await
            .status,
        401
    );
    assert_eq!(browser.get(&format!("{origin}/api/x")).await.status, 200);
    let open = Browser::new(&ca)
        .request(
            "GET",
            &format!("{origin}/open/x"),
            None,
            &[("x-amzn-oidc-identity", "mallory")],
        )
        .await;
    assert_eq!(open.status, 200);
    assert_eq!(seen_identity(&target), (None, None, None));
    // Unauthenticated routes never pass a client's identity headers on.
    Browser::new(&ca)
        .request(
            "GET",
            &format!("{origin}/plain"),
            None,
            &[("x-amzn-oidc-data", "forged")],
        )
        .await;
    assert_eq!(seen_identity(&target).1, None);

    // A second node sharing the key set honours the session.
    let https2 = listen_addr();
    let lb2 = Edgelb::start(&config(
        https2,
        idp_port,
        dir.path(),
        target.addr,
        &key_file,
    ))
    .await;
    let session = browser.cookie(&https.to_string(), "EDGELBAUTH").unwrap();
    let mut other_node = Browser::new(&ca);
    other_node.set_cookie(&https2.to_string(), "EDGELBAUTH", &session);
    let there = other_node
        .get(&format!("https://{https2}/admin/page"))
        .await;
    assert_eq!(there.status, 200);
    drop(lb2);

    // The provider rotates its keys: a new login still succeeds (the JWKS
    // is fetched again for the unknown kid).
    idp.stop();
    let _idp2 = Idp::start(
        idp_port,
        dir.path(),
        &format!("{origin}/oauth2/idpresponse"),
        true,
    )
    .await;
    let mut rotated = Browser::new(&ca);
    let start = rotated.get(&format!("{origin}/admin/r")).await;
    let cb = rotated.log_in(&start.location.unwrap(), "carol").await;
    assert_eq!(rotated.get(&cb).await.status, 302);
    assert_eq!(rotated.get(&format!("{origin}/admin/r")).await.status, 200);
    assert_eq!(seen_identity(&target).0.as_deref(), Some("carol"));

    let successes = lb
        .metric("edgelb_oidc_authentications_total{listener=\"secure\",result=\"success\"}")
        .await;
    assert_eq!(successes, 3.0);
    assert!(
        lb.metric("edgelb_oidc_authentications_total{listener=\"secure\",result=\"failure\"}")
            .await
            >= 3.0
    );
    assert!(
        lb.metric("edgelb_oidc_authentications_total{listener=\"secure\",result=\"denied\"}")
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_lets_nobody_through() {
    if !oidc_available() {
        return;
    }
    let (dir, ca, key_file, target) = fixture().await;
    let https = listen_addr();
    // Nothing listens on the provider's port.
    let lb = Edgelb::start(&config(
        https,
        free_port(),
        dir.path(),
        target.addr,
        &key_file,
    ))
    .await;
    let page = Browser::new(&ca)
        .get(&format!("https://{https}/admin/x"))
        .await;
    assert_eq!(page.status, 503);
    assert_eq!(target.requests(), 0);
    assert!(
        lb.metric("edgelb_oidc_authentications_total{listener=\"secure\",result=\"failure\"}")
            .await
            >= 1.0
    );
}
