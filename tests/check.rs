//! `edgelb check`: every validation error reported as PATH:LINE:COL, all at once.

mod common;

use common::edgelb_bin;
use std::process::Command;

/// Runs `edgelb check` on `config` (in a fresh directory, with `files` beside
/// it); returns (exit code, stdout, stderr with the directory replaced by `DIR`).
fn check_in(config: &str, files: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    let path = dir.path().join("edgelb.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(edgelb_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "DIR");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

fn check(config: &str) -> (i32, String, String) {
    check_in(config, &[])
}

const VALID: &str = r#"[global]
worker_threads = 2
drain_timeout = "30s"

[admin]
bind = "127.0.0.1:9901"

[[listeners]]
name = "public"
protocol = "http"
bind = "0.0.0.0:8080"
default_action = { forward = "web" }

[[target_groups]]
name = "web"
protocol = "http"
targets = [
  { address = "10.0.1.10:8080", weight = 3 },
  { address = "app-2.internal:8080" },
]

[target_groups.health_check]
interval = "10s"
timeout = "5s"
matcher = "200-399"
"#;

/// Replaces `from` (which must occur once) in the valid config.
fn with(from: &str, to: &str) -> String {
    assert_eq!(VALID.matches(from).count(), 1, "{from:?} must occur once");
    VALID.replace(from, to)
}

/// Asserts the single error line of `config`.
#[track_caller]
fn assert_error(config: &str, expected: &str) {
    let (code, stdout, stderr) = check(config);
    assert_eq!(code, 1, "stdout {stdout:?}");
    assert_eq!(stderr.trim_end(), format!("DIR/edgelb.toml:{expected}"));
}

#[test]
fn valid_config_passes() {
    let (code, stdout, stderr) = check(VALID);
    assert_eq!((code, stdout.as_str()), (0, "configuration ok\n"));
    // Keys this build does not implement yet are only warned about by `check`.
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("warning: ") && l.contains("not supported yet")),
        "{stderr}"
    );
}

#[test]
fn shipped_example_configs_pass() {
    // The examples refer to development certificates (certs/make-dev-certs.sh);
    // stand-ins made here sit where the examples expect them.
    let root = tempfile::tempdir().unwrap();
    let dev = root.path().join("certs/dev");
    std::fs::create_dir_all(&dev).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dev.join("localhost.pem"), cert.pem()).unwrap();
    std::fs::write(dev.join("localhost.key"), key.serialize_pem()).unwrap();
    std::fs::create_dir_all(root.path().join("config")).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let path = entry.unwrap().path();
        let copy = root.path().join("config").join(path.file_name().unwrap());
        std::fs::copy(&path, &copy).unwrap();
        let out = Command::new(edgelb_bin())
            .args(["check", "--config"])
            .arg(&copy)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "configuration ok\n");
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn syntax_error_stops_at_that_one() {
    assert_error(
        &with("name = \"web\"", "name = = \"web\""),
        "15:8: extra `=`, expected nothing",
    );
}

#[test]
fn unknown_keys_everywhere() {
    assert_error(
        &with("drain_timeout", "drain_timout"),
        "3:1: unknown key `drain_timout`",
    );
    assert_error(
        &with(
            "bind = \"0.0.0.0:8080\"",
            "bind = \"0.0.0.0:8080\"\nbnd = 1",
        ),
        "12:1: unknown key `bnd`",
    );
    assert_error(
        &with(
            "{ forward = \"web\" }",
            "{ forward = \"web\", foward = \"x\" }",
        ),
        "12:37: unknown key `foward`",
    );
    assert_error(
        &with("weight = 3", "weight = 3, wieght = 2"),
        "18:45: unknown key `wieght`",
    );
    assert_error(
        &with("matcher = ", "matchr = "),
        "25:1: unknown key `matchr`",
    );
    assert_error(
        &(VALID.to_owned() + "[extra]\nx = 1\n"),
        "26:2: unknown key `extra`",
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let config = with(
        "drain_timeout = \"30s\"",
        "drain_timeout = \"30x\"\ncolour = 1",
    )
    .replace("weight = 3", "weight = 1001")
    .replace("matcher = \"200-399\"", "matcher = \"abc\"");
    let (code, _, stderr) = check(&config);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "DIR/edgelb.toml:3:17: invalid duration \"30x\": expected an integer and a unit (ms, s, m, h, d), e.g. \"5s\"",
            "DIR/edgelb.toml:4:1: unknown key `colour`",
            "DIR/edgelb.toml:19:42: 1001 is out of range 0..=1000",
            "DIR/edgelb.toml:26:11: invalid matcher \"abc\": expected codes and ranges in 100..599 like \"200,202\" or \"200-299\"",
        ]
    );
}

