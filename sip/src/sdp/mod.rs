//! SDP offer/answer for one audio stream (RFC 4566 syntax, RFC 3264 offer/answer, RFC 3264 §8.4 and
//! RFC 2543 `c=0.0.0.0` hold).
//!
//! Owns: reading a remote offer or answer into a typed [`MediaSession`], writing our answer and our
//! own offers, and the `o=` version counter of our side of the session (RFC 3264 §8: the version goes up
//! by one whenever the SDP we send changes, and stays the same when it does not).
//!
//! Syntax is parsed and written by the maintained `sdp-types` crate (Sebastian Dröge). It was chosen
//! after parsing `fixtures/sdp/` with four candidates: `sdp-types` 0.3.1 read every fixture, including
//! one with no `s=` line, LF line ends and trailing whitespace; `webrtc-sdp` 0.3.17, `sdp` 0.17.2
//! (webrtc-rs) and `ezk-sdp-types` 0.6.1 all rejected that fixture ("third line needs to be session",
//! "SdpInvalidSyntax: c=", "MissingName"). `sdp-types` keeps trailing whitespace in values, so this
//! module trims attribute values before handing them to the crate's typed attribute parsers. Its writer
//! strips CR/LF from values, so nothing from a remote offer can inject lines into our answer.
//!
//! Media-level semantics (codec choice, telephone-event, ptime, direction, hold) live here, because no
//! SDP crate knows our preferences: PCMA then PCMU, one telephone-event 0-16 at 8 kHz with the offer's
//! payload type, ptime 20 unless the offer asks for another.

mod answer;
pub mod crypto;
mod remote;

use std::net::{IpAddr, SocketAddr};

pub use answer::Answer;
pub use crypto::{SrtpKey, SrtpParams, SrtpSuite};

/// Errors of SDP negotiation. [`SdpError::sip_status`] says which SIP response a UAS should send.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    /// The body is not SDP (or not SDP that even `sdp-types`' lenient parser accepts).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// No `m=audio` line with an RTP/AVP(F) transport and a non-zero port.
    #[error("no usable audio stream in SDP")]
    NoAudio,
    /// There is an audio stream, but it offers neither PCMA nor PCMU.
    #[error("no codec in common (we support PCMA and PCMU)")]
    NoCommonCodec,
    /// The peer answered our offer with port 0 on the audio stream.
    #[error("peer rejected the audio stream")]
    AudioRejected,
    /// This leg must be SRTP (RFC 4568 SDES), and the peer offered or answered no `RTP/SAVP`
    /// audio with an `a=crypto` line of a suite we support.
    #[error("no SRTP crypto suite in common (we support AES_CM_128_HMAC_SHA1_80 and _32)")]
    NoCommonCrypto,
}

impl SdpError {
    /// The SIP status a UAS answers an INVITE with when its offer fails this way: 400 for a body
    /// that is not SDP, 488 Not Acceptable Here for SDP we cannot agree to (RFC 3261 §13.3.1.1).
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) => 400,
            SdpError::NoAudio
            | SdpError::NoCommonCodec
            | SdpError::AudioRejected
            | SdpError::NoCommonCrypto => 488,
        }
    }
}

/// The codecs we speak. G.711 only: the DTMF detector and the agent bridge both work on G.711.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.711 µ-law, static payload type 0.
    Pcmu,
}

impl CodecKind {
    /// Encoding name as written in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            CodecKind::Pcma => "PCMA",
            CodecKind::Pcmu => "PCMU",
        }
    }

    /// Static payload type of RFC 3551 table 4.
    pub fn static_payload_type(self) -> u8 {
        match self {
            CodecKind::Pcma => 8,
            CodecKind::Pcmu => 0,
        }
    }
}

/// A negotiated codec with the payload type it carries on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 A-law with its RTP payload type (normally 8).
    Pcma { pt: u8 },
    /// G.711 µ-law with its RTP payload type (normally 0).
    Pcmu { pt: u8 },
}

impl Codec {
    /// Builds a codec value from its kind and payload type.
    pub fn new(kind: CodecKind, pt: u8) -> Self {
        match kind {
            CodecKind::Pcma => Codec::Pcma { pt },
            CodecKind::Pcmu => Codec::Pcmu { pt },
        }
    }

