//! Who the client of an HTTP request is: the one place that decides the address every per-client
//! limit keys on (session starts and status polls [`super::rate_limit`], portal logins
//! [`super::login`]).
//!
//! The address is the TCP peer, unless the peer is one of `http.trusted_proxies`. Then the proxy's
//! `X-Forwarded-For` (de facto) or `Forwarded: for=` (RFC 7239 §4, §5.2, §6) is read from the right:
//! each proxy appends the address it got the request from, so entries to the left of the first
//! untrusted one may be anything the client wrote, and entries to its right were written by our
//! proxies. The first untrusted entry from the right is the client. Nothing is ever read from a header
//! that an untrusted peer sent, so a client cannot pick its own key.
//!
//! What counts as unknown falls back to the peer (the proxy): a missing header, a malformed or
//! `unknown`/obfuscated entry met before the client was found, more than [`MAX_HOPS`] trusted hops.
//! When a request carries both headers, one of them came from the client (a proxy writes one kind);
//! a malformed one is ignored, and if both name a client they must agree, else the peer is used. A
//! chain of nothing but trusted proxies names its leftmost, the hop furthest out.
//!
//! Serve with `into_make_service_with_connect_info::<SocketAddr>()` and layer [`identify`] on the
//! whole app; handlers and middleware read the result as [`ClientAddr`]. Without the layer a
//! request's client is its peer.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

/// Most trusted hops walked through before giving up on a chain (and using the peer).
pub const MAX_HOPS: usize = 32;

/// The reverse proxies whose forwarding headers are believed (`http.trusted_proxies`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<ipnet::IpNet>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address as IPv4) is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn nets(&self) -> &[ipnet::IpNet] {
        &self.0
    }
}

/// The client address of a request, as [`identify`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client of a request with these extensions: what [`identify`] put there, else the TCP
    /// peer (`ConnectInfo`, or a test's `MockConnectInfo`). Without either (a server built without
    /// connect info) every request counts as one client, `0.0.0.0`.
    pub fn of(extensions: &Extensions) -> IpAddr {
        extensions
            .get::<ClientAddr>()
            .map(|ClientAddr(ip)| *ip)
            .or_else(|| peer(extensions))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(ClientAddr::of(&parts.extensions)))
    }
}

