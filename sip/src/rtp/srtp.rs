//! SRTP for one call leg (RFC 3711) with SDES keys from SDP ([`crate::sdp::SrtpParams`]):
//! [`SrtpStreams::protect`] before a packet leaves, [`SrtpStreams::unprotect`] before a received
//! one reaches the [`RtpSession`](super::RtpSession). Sans-IO; the ciphers are `rtc-srtp`'s
//! (webrtc-rs, ring underneath).
//!
//! A packet that fails authentication, or replays one already seen (a 64-packet window per SSRC,
//! RFC 3711 §3.3.2), is an error and must be dropped: it never latches the stream, is never heard
//! and never carries a digit — so on a secure leg only the holder of the phone's key can feed
//! audio in. RTCP is not handled here: we do not send RTCP and ignore what arrives.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;

use rtc_srtp::context::Context;
use rtc_srtp::crypto::RTCCryptoProvider;
use rtc_srtp::option::srtp_replay_protection;
use rtc_srtp::protection_profile::ProtectionProfile;

use crate::sdp::{SrtpKey, SrtpParams, SrtpSuite};

/// Why a packet could not be protected or unprotected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SrtpError {
    /// The crypto provider or a context could not be set up (a key of the wrong length).
    #[error("SRTP setup failed: {0}")]
    Setup(String),
    /// Authentication failed, a replay, or a malformed packet.
    #[error("SRTP packet rejected: {0}")]
    Rejected(String),
}

/// Both directions of one leg.
///
/// The contexts sit behind a `Mutex` only because `rtc-srtp`'s ciphers are `Send` but not `Sync`
/// and a call task's future must be `Send` while it holds `&` to its legs; every use goes through
/// `&mut self`, so the lock is never contended.
pub struct SrtpStreams {
    params: SrtpParams,
    outbound: Mutex<Context>,
    inbound: Mutex<Context>,
}

impl std::fmt::Debug for SrtpStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpStreams")
            .field("suite", &self.params.suite)
            .finish_non_exhaustive()
    }
}

fn profile(suite: SrtpSuite) -> ProtectionProfile {
    match suite {
        SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        SrtpSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

fn provider() -> Result<Arc<dyn RTCCryptoProvider>, SrtpError> {
    rtc_srtp::crypto::default_provider().map_err(|e| SrtpError::Setup(e.to_string()))
}

fn context(
    provider: &Arc<dyn RTCCryptoProvider>,
    key: &SrtpKey,
    suite: SrtpSuite,
    replay_window: bool,
) -> Result<Context, SrtpError> {
    Context::new(
        key.key(),
        key.salt(),
        profile(suite),
        replay_window.then(|| srtp_replay_protection(64)),
        None,
        provider.crypto(),
    )
    .map_err(|e| SrtpError::Setup(e.to_string()))
}

impl SrtpStreams {
    /// Contexts for what was negotiated.
    pub fn new(params: &SrtpParams) -> Result<SrtpStreams, SrtpError> {
        let provider = provider()?;
        Ok(SrtpStreams {
            outbound: Mutex::new(context(&provider, &params.ours, params.suite, false)?),
            inbound: Mutex::new(context(&provider, &params.theirs, params.suite, true)?),
            params: params.clone(),
        })
    }

    /// What these streams were made for: a re-INVITE that changes nothing keeps them (and their
    /// rollover counters); one that changes a key or the suite needs new ones.
    pub fn params(&self) -> &SrtpParams {
        &self.params
    }

    /// The SRTP packet for the RTP packet `rtp` (the cipher's own buffer: one allocation a
    /// packet, no copy after it).
    pub fn protect(&mut self, rtp: &[u8]) -> Result<BytesMut, SrtpError> {
        self.outbound
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .encrypt_rtp(rtp)
            .map_err(|e| SrtpError::Rejected(e.to_string()))
    }

    /// The RTP packet inside the SRTP packet `srtp`, if it authenticates and is no replay.
    pub fn unprotect(&mut self, srtp: &[u8]) -> Result<BytesMut, SrtpError> {
        self.inbound
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .decrypt_rtp(srtp)
            .map_err(|e| SrtpError::Rejected(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(suite: SrtpSuite, ours: u8, theirs: u8) -> SrtpParams {
        SrtpParams {
            suite,
            ours: SrtpKey::from_bytes([ours; 30]),
            theirs: SrtpKey::from_bytes([theirs; 30]),
        }
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x80,
            8,
            (seq >> 8) as u8,
            seq as u8,
            0,
            0,
            0,
            160,
            1,
            2,
            3,
            4,
        ];
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn what_one_side_protects_the_other_unprotects_and_nobody_else() {
        for suite in SrtpSuite::ALL {
            let mut us = SrtpStreams::new(&params(suite, 1, 2)).expect("contexts");
            let mut phone = SrtpStreams::new(&params(suite, 2, 1)).expect("contexts");
            let plain = rtp(1, &[0xd5; 160]);
            let sent = us.protect(&plain).expect("protect");
            assert_ne!(&sent[12..172], &plain[12..], "the payload is encrypted");
            assert_eq!(phone.unprotect(&sent).expect("unprotect"), plain);

            // Someone without the key: rejected.
            let mut stranger = SrtpStreams::new(&params(suite, 3, 1)).expect("contexts");
            let forged = stranger.protect(&rtp(2, &[0x55; 160])).expect("protect");
            assert!(us.unprotect(&forged).is_err(), "{suite}");
            // A flipped bit: rejected.
            let mut tampered = phone.protect(&rtp(3, &[0x55; 160])).expect("protect");
            tampered[20] ^= 1;
            assert!(us.unprotect(&tampered).is_err(), "{suite}");
            // Clear RTP: rejected.
            assert!(us.unprotect(&rtp(4, &[0x55; 160])).is_err(), "{suite}");
        }
    }

    #[test]
    fn a_replayed_packet_is_rejected() {
        let suite = SrtpSuite::AesCm128HmacSha1_80;
        let mut us = SrtpStreams::new(&params(suite, 1, 2)).expect("contexts");
        let mut phone = SrtpStreams::new(&params(suite, 2, 1)).expect("contexts");
        let packet = phone.protect(&rtp(10, &[1; 160])).expect("protect");
        assert!(us.unprotect(&packet).is_ok());
        assert!(us.unprotect(&packet).is_err(), "the same packet again");
        let next = phone.protect(&rtp(11, &[1; 160])).expect("protect");
        assert!(us.unprotect(&next).is_ok());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut us = SrtpStreams::new(&params(SrtpSuite::AesCm128HmacSha1_32, 1, 2)).expect("ok");
        for junk in [
            &[][..],
            &[0x80],
            &[0x80, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9],
        ] {
            assert!(us.unprotect(junk).is_err());
        }
    }
}