    /// Which G.711 law.
    pub fn kind(self) -> CodecKind {
        match self {
            Codec::Pcma { .. } => CodecKind::Pcma,
            Codec::Pcmu { .. } => CodecKind::Pcmu,
        }
    }

    /// The RTP payload type audio packets carry.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcma { pt } | Codec::Pcmu { pt } => pt,
        }
    }
}

/// Media direction attribute (RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv` (also the default when no direction attribute is present).
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name as written in SDP.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction seen from the other end: an offer's `sendonly` is answered `recvonly`.
    pub fn reverse(self) -> Self {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the side holding this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side holding this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction that allows only what both allow.
    pub fn intersect(self, other: Self) -> Self {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    fn from_flags(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    fn from_attribute(name: &str) -> Option<Self> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.as_str().eq_ignore_ascii_case(name))
    }
}

/// The outcome of a negotiation: everything the RTP session of this call leg needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSession {
    /// Where the peer wants RTP: the `c=` address and `m=` port. `None` when the peer gave port 0,
    /// `c=0.0.0.0` (RFC 2543 hold) or a host name (we never resolve names from messages). The RTP
    /// session latches onto the real source anyway (symmetric RTP).
    pub remote_addr: Option<SocketAddr>,
    /// The one audio codec both sides use.
    pub codec: Codec,
    /// Payload type of RFC 4733 telephone-event at 8 kHz, if both sides support it.
    pub telephone_event_pt: Option<u8>,
    /// Packetisation time in milliseconds.
    pub ptime_ms: u32,
    /// OUR direction: `sends()` says whether we may send RTP, `receives()` whether the peer will.
    pub direction: Direction,
    /// The peer put the call on hold (`a=sendonly`, `a=inactive`, or `c=0.0.0.0`).
    pub on_hold: bool,
    /// SRTP suite and keys when the leg is secure (`RTP/SAVP`, RFC 4568); `None`: plain RTP.
    pub srtp: Option<SrtpParams>,
}

/// What we offer and accept, in order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPreferences {
    /// Codecs in order of preference; an answer picks the first one the offer contains.
    pub codecs: Vec<CodecKind>,
    /// Packetisation time we use when the peer does not ask for one.
    pub ptime_ms: u32,
    /// Whether to negotiate RFC 4733 telephone-event.
    pub telephone_event: bool,
    /// Payload type of telephone-event in offers we make (answers reuse the offer's).
    pub telephone_event_pt: u8,
}

impl Default for MediaPreferences {
    fn default() -> Self {
        MediaPreferences {
            codecs: vec![CodecKind::Pcma, CodecKind::Pcmu],
            ptime_ms: 20,
            telephone_event: true,
            telephone_event_pt: 101,
        }
    }
}

/// Our RTP address for this call leg (the socket the driver bound for the port from `ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address written in `c=` and `o=`: the one peers can reach us on.
    pub addr: IpAddr,
    /// Our RTP port (even; RTCP is the odd port above it).
    pub rtp_port: u16,
}

/// Our side of one SDP session: the origin line and its version counter, plus what we last offered.
///
/// One per call leg. Every SDP body we send (answer or offer, initial or re-INVITE) is produced here so
/// that `o=` stays consistent (RFC 3264 §8).
#[derive(Debug, Clone)]
pub struct LocalSdp {
    session_id: u64,
    version: u64,
    last_sent: Option<Vec<u8>>,
    prefs: MediaPreferences,
    offered_direction: Direction,
    /// Our master key when this leg is SRTP: offers are `RTP/SAVP` with `a=crypto`, and only such
    /// offers and answers are accepted.
    srtp: Option<SrtpKey>,
}

impl LocalSdp {
    /// `session_id` should be unique per leg (the driver picks it, e.g. at random); the version starts
    /// at 1.
    pub fn new(session_id: u64, prefs: MediaPreferences) -> Self {
        LocalSdp {
            session_id,
            version: 1,
            last_sent: None,
            prefs,
            offered_direction: Direction::SendRecv,
            srtp: None,
        }
    }

    /// Makes this leg SRTP with our master key `key` (draw it from a CSPRNG, one per leg): offers
    /// become `RTP/SAVP` with one `a=crypto` per suite, and plain-RTP offers and answers are
    /// refused ([`SdpError::NoCommonCrypto`], 488).
    pub fn with_srtp(mut self, key: SrtpKey) -> Self {
        self.srtp = Some(key);
        self
    }

