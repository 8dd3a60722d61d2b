//! Sockets for SIP (RFC 3261 §18): UDP sockets, TCP and TLS listeners and their connections. The
//! only place in the application that reads or writes SIP bytes on the network.
//!
//! Every socket and connection runs in its own task and hands what it reads to the driver loop
//! over one channel ([`NetInput`]); the loop answers through [`UdpSocket::send_to`] or the
//! connection's outgoing channel. Streams are cut into messages by the sans-IO
//! [`StreamFramer`]; a framing error (RFC 4475 ncl, mcl01) passes the unframed bytes up once, so the
//! loop can answer 400, and then closes the connection after a short linger. Connections are
//! limited in number, in all ([`StreamLimits::max_connections`]) and per remote address except the
//! trunks' ([`StreamLimits::max_connections_per_address`]; the counting is [`admission`]'s), so a
//! slowloris from one address cannot lock out the agents' phones. An accepted connection that has
//! not sent a complete message within [`StreamLimits::first_message_timeout`] (TLS handshake
//! included) is closed; one that has is closed after [`StreamLimits::idle_timeout`] without
//! traffic (which also ends a stream that announced more body than it sends, RFC 4475 clerr).

mod admission;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sip::message::framer::{Frame, StreamFramer};
use sip::transaction::Transport;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use admission::{Admission, Ticket};

/// Longest TLS handshake of an accepted connection (a trunk's too).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Most TCP+TLS connections open at once with one remote address (in and out; an IPv6
    /// address counts by its /64); more are refused at accept. The trunks are exempt: only
    /// `max_connections` bounds them.
    pub max_connections_per_address: usize,
    /// An accepted connection (not a trunk's) that has not sent a complete SIP message this long
    /// after it was accepted (TLS handshake included) is closed. Keep-alives do not count.
    pub first_message_timeout: Duration,
    /// A connection without traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Largest header section accepted on a stream.
    pub max_head: usize,
    /// Largest body accepted on a stream.
    pub max_body: usize,
}

impl Default for StreamLimits {
    /// 1024 connections, 32 per address, 20 seconds to the first message, 10 minutes idle (phones
    /// refresh registrations well within that), 16 KiB heads, 64 KiB bodies.
    fn default() -> Self {
        StreamLimits {
            max_connections: 1024,
            max_connections_per_address: 32,
            first_message_timeout: Duration::from_secs(20),
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
    admission: Arc<Mutex<Admission>>,
    limits: StreamLimits,
    input: mpsc::Sender<NetInput>,
}

/// An admitted connection's place in the budget, given back when its task ends.
struct Slot {
    admission: Arc<Mutex<Admission>>,
    ticket: Option<Ticket>,
}

impl Slot {
    fn is_trunk(&self) -> bool {
        self.ticket.as_ref().is_some_and(Ticket::is_trunk)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            lock(&self.admission).release(ticket);
        }
    }
}

// The counting holds no invariant a panic elsewhere could break halfway.
use crate::sync::lock;

impl Streams {
    /// Streams within `limits`; connections with `trunks` are exempt from the per-address limit
    /// and the first-message timeout.
    pub fn new(
        limits: StreamLimits,
        trunks: Vec<ipnet::IpNet>,
        input: mpsc::Sender<NetInput>,
    ) -> Self {
        let admission = Admission::new(
            limits.max_connections,
            limits.max_connections_per_address,
            trunks,
        );
        Streams {
            ids: Arc::new(AtomicU64::new(1)),
            admission: Arc::new(Mutex::new(admission)),
            limits,
            input,
        }
    }

    /// A place in the budget for a connection with `remote`, or `None` after counting the refusal
    /// and (at most every [`admission::WARN_INTERVAL`]) warning about it.
    fn admit(&self, remote: SocketAddr, outgoing: bool) -> Option<Slot> {
        let now = Instant::now().into_std();
        let (refused, open, open_from_remote) = {
            let mut admission = lock(&self.admission);
            match admission.admit(now, remote.ip()) {
                Ok(ticket) => {
                    return Some(Slot {
                        admission: self.admission.clone(),
                        ticket: Some(ticket),
                    })
                }
                Err(refused) => (refused, admission.open(), admission.open_from(remote.ip())),
            }
        };
        let limit = refused.limit.as_str();
        crate::metrics::global().sip_connection_refused(limit);
        match refused.warn {
            Some(count) => tracing::warn!(
                %remote,
                limit,
                outgoing,
                open,
                open_from_remote,
                refused_since_last_warning = count,
                "TCP/TLS connection limit reached; refusing connections"
            ),
            None => tracing::debug!(%remote, limit, outgoing, "connection refused"),
        }
        None
    }

