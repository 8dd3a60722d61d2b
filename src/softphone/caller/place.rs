//! [`place_call`]: one call with the [`Caller`](super::Caller) over real UDP sockets, for the
//! `veilig-bellen call` command and the demo's **Bel nu**. It parses the URI and the code,
//! resolves the host (the only DNS lookup, here and not in the sans-IO caller), binds a SIP and
//! an RTP socket on the local address that routes to the far end, runs the
//! [`Driver`](crate::softphone::driver::Driver) and returns the [`CallReport`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sip::message::{Scheme, Uri};
use sip::random::RandomKey;
use sip::rtp::RtpConfig;
use sip::transaction::TimerConfig;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::{
    parse_code, CallEvent, CallReport, Caller, CallerConfig, CodeMethod, Credentials, HangUp,
};
use crate::pii::Pii;
use crate::softphone::driver::Driver;
use crate::softphone::media::MediaConfig;

/// What to call and how. [`CallOptions::new`] fills in the defaults of `veilig-bellen call`.
#[derive(Debug)]
pub struct CallOptions {
    /// `sip:NUMBER@HOST[:PORT]` (UDP).
    pub uri: String,
    /// The link code, `0-9 * # A-D`; empty: just call.
    pub code: Pii<String>,
    pub method: CodeMethod,
    /// The calling number (From).
    pub from: String,
    /// Audio to play (8 kHz mono samples, e.g. [`crate::audio_file::read_prompt`]); silence when
    /// absent.
    pub audio: Option<Arc<[i16]>>,
    /// When to hang up on our own.
    pub hang_up: HangUp,
    /// How long to wait for the answer.
    pub answer_timeout: Duration,
    /// How long to wait for any response at all.
    pub response_timeout: Duration,
    /// Pause between the answer and the first digit.
    pub code_delay: Duration,
    /// For a 401/407 challenge.
    pub credentials: Option<Credentials>,
    /// Each [`CallEvent`] as it happens (a closed receiver is ignored).
    pub progress: Option<mpsc::UnboundedSender<CallEvent>>,
    /// Hang up when this fires or its sender is dropped (CANCEL before the answer, BYE after).
    pub hang_up_signal: Option<oneshot::Receiver<()>>,
}

impl CallOptions {
    /// A call to `uri` keying in `code` by RFC 4733, from `+31612345678`, hanging up 10 s after
    /// the code; 30 s to answer.
    pub fn new(uri: impl Into<String>, code: Pii<String>) -> CallOptions {
        CallOptions {
            uri: uri.into(),
            code,
            method: CodeMethod::Rfc4733,
            from: DEFAULT_FROM.to_owned(),
            audio: None,
            hang_up: HangUp::After(Duration::from_secs(10)),
            answer_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(5),
            code_delay: Duration::from_millis(500),
            credentials: None,
            progress: None,
            hang_up_signal: None,
        }
    }
}

/// The calling number when none is given.
pub const DEFAULT_FROM: &str = "+31612345678";

/// Why a call could not be placed at all (a call that was placed and failed is a
/// [`CallReport`] with a [`super::Failure`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Not a `sip:NUMBER@HOST[:PORT]` URI we can call over UDP.
    #[error("bad SIP URI: {0}")]
    BadUri(String),
    /// The code has characters other than `0-9 * # A-D`.
    #[error("the code may only hold the digits 0-9, *, # and A-D")]
    BadCode,
    /// The calling number does not fit a SIP URI.
    #[error("the calling number cannot go into a SIP URI")]
    BadFrom,
    /// The host name has no address.
    #[error("cannot resolve {host}: {why}")]
    Resolve { host: String, why: String },
    /// Binding or using the sockets failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

impl CallError {
    /// Whether the fault is in what was asked (URI, code, number) rather than in the network.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CallError::BadUri(_) | CallError::BadCode | CallError::BadFrom
        )
    }
}

