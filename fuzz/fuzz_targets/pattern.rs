#![no_main]
//! See `edgelb::fuzzing::pattern` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgelb::fuzzing::pattern(data));
