//! Building answers and offers, reading answers (RFC 3264 §5 offer, §6 answer, §6.1 unicast streams,
//! §8.4 hold; RFC 4733 §7.1.1 telephone-event in offer/answer).
//!
//! Answer rules: the first acceptable `m=audio` line (plain RTP, non-zero port, PCMA or PCMU offered)
//! is accepted with exactly ONE codec — our most preferred one that the offer lists — plus
//! telephone-event 0-16 under the offer's payload type if it offered `telephone-event/8000`. Every other
//! `m=` line is rejected with port 0, in the same position (RFC 3264 §6). ptime: the offer's if present
//! (10..=200 ms), else ours.

use sdp_types::{Attribute, Connection, Media, Origin, Session, Time};

use super::crypto::{CryptoAttribute, SrtpKey, SrtpParams, SrtpSuite};
use super::remote::{crypto_attributes, is_rtp_audio, RemoteMedia};
use super::{Codec, Direction, LocalMedia, MediaPreferences, MediaSession, SdpError};

/// Our answer: the SDP body to put in the 200 OK (or 183) and the negotiated media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `application/sdp` body, CRLF line ends.
    pub body: Vec<u8>,
    /// What was agreed; feed it to the call leg's `RtpSession`.
    pub media: MediaSession,
}

const TELEPHONE_EVENT_FMTP: &str = "0-16";

/// The tag we give each suite in our offers.
fn our_tag(suite: SrtpSuite) -> u32 {
    match suite {
        SrtpSuite::AesCm128HmacSha1_80 => 1,
        SrtpSuite::AesCm128HmacSha1_32 => 2,
    }
}

/// `srtp`: this leg is SRTP with our key; only `RTP/SAVP` audio with a usable `a=crypto` is
/// accepted, and the answer carries the chosen line's tag and suite with our key.
pub(super) fn build_answer(
    offer: &Session,
    prefs: &MediaPreferences,
    local: LocalMedia,
    srtp: Option<&SrtpKey>,
) -> Result<(Session, MediaSession), SdpError> {
    let mut chosen: Option<(usize, MediaSession, Option<u32>)> = None;
    let mut saw_audio = false;
    let mut saw_secure_audio = false;
    for (index, media) in offer.medias.iter().enumerate() {
        if chosen.is_some() || media.port == 0 {
            continue;
        }
        if srtp.is_some() && is_rtp_audio(media, false) {
            saw_audio = true;
        }
        if !is_rtp_audio(media, srtp.is_some()) {
            continue;
        }
        saw_audio = true;
        let (srtp_params, tag) = match srtp {
            None => (None, None),
            Some(ours) => {
                // The offerer's first line we can honour (RFC 4568 §7.1.1).
                let Some(line) = crypto_attributes(media).into_iter().next() else {
                    continue;
                };
                saw_secure_audio = true;
                (
                    Some(SrtpParams {
                        suite: line.suite,
                        ours: ours.clone(),
                        theirs: line.key,
                    }),
                    Some(line.tag),
                )
            }
        };
        let remote = RemoteMedia::read(offer, media);
        let Some(codec) = pick_codec(&remote, prefs) else {
            continue;
        };
        let telephone_event_pt = prefs
            .telephone_event
            .then(|| remote.telephone_event_pt())
            .flatten();
        let zero = remote.zero_connection();
        // RFC 2543 hold: `c=0.0.0.0` means "do not send to me", whatever the direction attribute.
        let offered = if zero {
            remote.direction.intersect(Direction::SendOnly)
        } else {
            remote.direction
        };
        let media_session = MediaSession {
            remote_addr: remote.socket_addr(),
            codec,
            telephone_event_pt,
            ptime_ms: remote
                .ptime_ms
                .filter(|p| (10..=200).contains(p))
                .unwrap_or(prefs.ptime_ms),
            direction: offered.reverse(),
            on_hold: zero || matches!(remote.direction, Direction::SendOnly | Direction::Inactive),
            srtp: srtp_params,
        };
        chosen = Some((index, media_session, tag));
    }
    let Some((audio_index, media_session, tag)) = chosen else {
        return Err(if srtp.is_some() && !saw_secure_audio && saw_audio {
            SdpError::NoCommonCrypto
        } else if saw_audio {
            SdpError::NoCommonCodec
        } else {
            SdpError::NoAudio
        });
    };

    let mut answer = skeleton(local);
    for (index, media) in offer.medias.iter().enumerate() {
        if index == audio_index {
            let mut audio = audio_media(
                local.rtp_port,
                media.proto.trim(),
                media_session.codec,
                media_session.telephone_event_pt,
                media_session.ptime_ms,
                media_session.direction,
            );
            if let (Some(params), Some(tag)) = (&media_session.srtp, tag) {
                audio.attributes.push(crypto_line(CryptoAttribute {
                    tag,
                    suite: params.suite,
                    key: params.ours.clone(),
                }));
            }
            answer.medias.push(audio);
        } else {
            answer.medias.push(rejected(media));
        }
    }
    Ok((answer, media_session))
}

