//! TCP relays between a client and PostgreSQL, in the test process.
//!
//! - [`CountingRelay`] counts round trips on the wire: the client's `Sync` (extended protocol)
//!   and `Query` (simple protocol) messages, after each of which the client waits for the
//!   server. Shared by tests/round_trips.rs and the benchmark.
//! - [`FaultRelay`] carries bytes until told to stop: it can black-hole the connections it
//!   carries (a crashed host, a partition, a cloud failover: nothing arrives, nothing is
//!   closed), accept new connections and never answer them, and be healed (tests/deadlines.rs).

// Each user of this file (tests, the benchmark) uses one of the relays.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Counts client-to-server messages that end a round trip, for every connection it relays.
pub struct CountingRelay {
    pub port: u16,
    round_trips: Arc<AtomicU64>,
}

impl CountingRelay {
    pub async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect((upstream.0.as_str(), upstream.1))
                    .await
                    .unwrap();
                let (server_read, server_write) = server.into_split();
                let (client_read, client_write) = client.into_split();
                tokio::spawn(count_frontend(client_read, server_write, counter.clone()));
                tokio::spawn(copy(server_read, client_write));
            }
        });
        Self { port, round_trips }
    }

    pub fn count(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

async fn copy(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
}

/// Relays the client's messages, counting `Sync` ('S') and `Query` ('Q'). The first messages
/// (an optional SSLRequest, then the startup message) carry no type byte.
async fn count_frontend(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: Arc<AtomicU64>,
) -> std::io::Result<()> {
    const SSL_REQUEST: u32 = 80_877_103;
    loop {
        let len = from.read_u32().await?;
        let mut body = vec![0; len as usize - 4];
        from.read_exact(&mut body).await?;
        to.write_u32(len).await?;
        to.write_all(&body).await?;
        if body.len() < 4 || u32::from_be_bytes(body[..4].try_into().unwrap()) != SSL_REQUEST {
            break; // That was the startup message.
        }
    }
    loop {
        let tag = from.read_u8().await?;
        let len = from.read_u32().await?;
        let mut body = vec![0; len as usize - 4];
        from.read_exact(&mut body).await?;
        if matches!(tag, b'S' | b'Q') {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        to.write_u8(tag).await?;
        to.write_u32(len).await?;
        to.write_all(&body).await?;
    }
}

/// What a [`FaultRelay`] does with the bytes of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every byte is carried both ways; new connections are relayed to the server.
    Forward,
    /// Established connections stop carrying bytes, both ways, without being closed (no FIN,
    /// no RST: the sockets stay open and their kernels acknowledge what arrives); new
    /// connections are accepted and never answered. What a client sees of a crashed host or
    /// a partition.
    BlackHole,
    /// New connections are accepted and never answered (a server that accepts and hangs);
    /// established connections keep working.
    SilentAccept,
}

/// A relay to PostgreSQL that can stop carrying bytes and be healed.
pub struct FaultRelay {
    pub port: u16,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicU64>,
}

impl FaultRelay {
    /// Starts relaying `127.0.0.1:port` to `upstream`, forwarding.
    pub async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, _) = watch::channel(Mode::Forward);
        let accepted = Arc::new(AtomicU64::new(0));
        let (modes, counter) = (mode.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let modes = modes.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if *modes.borrow() != Mode::Forward {
                        hold(client).await;
                        return;
                    }
                    let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await
                    else {
                        return;
                    };
                    let (server_read, server_write) = server.into_split();
                    let (client_read, client_write) = client.into_split();
                    tokio::spawn(pump(client_read, server_write, modes.clone()));
                    tokio::spawn(pump(server_read, client_write, modes));
                });
            }
        });
        Self {
            port,
            mode,
            accepted,
        }
    }

    /// Established connections stop carrying bytes, new ones are never answered.
    pub fn black_hole(&self) {
        self.mode.send_replace(Mode::BlackHole);
    }

    /// New connections are accepted and never answered; established ones keep working.
    pub fn accept_silently(&self) {
        self.mode.send_replace(Mode::SilentAccept);
    }

    /// Every byte is carried again: black-holed connections resume with the bytes held back
    /// (as TCP retransmits after a partition heals), new connections reach the server.
    /// Connections accepted while silent stay unanswered.
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// Connections accepted so far, whatever the mode.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads and drops what a client sends on a connection accepted while silent, answering
/// nothing, until the client closes it.
async fn hold(mut client: TcpStream) {
    let mut buf = [0u8; 1024];
    while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// Carries bytes from `from` to `to` while the mode is not [`Mode::BlackHole`]; while it is,
/// holds them (neither reading on nor writing), the sockets left open.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut modes: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if modes
            .wait_for(|mode| *mode != Mode::BlackHole)
            .await
            .is_err()
        {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if modes
            .wait_for(|mode| *mode != Mode::BlackHole)
            .await
            .is_err()
            || to.write_all(&buf[..n]).await.is_err()
        {
            return;
        }
    }
}
