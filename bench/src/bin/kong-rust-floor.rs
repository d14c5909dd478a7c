//! `kong-rust-floor`: the physical reference for the benchmark. It speaks the plugin protocol
//! on one socket with canned replies and runs no plugin: `StartInstance` returns the config's
//! `calls` as the instance id, `HandleEvent` and every Step answer `get_header("host")` until
//! that many calls were made, then `"ret"`. Its only state is the calls left per event id (Kong
//! keeps the id HandleEvent's reply gave for every Step of the event, so the count cannot
//! travel in it): what is left is framing, decoding, one write per reply and the socket round
//! trips, the cost any plugin server must pay on this machine.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use clap::Parser;
use rmpv::ValueRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

#[derive(Parser)]
#[command(about = "Answer Kong's plugin protocol with canned replies: the benchmark's floor")]
struct Cli {
    /// The socket to listen on.
    #[arg(long)]
    socket: PathBuf,
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let _ = std::fs::remove_file(&cli.socket);
    // One thread, like a lean event-loop server: the suite pins the floor to one CPU anyway.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let listener = UnixListener::bind(&cli.socket)?;
        let events = Arc::new(Mutex::new(Events::default()));
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream, Arc::clone(&events)));
        }
    })
}

/// Answers each complete request as it arrives; a malformed one closes the connection.
async fn serve(mut stream: UnixStream, events: Arc<Mutex<Events>>) {
    let mut input = Vec::with_capacity(4096);
    let mut output = Vec::with_capacity(256);
    loop {
        let mut consumed = 0;
        loop {
            let mut rest = &input[consumed..];
            match rmpv::decode::read_value_ref(&mut rest) {
                Ok(request) => {
                    output.clear();
                    let replied = {
                        let mut events = events.lock().expect("one thread, never poisoned");
                        reply(&request, &mut events, &mut output)
                    };
                    if replied.is_none() {
                        return;
                    }
                    consumed = input.len() - rest.len();
                    if stream.write_all(&output).await.is_err() {
                        return;
                    }
                }
                Err(e) if is_incomplete(&e) => break,
                Err(_) => return,
            }
        }
        input.drain(..consumed);
        match stream.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn is_incomplete(error: &rmpv::decode::Error) -> bool {
    use rmpv::decode::Error::{InvalidDataRead, InvalidMarkerRead};
    matches!(error, InvalidMarkerRead(e) | InvalidDataRead(e)
        if e.kind() == std::io::ErrorKind::UnexpectedEof)
}

/// The calls each event in flight has still to make.
#[derive(Default)]
struct Events {
    next_id: u64,
    left: HashMap<u64, u64>,
}

/// Encodes the canned reply to `[0, msgid, method, [param]]`; `None` for anything else.
fn reply(request: &ValueRef<'_>, events: &mut Events, out: &mut Vec<u8>) -> Option<()> {
    let ValueRef::Array(fields) = request else {
        return None;
    };
    let [ValueRef::Integer(kind), ValueRef::Integer(msgid), ValueRef::String(method), ValueRef::Array(params)] =
        fields.as_slice()
    else {
        return None;
    };
    if kind.as_u64() != Some(0) {
        return None;
    }
    let param = params.first()?;
    rmp::encode::write_array_len(out, 4).ok()?;
    rmp::encode::write_uint(out, 1).ok()?;
    rmp::encode::write_uint(out, msgid.as_u64()?).ok()?;
    rmp::encode::write_nil(out).ok()?;
    match method.as_str()? {
        "plugin.StartInstance" => {
            let ValueRef::String(config) = field(param, "Config")? else {
                return None;
            };
            let config: serde_json::Value = serde_json::from_slice(config.as_bytes()).ok()?;
            let calls = config
                .get("calls")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(1);
            rmp::encode::write_map_len(out, 1).ok()?;
            rmp::encode::write_str(out, "Id").ok()?;
            rmp::encode::write_uint(out, calls).ok()?;
        }
        "plugin.CloseInstance" => rmp::encode::write_nil(out).ok()?,
        "plugin.HandleEvent" => {
            let calls = int(field(param, "InstanceId")?)?;
            events.next_id += 1;
            let id = events.next_id;
            step_reply(out, id, calls, events)?;
        }
        _ => {
            // Every Step variant.
            let id = int(field(param, "EventId")?)?;
            let left = events.left.remove(&id)?;
            step_reply(out, id, left, events)?;
        }
    }
    Some(())
}

/// `{"EventId": id, "Data": get_header("host")}` while calls are `left`, else `"ret"`.
fn step_reply(out: &mut Vec<u8>, id: u64, left: u64, events: &mut Events) -> Option<()> {
    rmp::encode::write_map_len(out, 2).ok()?;
    rmp::encode::write_str(out, "EventId").ok()?;
    rmp::encode::write_uint(out, id).ok()?;
    rmp::encode::write_str(out, "Data").ok()?;
    if left == 0 {
        rmp::encode::write_str(out, "ret").ok()?;
        return Some(());
    }
    events.left.insert(id, left - 1);
    rmp::encode::write_map_len(out, 2).ok()?;
    rmp::encode::write_str(out, "Method").ok()?;
    rmp::encode::write_str(out, "kong.request.get_header").ok()?;
    rmp::encode::write_str(out, "Args").ok()?;
    rmp::encode::write_array_len(out, 1).ok()?;
    rmp::encode::write_str(out, "host").ok()?;
    Some(())
}

fn field<'a>(map: &'a ValueRef<'a>, key: &str) -> Option<&'a ValueRef<'a>> {
    let ValueRef::Map(entries) = map else {
        return None;
    };
    entries
        .iter()
        .find(|(k, _)| matches!(k, ValueRef::String(s) if s.as_str() == Some(key)))
        .map(|(_, v)| v)
}

fn int(value: &ValueRef<'_>) -> Option<u64> {
    match value {
        ValueRef::Integer(n) => n.as_u64(),
        _ => None,
    }
}
