//! Replays every committed fuzz input (`fuzz/corpus/<target>/` and the
//! crashes once found, `fuzz/regressions/<target>/`) through the fuzz targets'
//! property checks, so CI keeps them on stable Rust.

use std::path::Path;

#[test]
fn committed_fuzz_inputs_still_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (name, target) in edgelb::fuzzing::TARGETS {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                // A running fuzzer may have just replaced the file.
                let Ok(data) = std::fs::read(&path) else {
                    continue;
                };
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{name}: {} fails", path.display());
                replayed += 1;
            }
        }
        assert!(
            root.join("corpus").join(name).is_dir(),
            "no committed corpus for fuzz target {name}"
        );
    }
    assert!(replayed > 0);
}
