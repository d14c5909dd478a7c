//! Replays the fuzz corpus (`fuzz/corpus/<target>`) and the inputs of fixed fuzz findings
//! (`fuzz/regressions/<target>`) through the fuzz targets' own checks, so plain `cargo test`
//! on stable keeps them passing without libFuzzer or nightly.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|entry| entry.unwrap().path()).collect();
        files.sort();
        for file in files {
            eprintln!("{}", file.display());
            check(&std::fs::read(&file).unwrap());
            replayed += 1;
        }
    }
    assert!(
        replayed > 0,
        "no corpus for {target} under {}",
        fuzz.display()
    );
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", kong_rust_host::fuzzing::frame_decoder);
}

#[test]
fn protobuf_frames_corpus() {
    replay("protobuf_frames", kong_rust_host::fuzzing::protobuf_frames);
}

#[test]
fn dispatcher_corpus() {
    replay("dispatcher", kong_rust_host::fuzzing::dispatcher);
}

#[test]
fn config_validation_corpus() {
    replay(
        "config_validation",
        kong_rust_host::fuzzing::config_validation,
    );
}
