#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hostfix_core::fuzzing::container(data));
