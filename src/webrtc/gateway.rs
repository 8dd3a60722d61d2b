//! [`Gateway`]: the thin tokio driver of one browser call's [`BrowserMedia`], bridging it to plain
//! RTP on loopback so the call task can treat the browser like a trunk caller.
//!
//! It owns two UDP sockets and one task:
//! * the **browser socket**, on `bind_ip` with a port from the shared RTP pool: the ICE host
//!   candidate (and, behind a 1:1 NAT, the same port on `public_ip`). Every datagram on it goes to `str0m`, which authenticates it (STUN
//!   integrity, DTLS, SRTP) or drops it;
//! * the **RTP socket**, on 127.0.0.1: plain RTP with the call task. We send the browser's audio
//!   as PCMA (PT 8, 8 kHz, 20 ms, our own random SSRC, sequence and timestamp) to the peer set with
//!   [`Gateway::set_rtp_peer`], and take PCMA or PCMU (by payload type) from that address only —
//!   RFC 4733 events, comfort noise, RTCP and anything from elsewhere are dropped.
//!
//! The task reads tokio's clock once per loop turn, feeds [`BrowserMedia`] and sends what it
//! says. It ends — dropping both sockets and the port lease — when the media ends (see
//! [`CloseReason`]), on [`Gateway::close`], or when the [`Gateway`] handle is dropped; the last
//! event is always [`GatewayEvent::Closed`] (then the channel closes). Queues are bounded: the
//! events (a slot is always kept for `Closed`), the data-channel messages, and the media's own.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sip::rtp::rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::media::{
    AudioCodec, BrowserEvent, BrowserMedia, CloseReason, MediaTimeouts, OfferError, FRAME_SAMPLES,
};
use crate::rtp_ports::{PortLease, SharedPortPool};

/// RTP payload types on the loopback leg (RFC 3551).
const PT_PCMA: u8 = 8;
const PT_PCMU: u8 = 0;
/// Events waiting for the call path; one slot is kept for the final `Closed`.
const EVENT_QUEUE: usize = 32;
/// Data-channel messages waiting to be sent.
const DATA_QUEUE: usize = 16;
/// Tries at a port from the pool that another process may hold.
const BIND_ATTEMPTS: usize = 8;
/// Largest datagram we read (browsers keep to ~1200 bytes; G.711 packets are 172).
const MAX_DATAGRAM: usize = 2048;

/// Where the gateway listens.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Address of the browser socket, and its ICE host candidate unless unspecified.
    pub bind_ip: IpAddr,
    /// The server's public address behind a 1:1 NAT: a second host candidate (the only one when
    /// `bind_ip` is unspecified), same port.
    pub public_ip: Option<IpAddr>,
    /// The shared RTP port pool: the browser socket's port comes from it.
    pub ports: SharedPortPool,
}

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The offer was refused (safe to show the browser).
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// `bind_ip` is unspecified and there is no `public_ip`: nothing to put in a candidate.
    #[error("no address to offer the browser: bind_ip is unspecified and public_ip is not set")]
    NoAddress,
    /// No socket could be bound.
    #[error("could not bind a UDP socket: {0}")]
    Bind(String),
}

impl GatewayError {
    /// Whether the browser's offer was at fault (answer 4xx with [`GatewayError`]'s text), not
    /// the server (5xx).
    pub fn is_offer(&self) -> bool {
        matches!(self, GatewayError::Offer(_))
    }
}

/// What the gateway tells the call path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// ICE and DTLS are up; audio flows.
    Connected,
    /// A text message from the browser's data channel.
    Data(String),
    /// The gateway ended (last event; the channel closes after it).
    Closed {
        /// Why, for the log ([`CloseReason`]'s text).
        reason: String,
    },
}

/// A running gateway. Dropping it ends the call's media like [`Gateway::close`].
#[derive(Debug)]
pub struct Gateway {
    /// Connected, data-channel messages, and finally Closed.
    pub events: mpsc::Receiver<GatewayEvent>,
    rtp_addr: SocketAddr,
    browser_addr: SocketAddr,
    codec: AudioCodec,
    peer: watch::Sender<Option<SocketAddr>>,
    closing: watch::Sender<bool>,
    data: mpsc::Sender<String>,
    task: JoinHandle<()>,
}

