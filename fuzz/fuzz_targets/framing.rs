#![no_main]
//! See `edgelb::fuzzing::framing` for the property checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| edgelb::fuzzing::framing(data));
