//! Test support: writes (and reads back) classic libpcap files holding one call's RTP as a phone
//! sends it — PCMA silence every ptime, and for each digit of a code the RFC 4733 packets a phone
//! sends (marker on the start, updates, three end packets, ONE RTP timestamp per digit), audio again
//! between digits. For `sipp ... <exec play_pcap_audio="...">`.
//!
//! Format: libpcap 2.4, microsecond timestamps, little-endian, link type 1 (Ethernet): SIPp 3.6's
//! `prepare_pcap.c` accepts only DLT_EN10MB and DLT_LINUX_SLL, takes the UDP length from the UDP
//! header, rejects truncated records (caplen != len), paces by the record timestamps and rewrites
//! only the UDP ports (relative to the lowest destination port in the file) and checksum.

#![allow(dead_code)] // each integration test uses a different part of this module

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use sip::rfc4733::{packets_for_digit, Digit, SenderConfig};
use sip::rtp::rtp_rs::{RtpPacketBuilder, Seq};

/// PCMA (A-law) encoding of silence.
pub const PCMA_SILENCE: u8 = 0xD5;

/// How the call's RTP looks.
#[derive(Debug, Clone)]
pub struct DtmfPcapConfig {
    /// Source of the packets (SIPp replaces the port with its media port).
    pub src: SocketAddrV4,
    /// Destination (SIPp replaces it with the address from the SDP answer).
    pub dst: SocketAddrV4,
    /// Audio payload type (8 = PCMA).
    pub audio_pt: u8,
    /// telephone-event payload type (must match what the SDP offer says).
    pub event_pt: u8,
    /// Our SSRC.
    pub ssrc: u32,
    /// First sequence number.
    pub initial_seq: u16,
    /// First RTP timestamp.
    pub initial_timestamp: u32,
    /// Audio packet interval.
    pub ptime: Duration,
    /// Silence before the first digit.
    pub lead_in: Duration,
    /// How long each digit is held.
    pub digit_duration: Duration,
    /// Audio between digits.
    pub gap: Duration,
    /// Silence after the last digit.
    pub tail: Duration,
    /// Interval of RFC 4733 update packets.
    pub update_interval: Duration,
}

impl Default for DtmfPcapConfig {
    fn default() -> Self {
        DtmfPcapConfig {
            src: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 6000),
            dst: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 10000),
            audio_pt: 8,
            event_pt: 101,
            ssrc: 0x5EED_CAFE,
            initial_seq: 1000,
            initial_timestamp: 16_000,
            ptime: Duration::from_millis(20),
            lead_in: Duration::from_millis(400),
            digit_duration: Duration::from_millis(120),
            gap: Duration::from_millis(120),
            tail: Duration::from_millis(400),
            update_interval: Duration::from_millis(50),
        }
    }
}

/// One UDP datagram of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapPacket {
    /// Time since the first record.
    pub at: Duration,
    /// UDP source.
    pub src: SocketAddrV4,
    /// UDP destination.
    pub dst: SocketAddrV4,
    /// UDP payload (the RTP packet).
    pub payload: Vec<u8>,
}

