#![no_main]
//! See `edgelb::fuzzing::h2_watch` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgelb::fuzzing::h2_watch(data));