impl Gateway {
    /// Binds the sockets, answers `offer_sdp` and starts the task (on the current tokio runtime)
    /// with the default [`MediaTimeouts`]. Returns the SDP answer for the browser.
    pub async fn start(
        offer_sdp: &str,
        config: &GatewayConfig,
    ) -> Result<(Gateway, String), GatewayError> {
        Self::start_with(offer_sdp, config, MediaTimeouts::default()).await
    }

    /// [`Gateway::start`] with other timeouts.
    pub async fn start_with(
        offer_sdp: &str,
        config: &GatewayConfig,
        timeouts: MediaTimeouts,
    ) -> Result<(Gateway, String), GatewayError> {
        if config.bind_ip.is_unspecified() && config.public_ip.is_none() {
            return Err(GatewayError::NoAddress);
        }
        let (browser, lease) = bind_browser_socket(config).await?;
        let local = browser
            .local_addr()
            .map_err(|e| GatewayError::Bind(e.to_string()))?;
        let mut candidates = Vec::with_capacity(2);
        if !config.bind_ip.is_unspecified() {
            candidates.push(local);
        }
        if let Some(public) = config.public_ip {
            candidates.push(SocketAddr::new(public, local.port()));
        }
        // Datagrams are handed to `str0m` as sent to the first candidate: the socket's own
        // address, or the public one when the socket listens on every address.
        let Some(&destination) = candidates.first() else {
            return Err(GatewayError::NoAddress);
        };
        let (media, answer) = BrowserMedia::accept_with(offer_sdp, &candidates, now(), timeouts)?;
        let rtp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| GatewayError::Bind(e.to_string()))?;
        let rtp_addr = rtp
            .local_addr()
            .map_err(|e| GatewayError::Bind(e.to_string()))?;

        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (peer, peer_rx) = watch::channel(None);
        let (closing, closing_rx) = watch::channel(false);
        let (data, data_rx) = mpsc::channel(DATA_QUEUE);
        let codec = media.codec();
        let task = Task {
            media,
            browser,
            destination,
            rtp,
            peer: None,
            rtp_out: RtpOut::new(),
            events: events_tx,
            peer_rx,
            closing_rx,
            data_rx,
            unsent: VecDeque::new(),
            hung_up: false,
            _lease: lease,
        };
        let task = tokio::spawn(task.run());
        tracing::debug!(codec = codec.name(), "webrtc: gateway started");
        Ok((
            Gateway {
                events,
                rtp_addr,
                browser_addr: local,
                codec,
                peer,
                closing,
                data,
                task,
            },
            answer,
        ))
    }

    /// The loopback address the call task sends RTP to.
    pub fn rtp_addr(&self) -> SocketAddr {
        self.rtp_addr
    }

    /// The browser socket's local address (the host candidate's port).
    pub fn browser_addr(&self) -> SocketAddr {
        self.browser_addr
    }

    /// The codec the browser hears (see [`BrowserMedia::codec`]).
    pub fn codec(&self) -> AudioCodec {
        self.codec
    }

    /// Where the call task's RTP socket is: the browser's audio goes there, and RTP is taken from
    /// there only (until set, RTP on [`Gateway::rtp_addr`] is dropped). May change mid-call.
    pub fn set_rtp_peer(&self, peer: SocketAddr) {
        self.peer.send_replace(Some(peer));
    }

    /// Queues a text message for the browser's data channel. `false` when the queue is full or
    /// the gateway ended; a message that cannot be delivered (no channel open) is dropped.
    pub fn send_data(&self, text: String) -> bool {
        self.data.try_send(text).is_ok()
    }

    /// A handle that queues data-channel messages as [`Gateway::send_data`] does, for a task
    /// beside the call's (the agent's requests during the call); it outlives nothing: once the
    /// gateway ended, [`DataSender::closed`] returns and sending fails.
    pub fn data_sender(&self) -> DataSender {
        DataSender(self.data.clone())
    }

    /// Hangs up: the browser gets DTLS close_notify, the task ends, and
    /// [`GatewayEvent::Closed`] with [`CloseReason::Hangup`] follows.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Whether the task has ended (sockets closed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Queues text messages for one gateway's data channel ([`Gateway::data_sender`]).