/// Builds the RTP datagrams of a call that sends `code` as RFC 4733 digits.
pub fn dtmf_call_rtp(code: &str, cfg: &DtmfPcapConfig) -> io::Result<Vec<PcapPacket>> {
    let digits = code
        .chars()
        .map(|c| {
            Digit::from_char(c).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "code must be 0-9 * # A-D")
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut w = Writer {
        cfg,
        out: Vec::new(),
        seq: cfg.initial_seq,
        talkspurt: true,
    };
    let sender = SenderConfig {
        clock_rate: 8000,
        update_interval: cfg.update_interval,
        volume: 10,
    };
    let mut now = Duration::ZERO;
    now = w.audio(now, cfg.lead_in);
    for (i, digit) in digits.iter().enumerate() {
        let event_ts = w.timestamp_at(now);
        for p in packets_for_digit(*digit, cfg.digit_duration, &sender) {
            let ts = event_ts.wrapping_add(p.timestamp_offset);
            w.push(
                now + p.at,
                cfg.event_pt,
                ts,
                p.marker,
                &p.payload.to_bytes(),
            );
        }
        now += cfg.digit_duration;
        w.talkspurt = true;
        let pause = if i + 1 == digits.len() {
            cfg.tail
        } else {
            cfg.gap
        };
        now = w.audio(now, pause);
    }
    Ok(w.out)
}

/// The same as a pcap file image.
pub fn dtmf_call_pcap(code: &str, cfg: &DtmfPcapConfig) -> io::Result<Vec<u8>> {
    Ok(to_pcap(&dtmf_call_rtp(code, cfg)?))
}

/// Writes the pcap file for `code` to `path`.
pub fn write_dtmf_pcap(path: &Path, code: &str, cfg: &DtmfPcapConfig) -> io::Result<()> {
    std::fs::write(path, dtmf_call_pcap(code, cfg)?)
}

/// Builds the RTP datagrams of a call that sends `alaw` (8 kHz A-law samples, e.g. DTMF tones for
/// in-band detection) as PCMA, one packet per `cfg.ptime`; the last partial frame is padded with
/// silence. Only `src`, `dst`, `audio_pt`, `ssrc`, `initial_seq`, `initial_timestamp` and `ptime`
/// of `cfg` are used.
pub fn pcma_call_rtp(alaw: &[u8], cfg: &DtmfPcapConfig) -> Vec<PcapPacket> {
    let mut w = Writer {
        cfg,
        out: Vec::new(),
        seq: cfg.initial_seq,
        talkspurt: true,
    };
    let frame = (cfg.ptime.as_micros() * 8 / 1000) as usize;
    let mut at = Duration::ZERO;
    for chunk in alaw.chunks(frame.max(1)) {
        let mut payload = chunk.to_vec();
        payload.resize(frame, PCMA_SILENCE);
        let ts = w.timestamp_at(at);
        let marker = std::mem::take(&mut w.talkspurt);
        w.push(at, cfg.audio_pt, ts, marker, &payload);
        at += cfg.ptime;
    }
    w.out
}

/// Merges two packet lists of one RTP stream (e.g. RFC 4733 events and audio sent beside them) in
/// time order and renumbers the RTP sequence from `initial_seq`, as one sender would.
pub fn merge_streams(a: Vec<PcapPacket>, b: Vec<PcapPacket>, initial_seq: u16) -> Vec<PcapPacket> {
    let mut all: Vec<PcapPacket> = a.into_iter().chain(b).collect();
    all.sort_by_key(|p| p.at);
    let mut seq = initial_seq;
    for p in &mut all {
        if let Some(field) = p.payload.get_mut(2..4) {
            field.copy_from_slice(&seq.to_be_bytes());
        }
        seq = seq.wrapping_add(1);
    }
    all
}

/// The RTP payload type of a datagram this module wrote.
pub fn payload_type(p: &PcapPacket) -> Option<u8> {
    p.payload.get(1).map(|b| b & 0x7f)
}

/// Serialises datagrams as Ethernet/IPv4/UDP records of a classic pcap file.
pub fn to_pcap(packets: &[PcapPacket]) -> Vec<u8> {
    const EPOCH_SECS: u64 = 1_700_000_000;
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for (id, p) in packets.iter().enumerate() {
        let frame = ethernet_frame(p, id as u16);
        let secs = EPOCH_SECS + p.at.as_secs();
        out.extend_from_slice(&(secs as u32).to_le_bytes());
        out.extend_from_slice(&p.at.subsec_micros().to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

/// Reads a classic little-endian microsecond pcap with Ethernet/IPv4/UDP records (what
/// [`to_pcap`] writes, and what SIPp's `dtmf_2833_*.pcap` are). Non-UDP records are skipped.
pub fn read_pcap(bytes: &[u8]) -> Result<Vec<PcapPacket>, String> {
    let header = bytes.get(..24).ok_or("no pcap header")?;
    if header[..4] != 0xa1b2_c3d4u32.to_le_bytes() {
        return Err("not a little-endian microsecond pcap".into());
    }
    if header[20..24] != 1u32.to_le_bytes() {
        return Err("link type is not Ethernet".into());
    }
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut rest = &bytes[24..];
    let mut first: Option<Duration> = None;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let rec = rest.get(..16).ok_or("truncated record header")?;
        let at = Duration::from_secs(u64::from(le32(&rec[0..4])))
            + Duration::from_micros(u64::from(le32(&rec[4..8])));
        let incl = le32(&rec[8..12]) as usize;
        if le32(&rec[12..16]) as usize != incl {
            return Err("truncated capture (caplen != len): SIPp refuses those".into());
        }
        let frame = rest.get(16..16 + incl).ok_or("truncated record")?;
        rest = &rest[16 + incl..];
        let base = *first.get_or_insert(at);
        if let Some(p) = parse_frame(frame, at.saturating_sub(base))? {
            out.push(p);
        }
    }
    Ok(out)
}

struct Writer<'a> {
    cfg: &'a DtmfPcapConfig,
    out: Vec<PcapPacket>,
    seq: u16,
    talkspurt: bool,
}

impl Writer<'_> {
    /// PCMA silence from `from` for `length`; returns the end time.
    fn audio(&mut self, from: Duration, length: Duration) -> Duration {
        let samples = (self.cfg.ptime.as_micros() * 8 / 1000) as usize;
        let payload = vec![PCMA_SILENCE; samples];
        let mut t = from;
        while t < from + length {
            let ts = self.timestamp_at(t);
            let marker = std::mem::take(&mut self.talkspurt);
            self.push(t, self.cfg.audio_pt, ts, marker, &payload);
            t += self.cfg.ptime;
        }
        from + length
    }

    /// Media clock: 8 kHz from the start of the capture.
    fn timestamp_at(&self, t: Duration) -> u32 {
        self.cfg
            .initial_timestamp
            .wrapping_add((t.as_micros() * 8 / 1000) as u32)
    }

    fn push(&mut self, at: Duration, pt: u8, ts: u32, marker: bool, payload: &[u8]) {
        let rtp = RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(self.cfg.ssrc)
            .sequence(Seq::from(self.seq))
            .timestamp(ts)
            .marked(marker)
            .payload(payload)
            .build()
            .expect("payload types in DtmfPcapConfig must be 0..=127");
        self.seq = self.seq.wrapping_add(1);
        self.out.push(PcapPacket {
            at,
            src: self.cfg.src,
            dst: self.cfg.dst,
            payload: rtp,
        });
    }
}

fn ethernet_frame(p: &PcapPacket, id: u16) -> Vec<u8> {
    let udp_len = 8 + p.payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC (locally administered)
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&p.src.ip().octets());
    ip[16..20].copy_from_slice(&p.dst.ip().octets());
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&p.src.port().to_be_bytes());
    f.extend_from_slice(&p.dst.port().to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&0u16.to_be_bytes()); // no UDP checksum (IPv4 allows it; SIPp recomputes)
    f.extend_from_slice(&p.payload);
    f
}

fn ipv4_checksum(header: &[u8; 20]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn parse_frame(frame: &[u8], at: Duration) -> Result<Option<PcapPacket>, String> {
    if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
        return Ok(None);
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip.first().ok_or("empty IP")? & 0x0f) * 4;
    if ip.len() < ihl + 8 || ihl < 20 {
        return Err("truncated IPv4/UDP header".into());
    }
    if ip[9] != 17 {
        return Ok(None);
    }
    let header: [u8; 20] = ip[..20].try_into().map_err(|_| "short IPv4 header")?;
    if ihl == 20 && ipv4_checksum(&header) != 0 {
        return Err("bad IPv4 header checksum".into());
    }
    let addr = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
    let udp = &ip[ihl..];
    let port = |o: usize| u16::from_be_bytes([udp[o], udp[o + 1]]);
    let udp_len = usize::from(port(4));
    let payload = udp
        .get(8..udp_len)
        .ok_or("UDP length exceeds the frame")?
        .to_vec();
    Ok(Some(PcapPacket {
        at,
        src: SocketAddrV4::new(addr(12), port(0)),
        dst: SocketAddrV4::new(addr(16), port(2)),
        payload,
    }))
}
