//! The server against raw sockets: each limit holds against a client that breaks it, and a
//! client within the limits is served. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

/// Longer than any limit below: a wait that reaches it means the server did not act.
const BOUND: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(300);

fn limits() -> Limits {
    Limits {
        header_read_timeout: SHORT,
        body_read_timeout: SHORT,
        idle_timeout: SHORT,
        max_connections: 64,
        shutdown_grace: BOUND,
    }
}

/// `/echo` answers the length of the body it read, or the status of the [`BodyError`];
/// `/peer` the peer's address; `/slow` after 300 ms.
fn app() -> Router {
    async fn echo(headers: HeaderMap, body: Body) -> (StatusCode, String) {
        match read_body(&headers, body, 1000).await {
            Ok(body) => (StatusCode::OK, body.len().to_string()),
            Err(BodyError::TooLarge { .. }) => (StatusCode::PAYLOAD_TOO_LARGE, String::new()),
            Err(BodyError::TimedOut) => (StatusCode::REQUEST_TIMEOUT, String::new()),
            Err(BodyError::Unreadable) => (StatusCode::BAD_REQUEST, String::new()),
        }
    }
    Router::new()
        .route("/echo", post(echo))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(SHORT).await;
                "done"
            }),
        )
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start(limits: Limits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app(), limits, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

impl Running {
    /// Starts shutdown and waits (bounded) for `serve` to return.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(BOUND, self.task)
            .await
            .expect("serve returned within the bound")
            .unwrap();
    }
}

const ECHO: &[u8] = b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc";

/// Reads until the server closes the connection (or resets it); panics after [`BOUND`].
async fn until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    all
}

/// Reads one answer (its head and a body of `Content-Length`), bounded.
async fn answer(socket: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole answer: {all:?}");
            all.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&all);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |n| n.parse::<usize>().unwrap());
                if all.len() >= end + 4 + length {
                    return;
                }
            }
        }
    })
    .await
    .expect("an answer within the bound");
    String::from_utf8(all).unwrap()
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = start(limits()).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    assert!(until_closed(&mut socket).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_header_sent_a_byte_at_a_time_is_cut_off() {
    let server = start(limits()).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let trickle = tokio::time::timeout(BOUND, async {
        for byte in b"POST /echo HTTP/1.1\r\nhost: t\r\nx-padding: "
            .iter()
            .cycle()
        {
            if socket.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(trickle.is_ok(), "the server kept reading a header for 5 s");
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408() {
    let server = start(limits()).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 1000\r\n\r\nonly this")
        .await
        .unwrap();
    let answer = answer(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_the_body() {
    let server = start(limits()).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 1001\r\n\r\n")
        .await
        .unwrap();
    let answer = answer(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_serves_again_then_closes_when_idle() {
    let server = start(limits()).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..3 {
        socket.write_all(ECHO).await.unwrap();
        let answer = answer(&mut socket).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n3"),
            "{answer}"
        );
        tokio::time::sleep(SHORT / 3).await;
    }
    assert!(until_closed(&mut socket).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn each_request_carries_its_peer() {
    let server = start(limits()).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let local = socket.local_addr().unwrap();
    socket
        .write_all(b"GET /peer HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = answer(&mut socket).await;
    assert!(answer.ends_with(&local.to_string()), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let server = start(Limits {
        max_connections: 1,
        header_read_timeout: BOUND * 2,
        ..limits()
    })
    .await;
    let first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    second.write_all(ECHO).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(SHORT, second.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a second connection was served beside the first"
    );
    drop(first);
    let answer = answer(&mut second).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight() {
    let server = start(limits()).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(SHORT / 3).await;
    let stopping = tokio::spawn(server.stop());
    let answer = answer(&mut socket).await;
    assert!(answer.ends_with("done"), "{answer}");
    stopping.await.unwrap();
}

#[tokio::test]
async fn shutdown_drops_what_is_still_open_after_the_grace_period() {
    let server = start(Limits {
        header_read_timeout: BOUND * 2,
        shutdown_grace: SHORT,
        ..limits()
    })
    .await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"POST /echo HTTP/1.1\r\nhost:")
        .await
        .unwrap();
    tokio::time::sleep(SHORT / 3).await;
    server.stop().await;
    until_closed(&mut socket).await;
}

#[tokio::test]
async fn one_shutdown_signal_reaches_every_waiter() {
    let (signal, signalled) = oneshot::channel::<()>();
    let shutdown = Shutdown::on(async move {
        let _ = signalled.await;
    });
    let waiters: Vec<_> = (0..3).map(|_| tokio::spawn(shutdown.wait())).collect();
    tokio::time::sleep(SHORT / 3).await;
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "a waiter ended before the signal"
    );
    signal.send(()).unwrap();
    for waiter in waiters {
        tokio::time::timeout(BOUND, waiter).await.unwrap().unwrap();
    }
}
