//! Compiles the host's `.proto` files (Kong's package, messages and methods) into a descriptor
//! set the driver reads at run time, as Kong's lua-protobuf loads `pluginsocket.proto`: the
//! driver encodes and decodes by message name, the way `pb_rpc.lua` does, not with generated
//! Rust types. Pure Rust (protox): no protoc on the machine.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from("../../host/proto");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut protos: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("host/proto")
        .map(|entry| entry.expect("host/proto entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "proto"))
        .collect();
    protos.sort();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let mut compiler = protox::Compiler::new([&dir]).expect("host/proto");
    compiler.include_imports(true);
    compiler.open_files(&protos).expect("host/proto compiles");
    // Encoded by protox itself, which keeps the custom `MethodName` options that a round trip
    // through prost's types would drop.
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("kong.fds");
    std::fs::write(out, compiler.encode_file_descriptor_set()).expect("write kong.fds");
}
