#![no_main]
//! See `edgelb::fuzzing::proxy_v2` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgelb::fuzzing::proxy_v2(data));
