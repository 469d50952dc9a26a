//! A TCP relay between a client and PostgreSQL that counts round trips on the wire: the
//! client's `Sync` (extended protocol) and `Query` (simple protocol) messages, after each of
//! which the client waits for the server. Shared by tests/round_trips.rs and the benchmark.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