/// `srtp`: offer `RTP/SAVP` with one `a=crypto` line per suite (ours first), all with our key.
pub(super) fn build_offer(
    prefs: &MediaPreferences,
    local: LocalMedia,
    direction: Direction,
    srtp: Option<&SrtpKey>,
) -> Session {
    let mut offer = skeleton(local);
    let mut fmt: Vec<String> = prefs
        .codecs
        .iter()
        .map(|c| c.static_payload_type().to_string())
        .collect();
    let te = prefs.telephone_event.then_some(prefs.telephone_event_pt);
    if let Some(pt) = te {
        fmt.push(pt.to_string());
    }
    let mut media = Media {
        media: "audio".into(),
        port: local.rtp_port,
        num_ports: None,
        proto: if srtp.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        }
        .into(),
        fmt: fmt.join(" "),
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    };
    for codec in &prefs.codecs {
        media
            .attributes
            .push(rtpmap(codec.static_payload_type(), codec.encoding_name()));
    }
    if let Some(pt) = te {
        push_telephone_event(&mut media, pt);
    }
    media
        .attributes
        .push(Attribute::with_value("ptime", prefs.ptime_ms));
    media.attributes.push(Attribute::new(direction.as_str()));
    if let Some(key) = srtp {
        for suite in SrtpSuite::ALL {
            media.attributes.push(crypto_line(CryptoAttribute {
                tag: our_tag(suite),
                suite,
                key: key.clone(),
            }));
        }
    }
    offer.medias.push(media);
    offer
}

fn crypto_line(attribute: CryptoAttribute) -> Attribute {
    Attribute::with_value("crypto", attribute.value())
}

/// `srtp`: we offered SRTP with this key; the answer must be `RTP/SAVP` with one `a=crypto` line
/// repeating the tag and suite of one of ours (RFC 4568 §7.1.2), else [`SdpError::NoCommonCrypto`].
pub(super) fn read_answer(
    answer: &Session,
    prefs: &MediaPreferences,
    offered_direction: Direction,
    srtp: Option<&SrtpKey>,
) -> Result<MediaSession, SdpError> {
    let secure = srtp.is_some();
    let Some(media) = answer.medias.iter().find(|m| is_rtp_audio(m, secure)) else {
        if secure && answer.medias.iter().any(|m| is_rtp_audio(m, false)) {
            return Err(SdpError::NoCommonCrypto);
        }
        return Err(SdpError::NoAudio);
    };
    if media.port == 0 {
        return Err(SdpError::AudioRejected);
    }
    let srtp = match srtp {
        None => None,
        Some(ours) => {
            let line = crypto_attributes(media)
                .into_iter()
                .find(|line| line.tag == our_tag(line.suite))
                .ok_or(SdpError::NoCommonCrypto)?;
            Some(SrtpParams {
                suite: line.suite,
                ours: ours.clone(),
                theirs: line.key,
            })
        }
    };
    let remote = RemoteMedia::read(answer, media);
    let codec = pick_codec_in_their_order(&remote, prefs).ok_or(SdpError::NoCommonCodec)?;
    let zero = remote.zero_connection();
    let theirs = if zero {
        remote.direction.intersect(Direction::SendOnly)
    } else {
        remote.direction
    };
    Ok(MediaSession {
        remote_addr: remote.socket_addr(),
        codec,
        telephone_event_pt: prefs
            .telephone_event
            .then(|| remote.telephone_event_pt())
            .flatten(),
        ptime_ms: remote
            .ptime_ms
            .filter(|p| (10..=200).contains(p))
            .unwrap_or(prefs.ptime_ms),
        direction: theirs.reverse().intersect(offered_direction),
        on_hold: zero || matches!(remote.direction, Direction::SendOnly | Direction::Inactive),
        srtp,
    })
}

