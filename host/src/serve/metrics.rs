//! The Prometheus endpoint (`--metrics-listen`, loopback only).

use crate::runtime::dispatch::Dispatcher;
use prometheus_client::encoding::prometheus_text;
use std::{sync::Arc, time::Duration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `GET /metrics` (Prometheus text format) on a loopback TCP address until dropped.
pub async fn run_metrics_endpoint(listener: tokio::net::TcpListener, dispatcher: Arc<Dispatcher>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let dispatcher = Arc::clone(&dispatcher);
        tokio::spawn(async move {
            // A request head, bounded: this endpoint has no business with anything bigger.
            let mut head = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let response = if head.starts_with(b"GET /metrics ")
                || head.starts_with(b"GET /metrics?")
            {
                let body = dispatcher.prometheus();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    prometheus_text::CONTENT_TYPE,
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