#[derive(Debug, Clone)]
pub struct DataSender(mpsc::Sender<String>);

impl DataSender {
    /// As [`Gateway::send_data`].
    pub fn send(&self, text: String) -> bool {
        self.0.try_send(text).is_ok()
    }

    /// Returns once the gateway has ended.
    pub async fn closed(&self) {
        self.0.closed().await
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn bind_browser_socket(
    config: &GatewayConfig,
) -> Result<(UdpSocket, PortLease), GatewayError> {
    let pool = &config.ports;
    let mut last = String::from("no attempt");
    for _ in 0..BIND_ATTEMPTS.min(pool.capacity().max(1)) {
        let lease = pool
            .allocate()
            .map_err(|e| GatewayError::Bind(e.to_string()))?;
        match UdpSocket::bind((config.bind_ip, lease.rtp_port())).await {
            Ok(socket) => return Ok((socket, lease)),
            Err(e) => {
                last = format!("port {}: {e}", lease.rtp_port());
                lease.taken_elsewhere();
            }
        }
    }
    Err(GatewayError::Bind(last))
}

/// The gateway's task: owns the sockets, the media and the lease.
struct Task {
    media: BrowserMedia,
    browser: UdpSocket,
    /// What datagrams on the browser socket are handed to `str0m` as sent to.
    destination: SocketAddr,
    rtp: UdpSocket,
    peer: Option<SocketAddr>,
    rtp_out: RtpOut,
    events: mpsc::Sender<GatewayEvent>,
    peer_rx: watch::Receiver<Option<SocketAddr>>,
    closing_rx: watch::Receiver<bool>,
    data_rx: mpsc::Receiver<String>,
    /// Messages the media could not send yet (the browser's data channel is not open yet: an
    /// agent may ask for more before ICE and DTLS are up); retried each turn, the oldest dropped
    /// beyond [`DATA_QUEUE`].
    unsent: VecDeque<String>,
    /// The handle closed or went away: its channels are not read any more (a closed watch
    /// channel would wake the loop at once, every turn, while the media says its goodbye).
    hung_up: bool,
    _lease: PortLease,
}

impl Task {
    async fn run(mut self) {
        let mut from_browser = vec![0u8; MAX_DATAGRAM];
        let mut from_peer = vec![0u8; MAX_DATAGRAM];
        loop {
            if let Some(reason) = self.flush().await {
                self.finish(reason);
                return;
            }
            if self.send_unsent() {
                continue;
            }
            let deadline = self.media.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = self.browser.recv_from(&mut from_browser) => {
                    let now = now();
                    match received {
                        Ok((n, source)) => {
                            let bytes = &from_browser[..n];
                            self.media.handle_datagram(now, source, self.destination, bytes);
                        }
                        Err(e) if transient(&e) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "webrtc: browser socket failed");
                            self.finish(CloseReason::Failed);
                            return;
                        }
                    }
                }
                received = self.rtp.recv_from(&mut from_peer) => {
                    let now = now();
                    match received {
                        Ok((n, source)) => {
                            if Some(source) == self.peer {
                                self.rtp_from_call(now, &from_peer[..n]);
                            }
                        }
                        Err(e) if transient(&e) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "webrtc: RTP socket failed");
                            self.finish(CloseReason::Failed);
                            return;
                        }
                    }
                }
                () = sleep => self.media.handle_timeout(now()),
                changed = self.peer_rx.changed(), if !self.hung_up => match changed {
                    Ok(()) => self.peer = *self.peer_rx.borrow_and_update(),
                    // The handle is gone.
                    Err(_) => {
                        self.hung_up = true;
                        self.media.handle_timeout(now());
                        self.media.close();
                    }
                },
                changed = self.closing_rx.changed(), if !self.hung_up => {
                    if changed.is_err() || *self.closing_rx.borrow_and_update() {
                        self.hung_up = true;
                        // What the call said last (the page's "ended") goes out before the close.
                        while let Ok(text) = self.data_rx.try_recv() {
                            self.unsent.push_back(text);
                        }
                        self.send_unsent();
                        self.media.handle_timeout(now());
                        self.media.close();
                    }
                }
                Some(text) = self.data_rx.recv(), if !self.hung_up => {
                    self.unsent.push_back(text);
                    if self.unsent.len() > DATA_QUEUE {
                        self.unsent.pop_front();
                        tracing::debug!("webrtc: data-channel message dropped (channel not open)");
                    }
                }
            }
        }
    }

    /// Hands the media the messages it can take now, in order. Whether any went (its packets
    /// are to be flushed).
    fn send_unsent(&mut self) -> bool {
        let mut sent = false;
        while let Some(text) = self.unsent.front() {
            if !self.media.send_data(text) {
                break;
            }
            self.unsent.pop_front();
            sent = true;
        }
        sent
    }

    /// Sends what the media has for the browser and acts on its events; the close reason once
    /// it ended.
    async fn flush(&mut self) -> Option<CloseReason> {
        while let Some(t) = self.media.poll_transmit() {
            if let Err(e) = self.browser.send_to(&t.bytes, t.to).await {
                tracing::debug!(error = %e, "webrtc: send to browser failed");
            }
        }
        let now = now();
        let mut closed = None;
        while let Some(event) = self.media.poll_event() {
            match event {
                BrowserEvent::Connected => self.emit(GatewayEvent::Connected),
                BrowserEvent::Audio(pcm) => self.rtp_to_call(now, &pcm).await,
                BrowserEvent::Data(text) => self.emit(GatewayEvent::Data(text)),
                BrowserEvent::Closed { reason } => closed = Some(reason),
            }
        }
        closed
    }

    /// RTP from the call task: G.711 by payload type to the browser; anything else is dropped.
    fn rtp_from_call(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(packet) = RtpReader::new(bytes) else {
            return;
        };
        let payload = packet.payload();
        let mut pcm = [0i16; MAX_DATAGRAM];
        let n = match packet.payload_type() {
            PT_PCMA => dsp::g711::decode_alaw_into(payload, &mut pcm),
            PT_PCMU => dsp::g711::decode_ulaw_into(payload, &mut pcm),
            _ => return,
        };
        self.media.send_audio(now, &pcm[..n]);
    }

    /// The browser's audio to the call task as PCMA RTP.
    async fn rtp_to_call(&mut self, now: Instant, pcm: &[i16]) {
        let Some(peer) = self.peer else {
            return;
        };
        let mut payload = [0u8; FRAME_SAMPLES];
        let n = dsp::g711::encode_alaw_into(pcm, &mut payload);
        let mut packet = [0u8; 12 + FRAME_SAMPLES];
        let Some(len) = self.rtp_out.build(now, &payload[..n], &mut packet) else {
            return;
        };
        if let Err(e) = self.rtp.send_to(&packet[..len], peer).await {
            tracing::debug!(error = %e, "webrtc: send to call task failed");
        }
    }

    /// Queues an event unless only the slot kept for `Closed` is left (the call path is not
    /// reading: dropping a data message beats blocking the media).
    fn emit(&self, event: GatewayEvent) {
        if self.events.capacity() > 1 {
            let _ = self.events.try_send(event);
        } else {
            tracing::warn!("webrtc: gateway event queue full, event dropped");
        }
    }

    fn finish(self, reason: CloseReason) {
        tracing::debug!(%reason, "webrtc: gateway ended");
        let reason = reason.to_string();
        let _ = self.events.try_send(GatewayEvent::Closed { reason });
    }
}

