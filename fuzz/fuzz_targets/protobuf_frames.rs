#![no_main]
//! The check lives in `kong_rust_host::fuzzing`, shared with the corpus replay test.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kong_rust_host::fuzzing::protobuf_frames(data));
