//! The checks the cargo-fuzz targets in `fuzz/` run, one function per target, taking the raw
//! fuzz input. They live here rather than in the fuzz crate so that `tests/fuzz_corpus.rs` can
//! replay the committed corpus through the very same code on stable Rust, without libFuzzer.
//! Each function panics when an invariant breaks; that panic is the finding.
//!
//! Built only with the `fuzzing` feature.

mod config;
mod dispatcher;
mod frames;
mod plugin;
mod protobuf;

pub use config::config_validation;
pub use dispatcher::dispatcher;
pub use frames::frame_decoder;
pub use plugin::{FuzzConfig, FuzzPlugin};
pub use protobuf::protobuf_frames;
