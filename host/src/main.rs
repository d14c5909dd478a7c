//! `kong-rust-host`: serves Rust plugins (`.so` files) to Kong Gateway over Kong's external
//! plugin protocol (MsgPack:1), one Unix socket per plugin.

fn main() -> std::process::ExitCode {
    kong_rust_host::cli::main()
}
