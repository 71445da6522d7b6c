//! The `edgelb` binary: see `edgelb --help`.

fn main() -> std::process::ExitCode {
    edgelb::daemon::main()
}
