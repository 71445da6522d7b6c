#![no_main]
//! See `edgelb::fuzzing::config` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgelb::fuzzing::config(data));
