//! `kong-rust-pb-floor`: `kong-rust-floor`'s counterpart for Kong's ProtoBuf:1
//! (`kong/runloop/plugin_servers/rpc/pb_rpc.lua`), so the two protocols can be compared through
//! Kong's bridge. Canned replies, no plugin: `StartInstance` returns the config's `calls` as the
//! instance id, and an event of that instance makes that many `kong.request.get_header("host")`
//! calls before returning. Over ProtoBuf:1 Kong keeps one connection for the whole event, so
//! the count needs no state beyond the connection's own loop.
//!
//! The frames, as `pb_rpc.lua` reads and writes them: a 4-byte length in the machine's byte
//! order, then the message. An event: Kong's `RpcCall`, then per PDK call the server's method
//! name and argument frames and Kong's reply frame, then an empty method name and the
//! `RpcReturn` carrying the call's `sequence`. Each group the server sends goes in one write.

use std::path::PathBuf;

use clap::Parser;
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Kong's `kong_plugin_protocol` package, generated from `host/proto` by `build.rs`.
#[allow(dead_code, clippy::all)]
mod messages {
    include!(concat!(env!("OUT_DIR"), "/kong_plugin_protocol.rs"));
}

use messages::{rpc_call::Call, rpc_return::Return, InstanceStatus, RpcCall, RpcReturn};

#[derive(Parser)]
#[command(
    about = "Answer Kong's ProtoBuf:1 plugin protocol with canned replies: the benchmark's floor"
)]
struct Cli {
    /// The socket to listen on.
    #[arg(long)]
    socket: PathBuf,
}

/// Larger frames are refused: the floor only ever receives short messages.
const MAX_FRAME: usize = 1 << 20;

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let _ = std::fs::remove_file(&cli.socket);
    // One thread, like kong-rust-floor: the suite pins the floor to one CPU anyway.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let listener = UnixListener::bind(&cli.socket)?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream));
        }
    })
}

/// Serves Kong's calls on one connection, in turn; anything unexpected closes it.
async fn serve(mut stream: UnixStream) {
    let (input, mut stream) = stream.split();
    // Buffered like kong-rust-floor's reads: a frame's length and message in one read.
    let mut input = BufReader::with_capacity(4096, input);
    let mut output = Vec::with_capacity(256);
    let canned_call = canned_pdk_call();
    while let Some(frame) = read_frame(&mut input).await {
        let Ok(call) = RpcCall::decode(frame.as_slice()) else {
            return;
        };
        output.clear();
        let status = match call.call {
            Some(Call::CmdStartInstance(start)) => {
                let calls = serde_json::from_slice::<serde_json::Value>(&start.config)
                    .ok()
                    .and_then(|config| config.get("calls")?.as_i64())
                    .unwrap_or(1);
                Some(InstanceStatus {
                    name: start.name,
                    instance_id: i32::try_from(calls).unwrap_or(1),
                    ..Default::default()
                })
            }
            Some(Call::CmdCloseInstance(close)) => Some(InstanceStatus {
                instance_id: close.instance_id,
                ..Default::default()
            }),
            Some(Call::CmdHandleEvent(event)) => {
                for _ in 0..event.instance_id {
                    if stream.write_all(&canned_call).await.is_err()
                        || read_frame(&mut input).await.is_none()
                    {
                        return;
                    }
                }
                // The empty method name ends Kong's loop; the RpcReturn follows.
                output.extend_from_slice(&0u32.to_ne_bytes());
                None
            }
            _ => return,
        };
        let reply = RpcReturn {
            sequence: call.sequence,
            r#return: status.map(Return::InstanceStatus),
        };
        push_frame(&mut output, &reply.encode_to_vec());
        if stream.write_all(&output).await.is_err() {
            return;
        }
    }
}

/// `kong.request.get_header("host")`: the method name frame and the `String` argument frame.
fn canned_pdk_call() -> Vec<u8> {
    let mut frames = Vec::new();
    push_frame(&mut frames, b"kong.request.get_header");
    push_frame(
        &mut frames,
        &messages::String {
            v: b"host".to_vec(),
        }
        .encode_to_vec(),
    );
    frames
}

fn push_frame(out: &mut Vec<u8>, message: &[u8]) {
    let length = u32::try_from(message.len()).expect("a canned message is small");
    out.extend_from_slice(&length.to_ne_bytes());
    out.extend_from_slice(message);
}

/// One frame's message; `None` when the connection ends or the length is out of bounds.
async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut length = [0; 4];
    stream.read_exact(&mut length).await.ok()?;
    let length = u32::from_ne_bytes(length) as usize;
    if length > MAX_FRAME {
        return None;
    }
    let mut message = vec![0; length];
    stream.read_exact(&mut message).await.ok()?;
    Some(message)
}