/// Places one call and returns how it went. Binds its own sockets on the local address that
/// routes to the far end (`127.0.0.1` for a loopback target), port 0.
pub async fn place_call(options: CallOptions) -> Result<CallReport, CallError> {
    let CallOptions {
        uri,
        code,
        method,
        from,
        audio,
        hang_up,
        answer_timeout,
        response_timeout,
        code_delay,
        credentials,
        progress,
        hang_up_signal,
    } = options;
    let digits = parse_code(code.expose()).ok_or(CallError::BadCode)?;
    let (request_uri, host, port) = parse_target(&uri)?;
    let target = resolve(&host, port).await?;
    let local_ip = local_ip_towards(target);
    let sip = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    let rtp = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    let config = CallerConfig {
        target,
        request_uri,
        local_sip: sip.local_addr()?,
        local_rtp: rtp.local_addr()?,
        from,
        code: Pii::new(digits),
        method,
        audio,
        hang_up,
        answer_timeout,
        response_timeout,
        code_delay,
        credentials,
        key: RandomKey::from_bytes(rand::random()),
        media: MediaConfig {
            rtp: RtpConfig {
                local_ssrc: rand::random(),
                initial_seq: rand::random(),
                initial_timestamp: rand::random(),
                ..RtpConfig::default()
            },
            ..MediaConfig::default()
        },
        sdp_session_id: rand::random::<u32>().into(),
        timers: TimerConfig::default(),
    };
    let now = tokio::time::Instant::now().into_std();
    let caller = Caller::new(now, config).map_err(|e| match e {
        super::CallerError::BadFrom => CallError::BadFrom,
        other => CallError::Io(std::io::Error::other(other.to_string())),
    })?;
    let (control_tx, control_rx) = mpsc::channel::<()>(1);
    let watcher = hang_up_signal.map(|signal| {
        tokio::spawn(async move {
            let _ = signal.await;
            let _ = control_tx.send(()).await;
        })
    });
    let result = Driver::new(caller, sip, rtp)
        .run(
            control_rx,
            |caller: &mut Caller, now: Instant, ()| caller.hang_up(now),
            |event| {
                if let Some(progress) = &progress {
                    let _ = progress.send(event);
                }
            },
            std::future::pending(),
        )
        .await;
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let (caller, _) = result?;
    Ok(caller.report())
}

/// The Request-URI, host and port of `sip:NUMBER@HOST[:PORT]`.
fn parse_target(raw: &str) -> Result<(Uri, String, u16), CallError> {
    let uri = Uri::parse(raw.trim().to_owned())
        .map_err(|e| CallError::BadUri(format!("{raw:?}: {e}")))?;
    if uri.scheme() != Scheme::Sip {
        return Err(CallError::BadUri(format!(
            "{raw:?}: only sip: URIs (over UDP) can be called"
        )));
    }
    if uri.user().is_none_or(str::is_empty) {
        return Err(CallError::BadUri(format!(
            "{raw:?}: the number is missing (sip:NUMBER@HOST[:PORT])"
        )));
    }
    if let Some(transport) = uri.transport() {
        if !transport.eq_ignore_ascii_case("udp") {
            return Err(CallError::BadUri(format!(
                "{raw:?}: only UDP is supported, not transport={transport}"
            )));
        }
    }
    let host = uri
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err(CallError::BadUri(format!("{raw:?}: the host is missing")));
    }
    let port = uri.port().unwrap_or(5060);
    Ok((uri, host, port))
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, CallError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs =
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| CallError::Resolve {
                host: host.to_owned(),
                why: e.to_string(),
            })?;
    addrs.next().ok_or_else(|| CallError::Resolve {
        host: host.to_owned(),
        why: "no address".into(),
    })
}

/// The local IP a datagram to `target` leaves from (a connected UDP socket sends nothing); the
/// family's loopback or unspecified address when that cannot be told.
fn local_ip_towards(target: SocketAddr) -> IpAddr {
    let unspecified: IpAddr = match target {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    if target.ip().is_loopback() {
        return target.ip();
    }
    std::net::UdpSocket::bind(SocketAddr::new(unspecified, 0))
        .and_then(|s| {
            s.connect(target)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let (uri, host, port) = parse_target("sip:+31850000000@127.0.0.1:5070").unwrap();
        assert_eq!((host.as_str(), port), ("127.0.0.1", 5070));
        assert_eq!(uri.user(), Some("+31850000000"));
        let (_, host, port) = parse_target("sip:123@[::1]").unwrap();
        assert_eq!((host.as_str(), port), ("::1", 5060));
        for bad in [
            "",
            "tel:+31850000000",
            "sips:1@example.org",
            "sip:example.org",
            "sip:1@example.org;transport=tcp",
            "http://example.org",
        ] {
            let e = parse_target(bad).unwrap_err();
            assert!(e.is_bad_input(), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_any_network() {
        let e = place_call(CallOptions::new(
            "sip:1@127.0.0.1:9",
            Pii::new("12x".to_owned()),
        ))
        .await
        .unwrap_err();
        assert!(matches!(e, CallError::BadCode));
        let e = place_call(CallOptions::new("nonsense", Pii::new("1".to_owned())))
            .await
            .unwrap_err();
        assert!(e.is_bad_input());
    }

    #[tokio::test]
    async fn nothing_listening_fails_with_no_response() {
        let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = nobody.local_addr().unwrap().port();
        drop(nobody);
        let mut options = CallOptions::new(
            format!("sip:+31850000000@127.0.0.1:{port}"),
            Pii::new("12345678".to_owned()),
        );
        options.response_timeout = Duration::from_millis(300);
        let report = place_call(options).await.unwrap();
        assert!(!report.went_through());
        assert_eq!(report.failure, Some(super::super::Failure::NoResponse));
    }
}