/// Our preference order decides (RFC 3264 §6.1 lets the answerer choose among offered formats).
fn pick_codec(remote: &RemoteMedia, prefs: &MediaPreferences) -> Option<Codec> {
    prefs
        .codecs
        .iter()
        .find_map(|&kind| remote.payload_type_of(kind).map(|pt| Codec::new(kind, pt)))
}

/// In an answer the answerer's order is what it will send first (RFC 3264 §6.1).
fn pick_codec_in_their_order(remote: &RemoteMedia, prefs: &MediaPreferences) -> Option<Codec> {
    remote.formats.iter().find_map(|&pt| {
        prefs
            .codecs
            .iter()
            .find(|&&kind| remote.payload_type_of(kind) == Some(pt))
            .map(|&kind| Codec::new(kind, pt))
    })
}

fn skeleton(local: LocalMedia) -> Session {
    let origin = Origin::with_ip_addr("0", 0, local.addr);
    let mut session = Session::new(origin, "-");
    session.connection = Some(Connection::from_ip_addr(local.addr));
    session.times.push(Time::new(0, 0));
    session
}

fn audio_media(
    port: u16,
    proto: &str,
    codec: Codec,
    telephone_event_pt: Option<u8>,
    ptime_ms: u32,
    direction: Direction,
) -> Media {
    let mut fmt = codec.payload_type().to_string();
    if let Some(pt) = telephone_event_pt {
        fmt.push(' ');
        fmt.push_str(&pt.to_string());
    }
    let mut media = Media {
        media: "audio".into(),
        port,
        num_ports: None,
        proto: if proto.is_empty() { "RTP/AVP" } else { proto }.into(),
        fmt,
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: vec![rtpmap(codec.payload_type(), codec.kind().encoding_name())],
    };
    if let Some(pt) = telephone_event_pt {
        push_telephone_event(&mut media, pt);
    }
    media
        .attributes
        .push(Attribute::with_value("ptime", ptime_ms));
    media.attributes.push(Attribute::new(direction.as_str()));
    media
}

/// RFC 3264 §6: a rejected stream keeps its media type, transport and formats, with port 0.
fn rejected(offered: &Media) -> Media {
    let fmt = offered.fmt.trim();
    Media {
        media: offered.media.trim().to_string(),
        port: 0,
        num_ports: None,
        proto: offered.proto.trim().to_string(),
        fmt: if fmt.is_empty() { "0" } else { fmt }.to_string(),
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes: Vec::new(),
    }
}

fn rtpmap(pt: u8, name: &str) -> Attribute {
    Attribute::with_value("rtpmap", format!("{pt} {name}/8000"))
}

fn push_telephone_event(media: &mut Media, pt: u8) {
    media.attributes.push(Attribute::with_value(
        "rtpmap",
        format!("{pt} telephone-event/8000"),
    ));
    media.attributes.push(Attribute::with_value(
        "fmtp",
        format!("{pt} {TELEPHONE_EVENT_FMTP}"),
    ));
}
