//! A minimal HTTP/1.1 endpoint serving `GET /metrics` for the standalone STUN binary.
//!
//! The rendezvous server exports the same registry through its own HTTP stack; this exists
//! so `hearth-stun` alone needs no web framework. One request per connection, each on its own
//! short-lived thread (at most [`MAX_ACTIVE`] at once) with a 2 s deadline for the whole
//! request, bounded request size: a scraper, not a web server, and one silent client holds
//! up no other scrape.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::{Encoder, Registry, TextEncoder};

/// A running metrics endpoint; dropping it stops the thread.
#[derive(Debug)]
pub struct MetricsEndpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Binds `addr` and serves `registry` at `/metrics` until dropped.
    pub fn start(addr: SocketAddr, registry: Registry) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let active = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::Builder::new().name("stun metrics".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        // Over the cap the connection is closed unanswered: a scraper retries.
                        if active.fetch_add(1, Ordering::Relaxed) >= MAX_ACTIVE {
                            active.fetch_sub(1, Ordering::Relaxed);
                            continue;
                        }
                        let (registry, done) = (registry.clone(), Arc::clone(&active));
                        let spawned = std::thread::Builder::new().name("stun metrics req".into()).spawn(move || {
                            if let Err(e) = answer(stream, &registry) {
                                tracing::debug!(error = %e, "metrics request failed");
                            }
                            done.fetch_sub(1, Ordering::Relaxed);
                        });
                        if spawned.is_err() {
                            active.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
        Ok(Self { addr, stop, thread: Some(thread) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Requests answered at once; more are closed unanswered.
const MAX_ACTIVE: usize = 8;
/// The whole request must arrive within this.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REQUEST_DEADLINE))?;
    let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
    let mut req = [0u8; 1024];
    let mut n = 0;
    // Read until the end of the request head, or the buffer is full (then judge the first line).
    while n < req.len() {
        // One byte a second must not stretch the request: each read gets what is left.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let got = stream.read(&mut req[n..])?;
        if got == 0 {
            break;
        }
        n += got;
        if req[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let line = req[..n].split(|b| *b == b'\n').next().unwrap_or_default();
    let (status, ctype, body) = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?") {
        let mut body = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut body).map_err(io::Error::other)?;
        ("200 OK", "text/plain; version=0.0.4", body)
    } else {
        ("404 Not Found", "text/plain", b"only GET /metrics is served here\n".to_vec())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)
}