    /// Whether this leg is SRTP.
    pub fn is_secure(&self) -> bool {
        self.srtp.is_some()
    }

    /// The `o=` session version of the last SDP we produced.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Our preferences.
    pub fn preferences(&self) -> &MediaPreferences {
        &self.prefs
    }

    /// Answers a remote offer (initial INVITE or re-INVITE). On error the caller answers with
    /// [`SdpError::sip_status`] and nothing changes here.
    pub fn answer(&mut self, offer: &[u8], local: LocalMedia) -> Result<Answer, SdpError> {
        let session = parse(offer)?;
        let (sdp, media) = answer::build_answer(&session, &self.prefs, local, self.srtp.as_ref())?;
        let body = self.finish(sdp);
        Ok(Answer { body, media })
    }

    /// Builds our offer (INVITE to an agent, or a re-INVITE). `direction` is ours: `SendOnly` puts
    /// the peer on hold (RFC 3264 §8.4), `SendRecv` resumes.
    pub fn offer(&mut self, local: LocalMedia, direction: Direction) -> Vec<u8> {
        self.offered_direction = direction;
        let sdp = answer::build_offer(&self.prefs, local, direction, self.srtp.as_ref());
        self.finish(sdp)
    }

    /// An offer on behalf of another endpoint (third-party call control, RFC 3725 §4.1 flow I):
    /// `theirs` is that endpoint's RTP address and `prefs` its codec, so the peer sends RTP there.
    /// The origin line stays this leg's (`ours`, same id, version bumped on change: RFC 3264 §8).
    pub fn offer_for(
        &mut self,
        ours: LocalMedia,
        theirs: LocalMedia,
        direction: Direction,
        prefs: &MediaPreferences,
    ) -> Vec<u8> {
        self.offered_direction = direction;
        let mut sdp = answer::build_offer(prefs, theirs, direction, None);
        sdp.origin = answer::build_offer(prefs, ours, direction, None).origin;
        self.finish(sdp)
    }

    /// Reads the peer's answer to our last [`LocalSdp::offer`].
    pub fn handle_answer(&self, answer: &[u8]) -> Result<MediaSession, SdpError> {
        let session = parse(answer)?;
        answer::read_answer(
            &session,
            &self.prefs,
            self.offered_direction,
            self.srtp.as_ref(),
        )
    }

    /// Sets the origin version (bumped if the body differs from the last one we sent) and writes.
    fn finish(&mut self, mut sdp: sdp_types::Session) -> Vec<u8> {
        sdp.origin.sess_id = self.session_id.to_string();
        sdp.origin.sess_version = self.version;
        let body = write(&sdp);
        match &self.last_sent {
            None => {
                self.last_sent = Some(body.clone());
                body
            }
            Some(last) if *last == body => body,
            Some(_) => {
                self.version = self.version.wrapping_add(1);
                sdp.origin.sess_version = self.version;
                let body = write(&sdp);
                self.last_sent = Some(body.clone());
                body
            }
        }
    }
}

/// Parses a body with `sdp-types`; never panics (see the proptest below and `fuzz/fuzz_targets/sdp.rs`).
pub fn parse(body: &[u8]) -> Result<sdp_types::Session, SdpError> {
    sdp_types::Session::parse(body).map_err(|e| SdpError::Malformed(format!("{e:?}")))
}

/// Whether `body` offers SRTP audio we could take: an `RTP/SAVP(F)` audio stream with a non-zero
/// port and an `a=crypto` line of a suite we support (the trunk leg answers such an offer with
/// SRTP when configured to).
pub fn offers_srtp(body: &[u8]) -> bool {
    parse(body).is_ok_and(|session| {
        session.medias.iter().any(|m| {
            m.port != 0 && remote::is_rtp_audio(m, true) && !remote::crypto_attributes(m).is_empty()
        })
    })
}

/// Reads any SDP (offer or answer) into the media parameters we would use with it, without building
/// an answer: for logging and for tests.
pub fn describe(body: &[u8], prefs: &MediaPreferences) -> Result<MediaSession, SdpError> {
    let session = parse(body)?;
    answer::read_answer(&session, prefs, Direction::SendRecv, None)
}

fn write(sdp: &sdp_types::Session) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing into a Vec cannot fail: io::Write for Vec<u8> is infallible.
    let _ = sdp.write(&mut out);
    out
}

#[cfg(test)]
mod tests;
