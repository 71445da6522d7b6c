//! The client commands (SPEC §1) against a running edgelb: `status`,
//! `targets list|register|deregister`, `reload`, their exit codes and the
//! ways to name the admin API and its token.

mod common;

use common::*;
use std::process::{Command, Output};

fn edgelb(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(edgelb_bin())
        .args(args)
        .env_remove("EDGELB_ADMIN")
        .env_remove("EDGELB_TOKEN_FILE")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn out(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_targets_and_reload_through_the_admin_api() {
    let target = TestTarget::start("t").await;
    let extra = TestTarget::start("x").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let config = one_group_config(listen_addr(), &[(target.addr, 3)], "").replace(
        "bind = \"ADMIN\"",
        &format!("bind = \"ADMIN\"\ntoken_file = \"{}\"", token.display()),
    );
    let lb = Edgelb::start(&config).await;
    let admin = format!("http://{}", lb.admin);
    let token = token.display().to_string();
    let with = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--admin", &admin, "--token-file", &token]);
        out(&edgelb(&all, &[]))
    };

    let (code, table, _) = with(&["status"]);
    assert_eq!(code, 0);
    assert!(table.contains("generation 1, last reload ok"), "{table}");
    assert!(table.contains("LISTENER  PROTOCOL"), "{table}");
    let row = table
        .lines()
        .find(|l| l.contains(&target.addr.to_string()))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..4],
        ["web", &target.addr.to_string(), "config", "3"],
        "{row}"
    );
    let (code, json, _) = with(&["status", "--json"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["generation"], 1);

    // Register, list (from the environment's admin address), deregister.
    let (code, said, err) = with(&[
        "targets",
        "register",
        "web",
        &extra.addr.to_string(),
        "--weight",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(said.contains("registered"), "{said}");
    let (code, list, _) = out(&edgelb(
        &["targets", "list", "web"],
        &[("EDGELB_ADMIN", &admin)],
    ));
    assert_eq!(code, 0);
    assert!(
        list.lines().any(|l| l.contains(&extra.addr.to_string())
            && l.contains(" api ")
            && l.contains(" 2 ")),
        "{list}"
    );
    let (code, _, err) = with(&["targets", "deregister", "web", &extra.addr.to_string()]);
    assert_eq!(code, 0, "{err}");

    let (code, said, _) = with(&["reload"]);
    assert_eq!(code, 0);
    assert_eq!(said.trim(), "reloaded: generation 2");

    // The API's errors: exit 1 with its message.
    let (code, _, err) = with(&["targets", "list", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("nope"), "{err}");
    std::fs::write(&token, "wrong\n").unwrap();
    let (code, _, err) = with(&["reload"]);
    assert_eq!(code, 1);
    assert!(err.contains("401") && err.contains("--token-file"), "{err}");
    let (code, _, err) = out(&edgelb(
        &[
            "reload",
            "--admin",
            &admin,
            "--token-file",
            "/nonexistent/token",
        ],
        &[],
    ));
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the admin token"), "{err}");
    // Reading needs no token.
    assert_eq!(out(&edgelb(&["status", "--admin", &admin], &[])).0, 0);
}

#[test]
fn an_unreachable_admin_api_exits_2() {
    let (code, _, err) = out(&edgelb(
        &["status", "--admin", &format!("http://{}", dead_addr())],
        &[],
    ));
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach the admin API"), "{err}");
}
