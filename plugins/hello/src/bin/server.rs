//! `rust-hello` on its own: installed as /usr/local/bin/rust-hello, Kong 3.9 starts and queries
//! it with no kong.conf settings beyond `plugins` and `pluginserver_names`.

fn main() -> std::process::ExitCode {
    kong_rust_host::dedicated::main(kong_rust_pdk::root_module::<rust_hello::Hello>())
}