/// axum middleware: puts the request's [`ClientAddr`] into its extensions.
pub async fn identify(
    State(trusted): State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(peer) = peer(request.extensions()) {
        let client = from_headers(peer, request.headers(), &trusted);
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

/// The client of a request from `peer` with `headers`; see the module docs.
pub fn from_headers(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let lines = |name: &str| -> Vec<&[u8]> {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.as_bytes())
            .collect()
    };
    resolve(
        peer,
        &lines("x-forwarded-for"),
        &lines("forwarded"),
        trusted,
    )
}

/// The client of a request from `peer`, given the values of its `X-Forwarded-For` and `Forwarded`
/// header lines in the order received (none: the header is absent). Pure, and total on any bytes.
pub fn resolve(
    peer: IpAddr,
    x_forwarded_for: &[&[u8]],
    forwarded: &[&[u8]],
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let from_xff = walk(x_forwarded_for_hops(x_forwarded_for), trusted);
    let from_forwarded = walk(forwarded_hops(forwarded), trusted);
    match (from_xff, from_forwarded) {
        (Some(a), Some(b)) if a != b => peer,
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => peer,
    }
}

/// One entry of a chain: an address, or something that names none (malformed, `unknown`,
/// obfuscated).
type Hop = Option<IpAddr>;

/// Walks `hops` (nearest first) past trusted proxies: the first untrusted address; `None` when an
/// entry names no address, the chain is empty, or it is longer than [`MAX_HOPS`] trusted hops.
fn walk(hops: impl Iterator<Item = Hop>, trusted: &TrustedProxies) -> Option<IpAddr> {
    let mut furthest = None;
    for (i, hop) in hops.enumerate() {
        if i >= MAX_HOPS {
            return None;
        }
        let ip = hop?.to_canonical();
        if !trusted.contains(ip) {
            return Some(ip);
        }
        furthest = Some(ip);
    }
    furthest
}

/// `X-Forwarded-For: client, proxy1, proxy2`, over all lines, nearest (rightmost) first. Empty
/// list elements are skipped (RFC 9110 §5.6.1).
fn x_forwarded_for_hops<'a>(lines: &'a [&'a [u8]]) -> impl Iterator<Item = Hop> + 'a {
    lines.iter().rev().flat_map(|line| {
        let text = std::str::from_utf8(line);
        let entries: Box<dyn Iterator<Item = Hop>> = match text {
            Ok(text) => Box::new(
                text.rsplit(',')
                    .map(|e| e.trim_matches([' ', '\t']))
                    .filter(|e| !e.is_empty())
                    .map(node),
            ),
            Err(_) => Box::new(std::iter::once(None)),
        };
        entries
    })
}

/// `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"`, over all lines,
/// nearest (rightmost) element first. A line that does not parse ends the chain where it breaks
/// (as an entry naming no address).
fn forwarded_hops<'a>(lines: &'a [&'a [u8]]) -> impl Iterator<Item = Hop> + 'a {
    lines.iter().rev().flat_map(|line| {
        let (elements, complete) = match std::str::from_utf8(line) {
            Ok(text) => split_outside_quotes(text, b','),
            Err(_) => (Vec::new(), false),
        };
        let broken = (!complete).then_some(None);
        let hops: Vec<Hop> = elements.into_iter().filter_map(forwarded_for).collect();
        hops.into_iter().rev().chain(broken)
    })
}

/// The `for` of one element (RFC 7239 §4: `forwarded-element = [ forwarded-pair ] *( ";"
/// [ forwarded-pair ] )`, `forwarded-pair = token "=" value`, `value = token / quoted-string`):
/// `None` for an empty element (no hop at all), `Some(None)` for one that names no address (no
/// `for`, two of them, a pair that does not parse, `unknown`, an obfuscated name).
fn forwarded_for(element: &str) -> Option<Hop> {
    let (pairs, complete) = split_outside_quotes(element, b';');
    let pairs: Vec<&str> = pairs
        .into_iter()
        .map(|p| p.trim_matches([' ', '\t']))
        .filter(|p| !p.is_empty())
        .collect();
    if complete && pairs.is_empty() {
        return None;
    }
    let mut found = None;
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            return Some(None);
        };
        let (name, value) = (
            name.trim_matches([' ', '\t']),
            value.trim_matches([' ', '\t']),
        );
        let Some(value) = pair_value(value) else {
            return Some(None);
        };
        if name.eq_ignore_ascii_case("for") {
            if found.is_some() {
                return Some(None);
            }
            found = Some(value);
        }
    }
    Some(found.as_deref().and_then(node).filter(|_| complete))
}

/// A pair's value: a token (taken leniently: no quotes or whitespace, so an unquoted
/// `[2001:db8::1]` is read too), or a whole quoted-string, unescaped.
fn pair_value(value: &str) -> Option<String> {
    let Some(quoted) = value.strip_prefix('"') else {
        let token = !value.is_empty() && !value.contains(['"', ' ', '\t']);
        return token.then(|| value.to_owned());
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// `text` split at each `separator` outside quoted-strings (a backslash escapes the next
/// character inside them), and whether it ended outside quotes; a piece left open is dropped.
fn split_outside_quotes(text: &str, separator: u8) -> (Vec<&str>, bool) {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in text.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if !quoted && b == separator {
            // `separator` is ASCII, so `i` is a character boundary.
            pieces.push(&text[start..i]);
            start = i + 1;
        }
    }
    if quoted {
        return (pieces, false);
    }
    pieces.push(&text[start..]);
    (pieces, true)
}

/// One node: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`
/// (a port may be RFC 7239's obfuscated `_abc`). `unknown`, obfuscated names and anything else
/// name no address.
fn node(s: &str) -> Hop {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        return (after.is_empty() || after.strip_prefix(':').is_some_and(port))
            .then_some(IpAddr::V6(ip));
    }
    let (host, p) = s.rsplit_once(':')?;
    let ip: Ipv4Addr = host.parse().ok()?;
    port(p).then_some(IpAddr::V4(ip))
}

/// RFC 7239 §6: `node-port = port / obfport`, `port = 1*5DIGIT`, `obfport = "_" 1*(ALPHA / DIGIT /
/// "." / "_" / "-")`.
fn port(s: &str) -> bool {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = s.strip_prefix('_').is_some_and(|o| {
        !o.is_empty()
            && o.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    digits || obfuscated
}

/// The TCP peer's address (IPv4-mapped IPv6 as IPv4), from `ConnectInfo` or a test's
/// `MockConnectInfo`.
fn peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(addr)| addr.ip())
        })
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        let net = |n: &&str| {
            n.parse::<ipnet::IpNet>()
                .unwrap_or_else(|_| ipnet::IpNet::from(ip(n)))
        };
        TrustedProxies::new(nets.iter().map(net).collect())
    }

    /// The client of a request from `peer` with these `X-Forwarded-For` and `Forwarded` lines,
    /// behind a proxy at 10.0.0.1 and a load balancer in 10.1.0.0/16 and 2001:db8:ffff::/48.
    fn client(peer: &str, xff: &[&str], forwarded: &[&str]) -> IpAddr {
        let proxies = trusted(&["10.0.0.1", "10.1.0.0/16", "2001:db8:ffff::/48"]);
        let xff: Vec<&[u8]> = xff.iter().map(|l| l.as_bytes()).collect();
        let forwarded: Vec<&[u8]> = forwarded.iter().map(|l| l.as_bytes()).collect();
        resolve(ip(peer), &xff, &forwarded, &proxies)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(
            client("192.0.2.7", &["198.51.100.1"], &["for=198.51.100.2"]),
            ip("192.0.2.7")
        );
        assert_eq!(client("192.0.2.7", &[], &[]), ip("192.0.2.7"));
        // Nothing is trusted by default.
        let xff: &[&[u8]] = &[b"198.51.100.1"];
        assert_eq!(
            resolve(ip("10.0.0.1"), xff, &[], &TrustedProxies::default()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right_past_trusted_proxies() {
        assert_eq!(client("10.0.0.1", &["192.0.2.7"], &[]), ip("192.0.2.7"));
        // The client wrote "198.51.100.9, 10.0.0.1" itself; our proxies appended the rest.
        assert_eq!(
            client(
                "10.0.0.1",
                &["198.51.100.9, 10.0.0.1,192.0.2.7 ,\t10.1.2.3"],
                &[]
            ),
            ip("192.0.2.7")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client("10.0.0.1", &["198.51.100.9", "192.0.2.7", "10.1.2.3"], &[]),
            ip("192.0.2.7")
        );
        // Ports and brackets, as some proxies write them; IPv4-mapped IPv6 is IPv4.
        assert_eq!(
            client("10.0.0.1", &["192.0.2.7:4711"], &[]),
            ip("192.0.2.7")
        );
        assert_eq!(
            client("10.0.0.1", &["[2001:db8::1]:4711"], &[]),
            ip("2001:db8::1")
        );
        assert_eq!(
            client("10.0.0.1", &["[2001:db8::1]"], &[]),
            ip("2001:db8::1")
        );
        assert_eq!(client("10.0.0.1", &["2001:db8::1"], &[]), ip("2001:db8::1"));
        assert_eq!(
            client("::ffff:10.0.0.1", &["::ffff:192.0.2.7"], &[]),
            ip("192.0.2.7")
        );
        // Empty list elements are nothing.
        assert_eq!(client("10.0.0.1", &["192.0.2.7, ,"], &[]), ip("192.0.2.7"));
    }

    #[test]
    fn forwarded_is_read_from_the_right_with_quoted_ipv6() {
        assert_eq!(
            client("10.0.0.1", &[], &["for=192.0.2.60"]),
            ip("192.0.2.60")
        );
        assert_eq!(
            client("10.0.0.1", &[], &[r#"for="[2001:db8:cafe::17]:4711""#]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            client(
                "10.0.0.1",
                &[],
                &[
                    r#"for=198.51.100.9;proto=https, For="192.0.2.60:80";by=10.0.0.1;proto=https, for=10.1.0.5"#
                ]
            ),
            ip("192.0.2.60"),
            "parameter names are case-insensitive; other parameters are skipped"
        );
        assert_eq!(
            client(
                "10.0.0.1",
                &[],
                &[
                    r#"for="_hidden, for=198.51.100.9";by=x"#,
                    r#"for="[2001:db8::5]""#
                ]
            ),
            ip("2001:db8::5"),
            "a comma inside quotes does not split"
        );
        assert_eq!(
            client("10.0.0.1", &[], &[r#"proto=https;for = "\[2001:db8::5\]""#]),
            ip("2001:db8::5"),
            "escapes in quoted strings; whitespace around '='"
        );
        assert_eq!(
            client("10.0.0.1", &[], &["for=[2001:db8::5]:443"]),
            ip("2001:db8::5"),
            "unquoted IPv6 is taken too"
        );
        assert_eq!(
            client("10.0.0.1", &[], &[r#"for="[2001:db8::5]:_port1""#]),
            ip("2001:db8::5"),
            "obfuscated port"
        );
    }

    #[test]
    fn a_chain_of_trusted_proxies_names_the_furthest() {
        assert_eq!(
            client("10.0.0.1", &["10.1.0.9, 10.1.0.1"], &[]),
            ip("10.1.0.9")
        );
        assert_eq!(
            client("10.0.0.1", &[], &[r#"for="[2001:db8:ffff::1]""#]),
            ip("2001:db8:ffff::1")
        );
    }

    #[test]
    fn malformed_unknown_or_missing_means_the_peer() {
        for xff in [
            "",
            "nonsense",
            "192.0.2.7, garbage",
            "192.0.2.7:99999999",
            "192.0.2.300",
            "[2001:db8::1",
            "[192.0.2.7]",
            "2001:db8::1:4711x",
            "unknown",
        ] {
            assert_eq!(client("10.0.0.1", &[xff], &[]), ip("10.0.0.1"), "{xff:?}");
        }
        for forwarded in [
            "",
            "for=unknown",
            "for=_hidden",
            "for=\"192.0.2.7",
            "for=192.0.2.7;for=198.51.100.1",
            "proto=https",
            "192.0.2.7",
            "for=192.0.2.7 x",
            "for=192.0.2.7, proto",
            "for=2001:db8::1]",
            "for=\"[2001:db8::1]:4711\"x",
        ] {
            assert_eq!(
                client("10.0.0.1", &[], &[forwarded]),
                ip("10.0.0.1"),
                "{forwarded:?}"
            );
        }
        // Malformed entries to the left of the client are never looked at.
        assert_eq!(
            client("10.0.0.1", &["garbage, 192.0.2.7"], &[]),
            ip("192.0.2.7")
        );
        assert_eq!(
            client("10.0.0.1", &[], &["for=\"unclosed", "for=192.0.2.7"]),
            ip("192.0.2.7")
        );
        // But one in between, written by a trusted hop, ends the walk.
        assert_eq!(
            client("10.0.0.1", &["192.0.2.7, unknown, 10.1.0.1"], &[]),
            ip("10.0.0.1")
        );
        // Too many trusted hops.
        let long = vec!["10.1.0.1"; MAX_HOPS + 1].join(",");
        assert_eq!(client("10.0.0.1", &[&long], &[]), ip("10.0.0.1"));
    }

    #[test]
    fn both_headers_must_agree_when_both_name_a_client() {
        // The proxy writes X-Forwarded-For; the client forged a Forwarded header.
        assert_eq!(
            client("10.0.0.1", &["192.0.2.7"], &["for=198.51.100.1"]),
            ip("10.0.0.1")
        );
        assert_eq!(
            client("10.0.0.1", &["192.0.2.7"], &["for=192.0.2.7"]),
            ip("192.0.2.7")
        );
        // A malformed one is ignored: whatever the client added cannot be what a proxy wrote.
        assert_eq!(
            client("10.0.0.1", &["192.0.2.7"], &["for=\"nonsense"]),
            ip("192.0.2.7")
        );
        assert_eq!(
            client("10.0.0.1", &["x"], &["for=192.0.2.7"]),
            ip("192.0.2.7")
        );
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let nasty: [&[u8]; 12] = [
            b"\xff\xfe",
            b"for=\"\\",
            b"for=\"\\\xc3\xa9\"",
            b";;;,,,;=;=\"",
            b"=",
            b"for",
            b"for=",
            b"\"\"\"",
            b"[",
            b"[]:",
            b"for=[::]:_",
            "for=\"é\",for=é".as_bytes(),
        ];
        let proxies = trusted(&["0.0.0.0/0", "::/0"]);
        for a in nasty {
            for b in nasty {
                let _ = resolve(ip("10.0.0.1"), &[a, b], &[b, a], &proxies);
            }
        }
        let huge = "for=\"".repeat(10_000) + &",".repeat(10_000);
        let _ = resolve(
            ip("10.0.0.1"),
            &[huge.as_bytes()],
            &[huge.as_bytes()],
            &proxies,
        );
    }

    #[test]
    fn from_headers_reads_every_line_of_both_headers() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "198.51.100.9".parse().unwrap());
        headers.append("x-forwarded-for", "192.0.2.7".parse().unwrap());
        headers.append("forwarded", "for=192.0.2.7".parse().unwrap());
        let proxies = trusted(&["10.0.0.1"]);
        assert_eq!(
            from_headers(ip("10.0.0.1"), &headers, &proxies),
            ip("192.0.2.7")
        );
        assert_eq!(
            from_headers(ip("10.0.0.2"), &headers, &proxies),
            ip("10.0.0.2")
        );
    }

    #[tokio::test]
    async fn the_middleware_puts_the_client_into_the_request() {
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt;

        let app = axum::Router::new()
            .route(
                "/",
                get(|ClientAddr(client): ClientAddr| async move { client.to_string() }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(trusted(&["127.0.0.1"])),
                identify,
            ));
        let ask = |from: &str, xff: &str| {
            let app = app.clone();
            let peer: SocketAddr = format!("{from}:40000").parse().unwrap();
            let request = Request::get("/")
                .header("x-forwarded-for", xff)
                .body(Body::empty())
                .unwrap();
            async move {
                let response = app
                    .layer(MockConnectInfo(peer))
                    .oneshot(request)
                    .await
                    .unwrap();
                let body = axum::body::to_bytes(response.into_body(), 1024)
                    .await
                    .unwrap();
                String::from_utf8(body.to_vec()).unwrap()
            }
        };
        assert_eq!(ask("127.0.0.1", "192.0.2.7").await, "192.0.2.7");
        assert_eq!(ask("127.0.0.2", "192.0.2.7").await, "127.0.0.2");
    }
}
