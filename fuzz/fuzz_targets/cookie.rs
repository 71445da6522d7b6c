#![no_main]
//! See `edgelb::fuzzing::cookie` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgelb::fuzzing::cookie(data));
