//! pod-probe: the two things the pod needs that the service binaries do not offer, in ~150 lines
//! of std-only Rust (no crates), built by deploy/Dockerfile with plain `rustc` and tested by
//! deploy/check.sh. It is not a workspace member: it is deployment glue, not product code.
//!
//! `pod-probe check HOST:PORT PATH`
//!     Exec probe. GETs PATH from HOST:PORT (meant for 127.0.0.1:8140, the identity API, which
//!     the kubelet cannot reach because it binds loopback) and exits 0 on a 2xx status, 1
//!     otherwise. Whole exchange bounded to 2 s.
//!
//! `pod-probe relay LISTEN UPSTREAM PATH`
//!     Read-only relay for one path (meant for /metrics of the loopback-bound identity API, so
//!     Prometheus can scrape it). Answers `GET PATH` (a query string is dropped) with the
//!     upstream's response copied verbatim, 502 when the upstream is down, 404 for any other path
//!     and 405 for any other method. No request body or header is forwarded; at most 16
//!     connections at once; every read and write has a timeout; at most 16 MiB per answer.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const RELAY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 16;
const MAX_REQUEST_HEAD: usize = 8 * 1024;
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

fn usage() -> ExitCode {
    eprintln!("usage: pod-probe check HOST:PORT PATH | pod-probe relay LISTEN UPSTREAM PATH");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check", addr, path] => match check(addr, path) {
            Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
            Ok(status) => {
                eprintln!("pod-probe: GET {path} on {addr}: status {status}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("pod-probe: GET {path} on {addr}: {e}");
                ExitCode::FAILURE
            }
        },
        ["relay", listen, upstream, path] => match relay(listen, upstream, path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pod-probe relay: {e}");
                ExitCode::FAILURE
            }
        },
        _ => usage(),
    }
}

fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address resolves to nothing"))
}

fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&resolve(addr)?, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pod-probe\r\nConnection: close\r\n\r\n")
}

/// Returns the status code of `GET path`.
fn check(addr: &str, path: &str) -> io::Result<u16> {
    let mut stream = connect(addr, CHECK_TIMEOUT)?;
    stream.write_all(request(path).as_bytes())?;
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while head.len() < 256 && !head.ends_with(b"\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    status_of(&head).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no HTTP status line"))
}

/// `HTTP/1.x NNN ...` -> NNN
fn status_of(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?.trim_end();
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

fn relay(listen: &str, upstream: &str, path: &str) -> io::Result<()> {
    let listener = TcpListener::bind(resolve(listen)?)?;
    eprintln!("pod-probe relay: GET {path} on {listen} -> {upstream}{path}");
    let upstream: Arc<str> = upstream.into();
    let path: Arc<str> = path.into();
    let live = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        if live.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::SeqCst);
            drop(client); // over the limit: close at once
            continue;
        }
        let (upstream, path, live) = (Arc::clone(&upstream), Arc::clone(&path), Arc::clone(&live));
        thread::spawn(move || {
            let _ = serve(client, &upstream, &path);
            live.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

fn serve(mut client: TcpStream, upstream: &str, path: &str) -> io::Result<()> {
    client.set_read_timeout(Some(RELAY_TIMEOUT))?;
    client.set_write_timeout(Some(RELAY_TIMEOUT))?;
    // Read the request head only (no body is accepted).
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return answer(&mut client, "431 Request Header Fields Too Large");
        }
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let requested = target.split('?').next().unwrap_or_default();
    if requested != path {
        return answer(&mut client, "404 Not Found");
    }
    if method != "GET" {
        return answer(&mut client, "405 Method Not Allowed");
    }
    let Ok(mut up) = connect(upstream, RELAY_TIMEOUT) else {
        return answer(&mut client, "502 Bad Gateway");
    };
    if up.write_all(request(path).as_bytes()).is_err() {
        return answer(&mut client, "502 Bad Gateway");
    }
    io::copy(&mut up.take(MAX_RESPONSE), &mut client)?;
    client.flush()
}

fn answer(client: &mut TcpStream, status: &str) -> io::Result<()> {
    let body = format!("{status}\n");
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(text.as_bytes())?;
    client.flush()
}
