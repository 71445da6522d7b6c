//! Records build information for `edgelb --version`.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EDGELB_BUILD_TARGET={target}");
    println!("cargo:rustc-env=EDGELB_BUILD_PROFILE={profile}");
    println!("cargo:rustc-env=EDGELB_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