#[test]
fn duplicate_names_point_at_the_later_one() {
    let second_listener = "\n[[listeners]]\nname = \"public\"\nprotocol = \"http\"\nbind = \"0.0.0.0:8081\"\ndefault_action = { forward = \"web\" }\n";
    assert_error(
        &(VALID.to_owned() + second_listener),
        "28:8: duplicate listener name \"public\"",
    );
    let second_group = "\n[[target_groups]]\nname = \"web\"\nprotocol = \"http\"\n";
    assert_error(
        &(VALID.to_owned() + second_group),
        "28:8: duplicate target group name \"web\"",
    );
    assert_error(
        &with(
            "{ address = \"app-2.internal:8080\" }",
            "{ address = \"10.0.1.10:8080\" }",
        ),
        "19:15: duplicate target \"10.0.1.10:8080\" in this group",
    );
}

#[test]
fn forward_to_unknown_or_unfit_group() {
    assert_error(
        &with("{ forward = \"web\" }", "{ forward = \"wbe\" }"),
        "12:30: forward to unknown target group \"wbe\"",
    );
    assert_error(
        &with("protocol = \"http\"\nbind", "protocol = \"tcp\"\nbind"),
        "12:30: a tcp listener cannot forward to http target group \"web\"",
    );
    assert_error(
        &with("default_action = { forward = \"web\" }\n", ""),
        "8:1: missing key `default_action`",
    );
}

