//! Sockets for SIP (RFC 3261 §18): UDP sockets, TCP and TLS listeners and their connections. The
//! only place in the application that reads or writes SIP bytes on the network.
//!
//! Every socket and connection runs in its own task and hands what it reads to the driver loop
//! over one channel ([`NetInput`]); the loop answers through [`UdpSocket::send_to`] or the
//! connection's outgoing channel. Streams are cut into messages by the sans-IO
//! [`StreamFramer`]; a framing error (RFC 4475 ncl, mcl01) passes the unframed bytes up once, so the
//! loop can answer 400, and then closes the connection after a short linger. Connections are
//! limited in number ([`StreamLimits::max_connections`]) and closed after
//! [`StreamLimits::idle_timeout`] without traffic (which also ends a stream that announced more
//! body than it sends, RFC 4475 clerr).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sip::message::framer::{Frame, StreamFramer};
use sip::transaction::Transport;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Identifies one TCP or TLS connection for the lifetime of the driver.
pub type ConnId = u64;

/// What the socket tasks tell the driver loop.
#[derive(Debug)]
pub enum NetInput {
    /// One datagram, or one framed message from a stream.
    Packet {
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
        conn: Option<ConnId>,
        bytes: Bytes,
        /// The stream could not be framed; these are the unframed bytes. Answer if possible; the
        /// connection is closing.
        framing_error: bool,
    },
    /// A double-CRLF keep-alive arrived on a stream; answer with CRLF.
    KeepAlive { conn: ConnId },
    /// A connection is up; send on it through `tx`.
    Opened {
        conn: ConnId,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
        tx: mpsc::Sender<Bytes>,
    },
    /// A connection is gone.
    Closed { conn: ConnId },
    /// An outgoing connection could not be opened.
    ConnectFailed { remote: SocketAddr },
}

/// Bounds on stream transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Most TCP+TLS connections open at once (in and out); more are refused at accept.
    pub max_connections: usize,
    /// A connection without traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Largest header section accepted on a stream.
    pub max_head: usize,
    /// Largest body accepted on a stream.
    pub max_body: usize,
}

impl Default for StreamLimits {
    /// 1024 connections, 10 minutes idle (phones refresh registrations well within that),
    /// 16 KiB heads, 64 KiB bodies.
    fn default() -> Self {
        StreamLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(600),
            max_head: 16 * 1024,
            max_body: 64 * 1024,
        }
    }
}

/// Shared state of the stream side: connection ids and the connection budget.
#[derive(Debug, Clone)]
pub struct Streams {
    ids: Arc<AtomicU64>,
    permits: Arc<Semaphore>,
    limits: StreamLimits,
    input: mpsc::Sender<NetInput>,
}

impl Streams {
    pub fn new(limits: StreamLimits, input: mpsc::Sender<NetInput>) -> Self {
        Streams {
            ids: Arc::new(AtomicU64::new(1)),
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            input,
        }
    }

