//! Generates the ProtoBuf:1 messages (`wire::protobuf`) from `proto/*.proto` with protox, a
//! protobuf compiler in Rust, so a build needs no `protoc` on the machine.

use std::path::PathBuf;

fn main() {
    let mut protos: Vec<PathBuf> = std::fs::read_dir("proto")
        .expect("host/proto")
        .map(|entry| entry.expect("host/proto entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "proto"))
        .collect();
    protos.sort();
    println!("cargo:rerun-if-changed=proto");
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let descriptors = protox::compile(&protos, ["proto"]).expect("host/proto compiles");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost generates the ProtoBuf:1 messages");
}