#[test]
fn tls_listeners_need_readable_certificates() {
    assert_error(
        &with("protocol = \"http\"\nbind", "protocol = \"https\"\nbind"),
        "8:1: https listener has no certificates",
    );
    let with_certs = with(
        "protocol = \"http\"\nbind",
        "protocol = \"https\"\ncertificates = [ { cert = \"certs/site.pem\", key = \"missing.key\" } ]\nbind",
    );
    let (code, _, stderr) = check_in(&with_certs, &[]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("DIR/edgelb.toml:11:27: cannot read DIR/certs/site.pem:"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("DIR/edgelb.toml:11:51: cannot read DIR/missing.key:"),
        "{}",
        lines[1]
    );
}

#[test]
fn timeouts_intervals_thresholds() {
    assert_error(
        &with("timeout = \"5s\"", "timeout = \"10s\""),
        "24:11: timeout 10s must be shorter than interval 10s",
    );
    assert_error(
        &with("interval = \"10s\"", "interval = \"500ms\""),
        "23:12: must be between 1s and 5m",
    );
    assert_error(
        &with(
            "matcher = \"200-399\"",
            "matcher = \"200-399\"\nhealthy_threshold = 11",
        ),
        "26:21: 11 is out of range 1..=10",
    );
    assert_error(
        &with("matcher = \"200-399\"", "matcher = \"200-399\"\nport = 0"),
        "26:8: port 0 is out of range 1..=65535",
    );
    assert_error(
        &with(
            "protocol = \"http\"\ntargets",
            "protocol = \"http\"\nslow_start = \"10s\"\ntargets",
        ),
        "17:14: slow_start must be 0s or between 30s and 900s",
    );
}

#[test]
fn weights_and_ports_out_of_range() {
    assert_error(
        &with("weight = 3", "weight = -1"),
        "18:42: -1 is out of range 0..=1000",
    );
    assert_error(
        &with("10.0.1.10:8080", "10.0.1.10:65536"),
        "18:15: port \"65536\" is out of range 1..=65535 in \"10.0.1.10:65536\"",
    );
    assert_error(
        &with("0.0.0.0:8080", "0.0.0.0:99999"),
        "11:8: port \"99999\" out of range 0..=65535 in \"0.0.0.0:99999\"",
    );
    assert_error(
        &with("worker_threads = 2", "worker_threads = 5000"),
        "2:18: 5000 is out of range 0..=1024",
    );
}

#[test]
fn rules_validation() {
    let rule = |body: &str| {
        with(
            "default_action = { forward = \"web\" }\n",
            &format!("default_action = {{ forward = \"web\" }}\n\n[[listeners.rules]]\n{body}\n"),
        )
    };
    assert_error(
        &(rule("priority = 5\nconditions = { path = [\"/a\"] }\naction = { forward = \"web\" }")
            + "\n[[listeners.rules]]\npriority = 5\nconditions = { path = [\"/b\"] }\naction = { forward = \"web\" }\n"),
        "33:12: duplicate rule priority 5 in this listener",
    );
    assert_error(
        &rule("priority = 0\nconditions = { path = [\"/a\"] }\naction = { forward = \"web\" }"),
        "15:12: priority 0 is out of range 1..=50000",
    );
    assert_error(
        &rule(
            "priority = 1\nconditions = { source_ip = [\"10.0.0.0/33\"] }\naction = { forward = \"web\" }",
        ),
        "16:29: invalid CIDR \"10.0.0.0/33\": expected e.g. \"10.0.0.0/8\" or \"::1/128\"",
    );
    assert_error(
        &rule("priority = 1\nconditions = { path = [] }\naction = { forward = \"web\" }"),
        "16:16: empty list: give at least one value or leave the condition out",
    );
    assert_error(
        &rule("priority = 1\nconditions = {}\naction = { forward = \"web\" }"),
        "16:1: a rule needs at least one condition",
    );
    let long = format!("/{}", "a".repeat(128));
    assert_error(
        &rule(&format!(
            "priority = 1\nconditions = {{ path = [\"{long}\"] }}\naction = {{ forward = \"web\" }}"
        )),
        "16:24: pattern is 129 characters long, more than 128",
    );
    assert_error(
        &rule(
            "priority = 1\nconditions = { path = [\"/a\"] }\naction = { forward = { target_groups = [ { name = \"web\", weight = 0 } ] } }",
        ),
        "17:24: every weight is 0: no request could be forwarded",
    );
    let body = "x".repeat(1025);
    assert_error(
        &rule(&format!(
            "priority = 1\nconditions = {{ path = [\"/a\"] }}\naction = {{ fixed_response = {{ status = 200, body = \"{body}\" }} }}"
        )),
        "17:52: body is 1025 bytes, more than 1024",
    );
    assert_error(
        &rule(
            "priority = 1\nconditions = { path = [\"/a\"] }\naction = { redirect = { host = \"#{host}\", status = 301 } }",
        ),
        "17:12: redirect to the same URL (a loop): change at least one of protocol, host, port, path, query",
    );
}

#[test]
fn max_body_bytes_is_for_http_listeners() {
    assert_error(
        &with(
            "protocol = \"http\"\nbind",
            "protocol = \"http\"\nmax_body_bytes = -5\nbind",
        ),
        "11:18: -5 is out of range 0..=9223372036854775807",
    );
    assert_error(
        &with(
            "protocol = \"http\"\nbind = \"0.0.0.0:8080\"\ndefault_action = { forward = \"web\" }",
            "protocol = \"tcp\"\nbind = \"0.0.0.0:8080\"\nmax_body_bytes = 10\ndefault_action = { forward = \"tcpweb\" }",
        )
        .replace("[target_groups.health_check]", "[[target_groups]]\nname = \"tcpweb\"\nprotocol = \"tcp\"\ntargets = []\n\n[target_groups.health_check]"),
        "12:18: max_body_bytes applies to http and https listeners only, not tcp",
    );
}

#[test]
fn protocol_version_and_grpc_checks() {
    assert_error(
        &with(
            "protocol = \"http\"\ntargets",
            "protocol = \"http\"\nprotocol_version = \"h3\"\ntargets",
        ),
        "17:20: unknown protocol_version \"h3\": expected \"http1\", \"http2\" or \"grpc\"",
    );
    assert_error(
        &with(
            "matcher = \"200-399\"",
            "matcher = \"200-399\"\ngrpc_service = \"orders\"",
        ),
        "26:16: grpc_service applies to protocol = \"grpc\" health checks only",
    );
    // A gRPC check's matcher holds gRPC codes.
    assert_error(
        &with(
            "matcher = \"200-399\"",
            "protocol = \"grpc\"\nmatcher = \"200\"",
        ),
        "26:11: invalid matcher \"200\": expected codes and ranges in 0..16 (gRPC status codes) like \"0\" or \"0-2,12\"",
    );
    // A grpc group's check is gRPC by default: its matcher, gRPC codes.
    assert_error(
        &with(
            "protocol = \"http\"\ntargets",
            "protocol = \"http\"\nprotocol_version = \"grpc\"\ntargets",
        ),
        "26:11: invalid matcher \"200-399\": expected codes and ranges in 0..16 (gRPC status codes) like \"0\" or \"0-2,12\"",
    );
    let (code, stdout, _) = check(
        &with(
            "protocol = \"http\"\ntargets",
            "protocol = \"http\"\nprotocol_version = \"grpc\"\ntargets",
        )
        .replace("matcher = \"200-399\"", "matcher = \"0\""),
    );
    assert_eq!((code, stdout.trim()), (0, "configuration ok"));
    let (code, stdout, stderr) = check(&with(
        "matcher = \"200-399\"",
        "protocol = \"grpc\"\ngrpc_service = \"orders\"\nmatcher = \"0,5\"",
    ));
    assert_eq!((code, stdout.trim()), (0, "configuration ok"), "{stderr}");
}

#[test]
fn cluster_node_files() {
    // A cluster node's local file: [global], [admin], [cluster].
    let local = "[admin]\nbind = \"127.0.0.1:9901\"\n\n[cluster]\netcd = [\"http://127.0.0.1:2379\", \"https://etcd.internal\"]\nprefix = \"/edgelb/prod\"\nnode_name = \"lb-1\"\n";
    let (code, stdout, stderr) = check(local);
    assert_eq!((code, stdout.trim()), (0, "configuration ok"), "{stderr}");
    // Listeners or groups in it are an error at each key; so are bad
    // endpoints, prefixes, names and a lone cert_file.
    let (code, _, stderr) = check(&format!(
        "{local}\n{}",
        &VALID[VALID.find("[[listeners]]").unwrap()..]
    ));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("DIR/edgelb.toml:9:3: `listeners` in a cluster node's local file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`target_groups` in a cluster node's local file"),
        "{stderr}"
    );
    let bad = "[cluster]\netcd = [\"127.0.0.1:2379\"]\nprefix = \"edgelb\"\nnode_name = \"lb 1\"\ncert_file = \"x.pem\"\n";
    let (code, _, stderr) = check_in(bad, &["x.pem"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "DIR/edgelb.toml:2:9: etcd endpoint \"127.0.0.1:2379\" must start with http:// or https://",
            "DIR/edgelb.toml:3:10: prefix \"edgelb\" must start with `/`, name something and hold no spaces",
            "DIR/edgelb.toml:4:13: node_name \"lb 1\": use letters, digits, `-`, `_` and `.`",
            "DIR/edgelb.toml:5:13: cert_file needs key_file beside it",
        ],
        "{stderr}"
    );
    assert_error("[cluster]\nprefix = \"/x\"\n", "1:2: missing key `etcd`");
}