    /// Opens an outgoing TCP connection to `remote` and sends `first` on it (RFC 3261 §18.1.1:
    /// a request to a contact whose connection is gone).
    pub fn connect(&self, tasks: &mut JoinSet<()>, remote: SocketAddr, first: Bytes) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "connection limit reached; not connecting");
            let _ = self.input.try_send(NetInput::ConnectFailed { remote });
            return;
        };
        let this = self.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let connect = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(remote));
            let stream = match connect.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%remote, error = %e, "TCP connect failed");
                    let _ = this.input.send(NetInput::ConnectFailed { remote }).await;
                    return;
                }
                Err(_) => {
                    tracing::info!(%remote, "TCP connect timed out");
                    let _ = this.input.send(NetInput::ConnectFailed { remote }).await;
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else {
                return;
            };
            this.run_connection(stream, Transport::Tcp, local, remote, Some(first))
                .await;
        });
    }

    async fn run_connection<S>(
        &self,
        stream: S,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
        first: Option<Bytes>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let conn = self.ids.fetch_add(1, Ordering::Relaxed);
        let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(64);
        let opened = NetInput::Opened {
            conn,
            transport,
            local,
            remote,
            tx: out_tx,
        };
        if self.input.send(opened).await.is_err() {
            return;
        }
        let (mut rd, mut wr) = tokio::io::split(stream);
        if let Some(first) = first {
            if wr.write_all(&first).await.is_err() {
                let _ = self.input.send(NetInput::Closed { conn }).await;
                return;
            }
        }
        let mut framer = StreamFramer::with_limits(self.limits.max_head, self.limits.max_body);
        // The bytes the framer holds, kept so a framing error can still be answered.
        let mut unframed = BytesMut::new();
        let mut buf = vec![0u8; 16 * 1024];
        let idle = self.limits.idle_timeout;
        let mut failed = false;
        loop {
            tokio::select! {
                r = tokio::time::timeout(idle, rd.read(&mut buf)) => {
                    let n = match r {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Err(_) => {
                            tracing::debug!(%remote, "closing idle connection");
                            break;
                        }
                        Ok(Ok(n)) => n,
                    };
                    let data = buf.get(..n).unwrap_or_default();
                    framer.push(data);
                    unframed.extend_from_slice(data);
                    if !self.drain_frames(&mut framer, &mut unframed, conn, transport, local, remote).await {
                        failed = true;
                        break;
                    }
                }
                out = out_rx.recv() => match out {
                    Some(bytes) => {
                        if wr.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
        if failed {
            // Give the loop a moment to answer the bad message, then close.
            let linger = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(linger);
            loop {
                tokio::select! {
                    _ = &mut linger => break,
                    out = out_rx.recv() => match out {
                        Some(bytes) => {
                            if wr.write_all(&bytes).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        }
        let _ = wr.shutdown().await;
        let _ = self.input.send(NetInput::Closed { conn }).await;
    }

    /// Pops every complete frame. `false` after a framing error (the connection must close).
    async fn drain_frames(
        &self,
        framer: &mut StreamFramer,
        unframed: &mut BytesMut,
        conn: ConnId,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        loop {
            let input = match framer.pop() {
                Ok(None) => break,
                Ok(Some(Frame::KeepAlive)) => NetInput::KeepAlive { conn },
                Ok(Some(Frame::Message(bytes))) => NetInput::Packet {
                    transport,
                    local,
                    remote,
                    conn: Some(conn),
                    bytes,
                    framing_error: false,
                },
                Err(e) => {
                    tracing::info!(%remote, error = %e, "stream framing error; closing");
                    let bytes = std::mem::take(unframed).freeze();
                    let _ = self
                        .input
                        .send(NetInput::Packet {
                            transport,
                            local,
                            remote,
                            conn: Some(conn),
                            bytes,
                            framing_error: true,
                        })
                        .await;
                    return false;
                }
            };
            if self.input.send(input).await.is_err() {
                return false;
            }
        }
        // Keep only what the framer still holds.
        let keep = framer.buffered();
        let drop = unframed.len().saturating_sub(keep);
        let _ = unframed.split_to(drop);
        true
    }
}

/// Reads datagrams from `sock` until the task is aborted.
pub async fn udp_reader(sock: Arc<UdpSocket>, local: SocketAddr, input: mpsc::Sender<NetInput>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, remote)) => {
                let bytes = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                let packet = NetInput::Packet {
                    transport: Transport::Udp,
                    local,
                    remote,
                    conn: None,
                    bytes,
                    framing_error: false,
                };
                // A full queue means overload: drop the datagram (the sender retransmits).
                match input.try_send(packet) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(%local, "SIP input queue full; datagram dropped");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            Err(e) => {
                // E.g. ICMP errors surfacing on Linux; keep serving, but never spin.
                tracing::debug!(%local, error = %e, "UDP receive error");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Accepts TCP (or, with `tls`, TLS) connections on `listener` until the task is aborted; the
/// connection tasks end with it.
pub async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, streams: Streams) {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(permit) = streams.permits.clone().try_acquire_owned() else {
                    tracing::warn!(%remote, "connection limit reached; refusing");
                    drop(stream);
                    continue;
                };
                let Ok(local) = stream.local_addr() else { continue };
                let _ = stream.set_nodelay(true);
                let streams = streams.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    match tls {
                        None => streams.run_connection(stream, transport, local, remote, None).await,
                        Some(acceptor) => {
                            let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                            match hs.await {
                                Ok(Ok(s)) => streams.run_connection(s, transport, local, remote, None).await,
                                Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                            }
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
