//! Faults between a client and the local broker: a TCP proxy on 127.0.0.1 that passes
//! Kafka's frames both ways and, when armed, loses the broker's answer to a `Produce`
//! request: the broker has written the batch, the client never hears so, and its
//! connection closes, as when a broker restarts or a network path fails mid-request.
//!
//! The broker's `PROXIED` listener (`scripts/stack.sh`: 127.0.0.1:9095) advertises the
//! proxy's address, 127.0.0.1:9099, so that a client bootstrapped through the proxy keeps
//! using it for every request.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where the proxy listens: the broker's `PROXIED` listener advertises it.
pub const PROXY: &str = "127.0.0.1:9099";
/// The broker's listener behind the proxy.
pub const PROXIED_LISTENER: &str = "127.0.0.1:9095";

/// The API key of `Produce`.
const PRODUCE: i16 = 0;

/// A running proxy; stops when dropped.
pub struct ResponseDropper {
    armed: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ResponseDropper {
    /// Listens on [`PROXY`], forwarding to [`PROXIED_LISTENER`].
    pub async fn start() -> ResponseDropper {
        // A proxy dropped just before may still hold the port: its task is aborted, and
        // the runtime drops the listener a moment later.
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(PROXY).await {
                Ok(listener) => break listener,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the fault proxy cannot listen on {PROXY}: {e} (another test uses it?)"),
            }
        };
        let (armed, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = {
            let (armed, dropped) = (Arc::clone(&armed), Arc::clone(&dropped));
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (armed, dropped) = (Arc::clone(&armed), Arc::clone(&dropped));
                    tokio::spawn(async move {
                        if let Ok(broker) = TcpStream::connect(PROXIED_LISTENER).await {
                            relay(client, broker, armed, dropped).await;
                        }
                    });
                }
            })
        };
        ResponseDropper { armed, dropped, task }
    }

    /// Loses the next `responses` answers to `Produce` requests, one connection each.
    pub fn arm(&self, responses: usize) {
        self.armed.fetch_add(responses, Ordering::SeqCst);
    }

    /// How many answers were lost so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for ResponseDropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One frame: the 4-byte length and the bytes it announces.
async fn read_frame(from: &mut OwnedReadHalf) -> Option<Vec<u8>> {
    let len = from.read_i32().await.ok()?;
    let mut frame = vec![0u8; usize::try_from(len).ok()?];
    from.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

async fn write_frame(to: &mut OwnedWriteHalf, frame: &[u8]) -> Option<()> {
    let len = i32::try_from(frame.len()).ok()?;
    to.write_all(&len.to_be_bytes()).await.ok()?;
    to.write_all(frame).await.ok()
}

async fn relay(client: TcpStream, broker: TcpStream, armed: Arc<AtomicUsize>, dropped: Arc<AtomicUsize>) {
    let _ = (client.set_nodelay(true), broker.set_nodelay(true));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut broker_read, mut broker_write) = broker.into_split();
    // Correlation ids of the Produce requests in flight on this connection.
    let produce_ids = Arc::new(Mutex::new(HashSet::<i32>::new()));
    let requests = {
        let produce_ids = Arc::clone(&produce_ids);
        async move {
            while let Some(frame) = read_frame(&mut client_read).await {
                // Request header: api key (2), version (2), correlation id (4).
                if frame.len() >= 8 && i16::from_be_bytes([frame[0], frame[1]]) == PRODUCE {
                    let id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
                    if let Ok(mut ids) = produce_ids.lock() {
                        ids.insert(id);
                    }
                }
                write_frame(&mut broker_write, &frame).await?;
            }
            Some(())
        }
    };
    let responses = async move {
        while let Some(frame) = read_frame(&mut broker_read).await {
            // Response header: correlation id (4).
            let id = frame.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let is_produce = id.is_some_and(|id| produce_ids.lock().is_ok_and(|mut ids| ids.remove(&id)));
            if is_produce && armed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                dropped.fetch_add(1, Ordering::SeqCst);
                return Some(()); // both halves close: the answer is lost with the connection
            }
            write_frame(&mut client_write, &frame).await?;
        }
        Some(())
    };
    tokio::select! {
        _ = requests => {}
        _ = responses => {}
    }
}