#[test]
fn acme_sections_and_entries() {
    let listener = "[[listeners]]\nname = \"tls\"\nprotocol = \"https\"\nbind = \"127.0.0.1:8443\"\ncertificates = [ { acme = [\"Example.com\", \"www.example.com\"] } ]\ndefault_action = { fixed_response = { status = 200 } }\n";
    let acme = "[acme]\ndirectory = \"https://acme.example/dir\"\nterms_of_service_agreed = true\nstorage = \"acme\"\n";
    let (code, stdout, stderr) = check(&format!("{acme}\n{listener}"));
    assert_eq!((code, stdout.trim()), (0, "configuration ok"), "{stderr}");
    // An ACME entry without [acme].
    let (code, _, stderr) = check(listener);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        "DIR/edgelb.toml:5:20: an ACME certificate needs an [acme] section (directory, storage, terms_of_service_agreed)"
    );
    // Terms not agreed, an unknown challenge, a contact that is no mailto:,
    // and entries with a wildcard, an IP, a duplicate and a file beside.
    let bad_acme = "[acme]\ndirectory = \"acme.example/dir\"\nterms_of_service_agreed = false\nstorage = \"acme\"\nchallenge = \"dns-01\"\ncontact = [\"ops@example.com\"]\n";
    let bad_listener = listener.replace(
        "{ acme = [\"Example.com\", \"www.example.com\"] }",
        "{ acme = [\"*.example.com\", \"10.0.0.1\", \"a.example.com\", \"A.example.com\"] }, { acme = [\"b.example.com\"], cert = \"x.pem\" }",
    );
    let (code, _, stderr) = check_in(&format!("{bad_acme}\n{bad_listener}"), &["x.pem"]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "DIR/edgelb.toml:2:13: directory \"acme.example/dir\" must be an http(s):// URL",
            "DIR/edgelb.toml:3:27: terms_of_service_agreed must be true: ordering certificates means agreeing to the ACME server's terms",
            "DIR/edgelb.toml:5:13: unknown challenge \"dns-01\": expected \"http-01\" or \"tls-alpn-01\"",
            "DIR/edgelb.toml:6:12: contact \"ops@example.com\" must be a mailto: URL",
            "DIR/edgelb.toml:12:28: \"*.example.com\": wildcard names need the dns-01 challenge, which edgelb does not answer",
            "DIR/edgelb.toml:12:45: \"10.0.0.1\" is not a DNS name",
            "DIR/edgelb.toml:12:74: \"A.example.com\" is listed twice",
            "DIR/edgelb.toml:12:94: a certificate entry is either { cert, key } or { acme = [names] }, not both",
        ],
        "{stderr}"
    );
}

