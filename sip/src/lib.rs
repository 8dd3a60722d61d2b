//! Sans-IO SIP, SDP and RTP core for veilig-bellen.
//!
//! This crate is the protocol half of the softswitch: everything that decides *what* to send and
//! *when*, and nothing that actually sends, sleeps or reads a clock. No tokio, no sockets, no
//! `Instant::now()`. The application's tokio driver (`src/sip_driver` in the root package) owns the
//! sockets and the clock, feeds this crate what arrived, and puts on the wire what it is told to.
//!
//! # What it owns
//!
//! | module | owns | RFC |
//! | --- | --- | --- |
//! | [`message`] | parsing, inspecting, building and writing SIP messages; stream framing; validation with stateless answers | 3261 §7, §8.2, §18.3, §20, §25; 4475 |
//! | [`endpoint`] | the transport and transaction layers in one object: matching (responses only from where their request went), retransmission absorption, CANCEL, `received`/`rport` | 3261 §17, §18, §9; 3581 |
//! | [`transaction`] | the four transaction state machines and their timers (A–M) as data | 3261 §17; 6026 |
//! | [`dialog`] | dialog state, in-dialog requests, 2xx retransmission until ACK, glare, session timers, REFER | 3261 §12–§15; 4028; 3515 |
//! | [`routing`] | where a request goes next: first Route or target URI, transport and port, RFC 3263 lookup plans and record ordering | 3261 §8.1.2, §18.1.1; 3263; 2782 |
//! | [`registrar`], [`auth`], [`ratelimit`] | REGISTER bindings, digest authentication, failed-login limiting per source and per account | 3261 §10.3, §22.4; 7616; 8760 |
//! | [`sdp`] | offer/answer for one audio stream (PCMA/PCMU + telephone-event), hold | 4566; 3264 |
//! | [`rtp`] | one call leg's RTP session: allowed sources, symmetric RTP learnt once per stream, sequence tracking, media timeout, sending | 3550; 4961 |
//! | [`rfc4733`] | DTMF telephone-events: the digit receiver and the sender's packet plan | 4733 |
//! | [`ports`] | the RTP port pool (numbers only; the driver binds the sockets), handing out ports in an unpredictable order | 3550 §11 |
//! | [`random`] | the keyed PRF (HMAC-SHA256 over a counter) behind branches, tags, Call-IDs and port choices | 2104; 3261 §8.1.1.4, §8.1.1.7, §19.3 |
//! | `testnet` | a lossy in-memory network with a virtual clock, to drive two endpoints in tests (only with `cfg(test)` or the `testnet` feature) | — |
//!
//! # The run loop
//!
//! Every stateful object has the same four verbs: `handle_*(now, input)` feeds it something (a
//! datagram, a TU action, a timer expiry), `poll_transmit()` says what to put on the wire,
//! `poll_event()` what happened, and `poll_timeout()` when to call `handle_timeout(now)` next.
//! After **every** `handle_*` call (and every TU call such as [`endpoint::Endpoint::respond`]) the
//! owner polls in this order:
//!
//! 1. drain `poll_transmit()` until `None` and send each [`endpoint::Transmit`];
//! 2. drain `poll_event()` until `None` and react — reactions are TU calls, so go back to 1
//!    afterwards;
//! 3. read `poll_timeout()` and sleep until then or until the next input, whichever comes first.
//!
//! Objects without a wire of their own ([`dialog::Dialog`], [`rtp::RtpSession`],
//! [`rfc4733::Rfc4733Receiver`], [`registrar::Registrar`]) have only steps 2 and 3: a dialog's
//! requests go out through the endpoint, and RTP packets are returned directly by `send_*`. The
//! application runs one task that owns the [`endpoint::Endpoint`], and one task per call that owns
//! that call's dialog and RTP sessions.
//!
//! # Time
//!
//! `now` is passed in; nothing here reads a clock. Pass a monotonic [`std::time::Instant`] (the
//! driver converts `tokio::time::Instant`, so its tests can pause time). Timers are deadlines in
//! tables ([`transaction::Timers`]), not sleeps: `poll_timeout()` returns the earliest deadline, and
//! `handle_timeout(now)` fires what is due at `now` — calling it early is harmless, calling it late
//! fires everything overdue in deadline order. That is what lets the tests run 64·T1 of
//! retransmissions in microseconds (`testnet::Pair`). Timer values come from
//! [`transaction::TimerConfig`] (RFC 3261 defaults: T1 500 ms, T2 4 s, T4 5 s).
//!
//! # Randomness
//!
//! Nothing here reads an entropy source either. Whatever must be unpredictable — branches, tags
//! and Call-IDs ([`endpoint`]), the order RTP ports are handed out in ([`ports`]) — comes from a
//! [`random::Prf`] under a [`random::RandomKey`] the driver draws from the OS once per process and
//! passes in ([`endpoint::EndpointConfig::key`]); there is no default key to fall back on. Tests
//! pass fixed keys and get the same identifiers every run. Values that need only be *different*
//! (glare back-off, SRV weights, RTP SSRCs) are plain inputs the caller draws.
//!
//! # Panics and errors
//!
//! Input from the network never panics: parsers return errors, the endpoint answers malformed
//! requests statelessly (400, 505, 416, 501, 420, 415) or drops them and counts them in
//! [`endpoint::EndpointStats`], and RTP packets that do not fit the session are dropped with a
//! reason. An `unwrap` in library code stands only on an invariant the code itself guarantees, with
//! a comment naming it. The parsers are fuzzed (`fuzz/`: `sip_message`, `sip_stream_framer`, `sdp`,
//! `rtp_rfc4733`); a panic there is a bug.
//!
//! A TU call the current state forbids (answering a transaction twice, cancelling a non-INVITE)
//! returns an error, never panics. Each module has its own error type; [`Error`] gathers them all
//! for callers that want one type (`?` converts through `From`).
//!
//! Personal data (caller numbers, link-code digits) is not logged here; [`rfc4733::Digit`]'s
//! `Debug` hides its value.
//!
//! # Example: driving an endpoint
//!
//! A phone sends OPTIONS; the TU answers 200. In the application the datagram comes from a UDP
//! socket and each [`endpoint::Transmit`] goes back out through one.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Instant;
//!
//! use sip::endpoint::{Endpoint, EndpointConfig, Event, Local};
//! use sip::message::{Response, StatusCode};
//! use sip::random::RandomKey;
//! use sip::transaction::Transport;
//!
//! # fn main() -> Result<(), sip::Error> {
//! let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
//! let phone: SocketAddr = "127.0.0.1:40000".parse().unwrap();
//! // The driver draws the key from the OS (`rand::random::<[u8; 32]>()`); a test may fix it.
//! let key = RandomKey::from_bytes([0x42; 32]);
//! let mut ep = Endpoint::new(EndpointConfig::new(key));
//! ep.add_local(Local { transport: Transport::Udp, addr: local, advertise: None });
//!
//! let now = Instant::now(); // the driver's clock; this crate never reads one
//! let datagram = bytes::Bytes::from_static(
//!     b"OPTIONS sip:vb@127.0.0.1 SIP/2.0\r\n\
//!       Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKdoc1;rport\r\n\
//!       Max-Forwards: 70\r\n\
//!       From: <sip:phone@127.0.0.1>;tag=p1\r\n\
//!       To: <sip:vb@127.0.0.1>\r\n\
//!       Call-ID: doc-example\r\n\
//!       CSeq: 1 OPTIONS\r\n\
//!       Content-Length: 0\r\n\r\n",
//! );
//! ep.handle_datagram(now, Transport::Udp, local, phone, datagram);
//!
//! // 1. transmit: nothing yet (only an INVITE gets an automatic 100 Trying); 2. events.
//! assert!(ep.poll_transmit().is_none());
//! while let Some(event) = ep.poll_event() {
//!     if let Event::Request { id, request, .. } = event {
//!         let tag = ep.new_tag();
//!         let ok = Response::for_request(&request, StatusCode::OK, None).with_to_tag(&tag);
//!         ep.respond(now, id, ok)?; // a TU call: poll_transmit again
//!     }
//! }
//! let answer = ep.poll_transmit().expect("the 200 OK");
//! assert_eq!(answer.to, phone); // the packet's source, never a host named in the message
//! assert!(answer.bytes.starts_with(b"SIP/2.0 200 OK"));
//!
//! // 3. when to wake: the server transaction answers retransmissions for 64·T1 (Timer J).
//! let wake = ep.poll_timeout().expect("Timer J");
//! ep.handle_timeout(wake);
//! assert_eq!(ep.transaction_count(), (0, 0));
//! # Ok(())
//! # }
//! ```
//!
//! A complete user agent built from [`endpoint::Endpoint`] and [`dialog::Dialog`] — INVITE, ACK,
//! 2xx retransmission, glare, session refresh, REFER — is the `Phone` of `sip/tests/dialogs.rs`;
//! `sip/tests/transactions.rs` shows every transaction timer over a lossy `testnet` link.

#![forbid(unsafe_code)]

pub mod auth;
pub mod dialog;
pub mod endpoint;
mod error;
pub mod message;
pub mod ports;
pub mod random;
pub mod ratelimit;
pub mod registrar;
pub mod rfc4733;
pub mod routing;
pub mod rtp;
pub mod sdp;
#[cfg(any(test, feature = "testnet"))]
pub mod testnet;
pub mod transaction;

pub use error::Error;