    /// Opens an outgoing TCP connection to `remote` and sends `first` on it (RFC 3261 §18.1.1:
    /// a request to a contact whose connection is gone).
    pub fn connect(&self, tasks: &mut JoinSet<()>, remote: SocketAddr, first: Bytes) {
        let Some(slot) = self.admit(remote, true) else {
            let _ = self.input.try_send(NetInput::ConnectFailed { remote });
            return;
        };
        let this = self.clone();
        tasks.spawn(async move {
            let _slot = slot;
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
            this.run_connection(stream, Transport::Tcp, local, remote, Some(first), None)
                .await;
        });
    }

    /// Runs one connection until it ends. `first`: bytes to send at once (an outgoing
    /// connection's request). `first_message_by`: when the peer's first complete message must have
    /// arrived (`None`: no such limit, only the idle timeout).
    async fn run_connection<S>(
        &self,
        stream: S,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
        first: Option<Bytes>,
        mut first_message_by: Option<Instant>,
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
            let idle_at = Instant::now() + idle;
            let wake = first_message_by.map_or(idle_at, |by| by.min(idle_at));
            tokio::select! {
                r = tokio::time::timeout_at(wake, rd.read(&mut buf)) => {
                    let n = match r {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Err(_) if first_message_by.is_some_and(|by| by <= idle_at) => {
                            tracing::debug!(%remote, "closing a connection that sent no message in time");
                            crate::metrics::global().sip_connections_closed_silent.inc();
                            break;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "closing idle connection");
                            break;
                        }
                        Ok(Ok(n)) => n,
                    };
                    let data = buf.get(..n).unwrap_or_default();
                    framer.push(data);
                    unframed.extend_from_slice(data);
                    match self.drain_frames(&mut framer, &mut unframed, conn, transport, local, remote).await {
                        None => {
                            failed = true;
                            break;
                        }
                        Some(0) => {}
                        Some(_) => first_message_by = None,
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

    /// Pops every complete frame and passes it up. How many were messages (not keep-alives);
    /// `None` after a framing error (the connection must close).
    async fn drain_frames(
        &self,
        framer: &mut StreamFramer,
        unframed: &mut BytesMut,
        conn: ConnId,
        transport: Transport,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<usize> {
        let mut messages = 0;
        loop {
            let input = match framer.pop() {
                Ok(None) => break,
                Ok(Some(Frame::KeepAlive)) => NetInput::KeepAlive { conn },
                Ok(Some(Frame::Message(bytes))) => {
                    messages += 1;
                    NetInput::Packet {
                        transport,
                        local,
                        remote,
                        conn: Some(conn),
                        bytes,
                        framing_error: false,
                    }
                }
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
                    return None;
                }
            };
            if self.input.send(input).await.is_err() {
                return None;
            }
        }
        // Keep only what the framer still holds.
        let keep = framer.buffered();
        let drop = unframed.len().saturating_sub(keep);
        let _ = unframed.split_to(drop);
        Some(messages)
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
                let accepted_at = Instant::now();
                let Some(slot) = streams.admit(remote, false) else {
                    drop(stream);
                    continue;
                };
                let Ok(local) = stream.local_addr() else { continue };
                let _ = stream.set_nodelay(true);
                let first_by = (!slot.is_trunk())
                    .then(|| accepted_at + streams.limits.first_message_timeout);
                let streams = streams.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    match tls {
                        None => streams.run_connection(stream, transport, local, remote, None, first_by).await,
                        Some(acceptor) => {
                            let limit = accepted_at + TLS_HANDSHAKE_TIMEOUT;
                            let hs_by = first_by.map_or(limit, |by| by.min(limit));
                            match tokio::time::timeout_at(hs_by, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => streams.run_connection(s, transport, local, remote, None, first_by).await,
                                Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake failed"),
                                Err(_) => {
                                    tracing::debug!(%remote, "TLS handshake timed out");
                                    if first_by.is_some() {
                                        crate::metrics::global().sip_connections_closed_silent.inc();
                                    }
                                }
                            }
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