#[test]
fn oidc_providers_and_authenticate() {
    let listener = |protocol: &str, extra: &str| {
        format!(
            "[[listeners]]\nname = \"l\"\nprotocol = \"{protocol}\"\nbind = \"127.0.0.1:8443\"\n{extra}default_action = {{ authenticate = {{ oidc = \"corp\" }}, fixed_response = {{ status = 200 }} }}\n"
        )
    };
    let provider = "[[oidc]]\nname = \"corp\"\nissuer = \"https://idp.example.com/\"\nclient_id = \"edgelb\"\nclient_secret_file = \"secret\"\n\n";
    // On an http listener: a check error; an unknown provider, a scope
    // without openid, a missing secret file and an unknown mode too.
    let (code, _, stderr) = check_in(&format!("{provider}{}", listener("http", "")), &["secret"]);
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        "DIR/edgelb.toml:11:20: authenticate needs an https listener (the session cookie and the login are never sent in clear), not http"
    );
    let bad = "[[oidc]]\nname = \"corp\"\nissuer = \"http://idp.example.com\"\nclient_id = \"edgelb\"\nclient_secret_file = \"missing\"\nscope = \"email\"\n\n";
    let (code, _, stderr) = check_in(
        &format!(
            "{bad}{}",
            listener("http", "").replace(
                "oidc = \"corp\"",
                "oidc = \"other\", on_unauthenticated = \"maybe\""
            )
        ),
        &[],
    );
    assert_eq!(code, 1);
    for expected in [
        "DIR/edgelb.toml:3:10: issuer \"http://idp.example.com\" must be an https:// URL",
        "cannot read DIR/missing",
        "DIR/edgelb.toml:6:9: scope \"email\" must contain openid",
        "no [[oidc]] named \"other\"",
        "unknown on_unauthenticated \"maybe\"",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
}
