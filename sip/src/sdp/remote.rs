//! Reading one remote `m=` section into typed facts (RFC 4566 §5.7, §5.14, §6; RFC 3551 static payload
//! types; RFC 4733 §7 telephone-event registration). Tolerant of trunk quirks: missing `a=rtpmap` for
//! static types, trailing whitespace, media-level `c=` overriding the session one, `c=IN IP6`,
//! `a=ptime` with spaces, unknown attributes.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use sdp_types::attributes::RtpMap;
use sdp_types::{Media, Session};

use super::{CodecKind, Direction};

/// The facts of one remote `m=` line that negotiation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RemoteMedia {
    /// Payload types in the order the `m=` line lists them.
    pub formats: Vec<u8>,
    /// `a=rtpmap` entries that parsed.
    pub rtpmaps: Vec<RtpMap>,
    pub port: u16,
    /// Parsed connection address (media level, else session level); `None` for names or garbage.
    pub ip: Option<IpAddr>,
    pub ptime_ms: Option<u32>,
    pub direction: Direction,
}

impl RemoteMedia {
    pub fn read(session: &Session, media: &Media) -> Self {
        let formats = media
            .fmt
            .split_ascii_whitespace()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt <= 127)
            .collect();
        let rtpmaps = media
            .attributes
            .iter()
            .filter(|a| a.attribute.eq_ignore_ascii_case("rtpmap"))
            .filter_map(|a| RtpMap::from_str(a.value.as_deref().unwrap_or_default().trim()).ok())
            .collect();
        let connection = media.connections.first().or(session.connection.as_ref());
        let ip = connection.and_then(|c| {
            // Multicast notation `addr/ttl[/count]`: only the address matters to us.
            let addr = c.connection_address.trim();
            let addr = addr.split('/').next().unwrap_or(addr);
            IpAddr::from_str(addr).ok()
        });
        let ptime_ms = media
            .attributes
            .iter()
            .find(|a| a.attribute.eq_ignore_ascii_case("ptime"))
            .and_then(|a| a.value.as_deref())
            .and_then(|v| {
                // Some stacks write fractional ptime ("20.0"); take the integer part.
                let v = v.trim();
                v.split('.').next().unwrap_or(v).parse::<u32>().ok()
            });
        let direction = direction_of(&media.attributes)
            .or_else(|| direction_of(&session.attributes))
            .unwrap_or_default();
        RemoteMedia {
            formats,
            rtpmaps,
            port: media.port,
            ip,
            ptime_ms,
            direction,
        }
    }

    /// `c=0.0.0.0` / `c=::` — RFC 2543 hold.
    pub fn zero_connection(&self) -> bool {
        self.ip.is_some_and(|ip| ip.is_unspecified())
    }

    /// The address to send RTP to, if there is a usable one.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.ip {
            Some(ip) if !ip.is_unspecified() && self.port != 0 => {
                Some(SocketAddr::new(ip, self.port))
            }
            _ => None,
        }
    }

    /// Payload type this section uses for `kind`, if it lists it. An explicit `a=rtpmap` wins; a
    /// static payload type without `a=rtpmap` means its RFC 3551 codec.
    pub fn payload_type_of(&self, kind: CodecKind) -> Option<u8> {
        self.formats
            .iter()
            .copied()
            .find(|&pt| match self.rtpmap(pt) {
                Some(map) => {
                    map.encoding_name.eq_ignore_ascii_case(kind.encoding_name())
                        && map.clock_rate == 8000
                        && map
                            .encoding_params
                            .as_deref()
                            .is_none_or(|ch| ch.trim() == "1")
                }
                None => pt == kind.static_payload_type(),
            })
    }

    /// Payload type of `telephone-event/8000`, if listed.
    pub fn telephone_event_pt(&self) -> Option<u8> {
        self.formats.iter().copied().find(|&pt| {
            self.rtpmap(pt).is_some_and(|m| {
                m.encoding_name.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        })
    }

    fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == pt)
    }
}

/// Whether an `m=` line is RTP audio of the kind we could accept: plain (`RTP/AVP`, `RTP/AVPF`)
/// or, for a secure leg, SRTP (`RTP/SAVP`, `RTP/SAVPF`).
pub(super) fn is_rtp_audio(media: &Media, secure: bool) -> bool {
    let proto = media.proto.trim();
    let protos: [&str; 2] = if secure {
        ["RTP/SAVP", "RTP/SAVPF"]
    } else {
        ["RTP/AVP", "RTP/AVPF"]
    };
    media.media.trim().eq_ignore_ascii_case("audio")
        && protos.iter().any(|p| proto.eq_ignore_ascii_case(p))
}

/// The usable `a=crypto` lines of an `m=` section, in the order listed (RFC 4568 §5.1: the
/// offerer's preference).
pub(super) fn crypto_attributes(media: &Media) -> Vec<super::crypto::CryptoAttribute> {
    media
        .attributes
        .iter()
        .filter(|a| a.attribute.trim().eq_ignore_ascii_case("crypto"))
        .filter_map(|a| super::crypto::CryptoAttribute::parse(a.value.as_deref()?.trim()))
        .collect()
}

fn direction_of(attributes: &[sdp_types::Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .find_map(|a| Direction::from_attribute(a.attribute.trim()))
}
