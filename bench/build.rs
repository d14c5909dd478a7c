//! Generates Kong's ProtoBuf:1 messages for `kong-rust-pb-floor` from the host's `.proto` files
//! (`host/proto`, the one statement of the wire's facts), with protox: no `protoc` needed.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from("../host/proto");
    let protos = ["rpc.proto", "pdk.proto"].map(|name| dir.join(name));
    println!("cargo:rerun-if-changed=../host/proto");
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let descriptors = protox::compile(&protos, [&dir]).expect("host/proto compiles");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost generates the ProtoBuf:1 messages");
}
