#![no_main]
//! See `edgelb::fuzzing::redirect` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgelb::fuzzing::redirect(data));