/// Errors a UDP socket reports for an earlier send (ICMP unreachable) or an interrupted read.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Our outgoing RTP stream toward the call task: random SSRC, sequence and timestamp (RFC 3550
/// §5.1); consecutive 20 ms frames are 160 apart; after a pause of more than two frames the
/// timestamp follows the clock and the marker starts a talkspurt (RFC 3551 §4.1).
#[derive(Debug)]
struct RtpOut {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    last: Option<Instant>,
}

impl RtpOut {
    fn new() -> RtpOut {
        RtpOut {
            ssrc: rand::random(),
            seq: rand::random(),
            timestamp: rand::random(),
            last: None,
        }
    }

    fn build(&mut self, now: Instant, payload: &[u8], out: &mut [u8]) -> Option<usize> {
        let frame = FRAME_SAMPLES as u32;
        let marker = match self.last {
            None => true,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last);
                if elapsed > Duration::from_millis(60) {
                    let samples = (elapsed.as_micros() / 125).min(u128::from(u32::MAX)) as u32;
                    self.timestamp = self
                        .timestamp
                        .wrapping_add((samples / frame).max(1).wrapping_mul(frame));
                    true
                } else {
                    self.timestamp = self.timestamp.wrapping_add(frame);
                    false
                }
            }
        };
        self.last = Some(now);
        let len = RtpPacketBuilder::new()
            .payload_type(PT_PCMA)
            .ssrc(self.ssrc)
            .sequence(Seq::from(self.seq))
            .timestamp(self.timestamp)
            .marked(marker)
            .payload(payload)
            .build_into(out)
            .ok()?;
        self.seq = self.seq.wrapping_add(1);
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_out_counts_frames_and_marks_talkspurts() {
        let mut out = RtpOut::new();
        let t0 = Instant::now();
        let mut buf = [0u8; 12 + FRAME_SAMPLES];
        let mut read = |out: &mut RtpOut, at: Instant| {
            let len = out
                .build(at, &[0xd5; FRAME_SAMPLES], &mut buf)
                .expect("fits");
            let p = RtpReader::new(&buf[..len]).expect("parses");
            (
                p.payload_type(),
                u16::from(p.sequence_number()),
                p.timestamp(),
                p.mark(),
                p.ssrc(),
            )
        };
        let (pt, seq0, ts0, m0, ssrc) = read(&mut out, t0);
        assert_eq!((pt, m0), (PT_PCMA, true));
        let (_, seq1, ts1, m1, ssrc1) = read(&mut out, t0 + Duration::from_millis(20));
        assert_eq!(
            (seq1, ts1, m1, ssrc1),
            (seq0.wrapping_add(1), ts0.wrapping_add(160), false, ssrc)
        );
        // A second of silence: the timestamp follows the clock.
        let (_, seq2, ts2, m2, _) = read(&mut out, t0 + Duration::from_millis(1020));
        assert_eq!(
            (seq2, ts2, m2),
            (seq0.wrapping_add(2), ts1.wrapping_add(8000), true)
        );
    }

    fn pool() -> SharedPortPool {
        let key = sip::random::RandomKey::from_bytes([9; 32]);
        SharedPortPool::new(42000, 42099, &key).expect("range")
    }

    #[tokio::test]
    async fn unspecified_address_without_public_ip_is_refused() {
        let ports = pool();
        let config = GatewayConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            public_ip: None,
            ports: ports.clone(),
        };
        let free = ports.available();
        let err = Gateway::start("v=0\r\n", &config)
            .await
            .expect_err("refused");
        assert!(matches!(err, GatewayError::NoAddress), "{err}");
        assert!(!err.is_offer());
        assert_eq!(ports.available(), free, "the port went back");
    }

    #[tokio::test]
    async fn refused_offer_releases_the_port() {
        let ports = pool();
        let config = GatewayConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            public_ip: None,
            ports: ports.clone(),
        };
        let free = ports.available();
        let err = Gateway::start("not sdp", &config)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, GatewayError::Offer(OfferError::Invalid(_))),
            "{err}"
        );
        assert!(err.is_offer());
        assert_eq!(ports.available(), free);
    }
}
