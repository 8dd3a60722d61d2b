//! Test support: a hand-written SIP peer on a UDP socket (a trunk, or an agent's phone), for what
//! SIPp cannot do (hold back an ACK) or where it cannot go (a test on tokio's paused clock, whose
//! waits are simulated: every deadline here is on tokio's clock).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// A trunk (or phone) speaking SIP on `sock` to the server at `server`: its INVITE offers PCMA and
/// telephone-event on `media_port`, from `caller` to the demo tenant's number.
pub struct RawTrunk<'a> {
    sock: &'a UdpSocket,
    server: SocketAddr,
    media_port: u16,
    caller: String,
    call_id: String,
}

impl<'a> RawTrunk<'a> {
    pub fn new(sock: &'a UdpSocket, server: SocketAddr, media_port: u16, caller: &str) -> Self {
        RawTrunk {
            sock,
            server,
            media_port,
            caller: caller.to_owned(),
            call_id: format!("raw-trunk-{}@127.0.0.1", std::process::id()),
        }
    }

    fn me(&self) -> SocketAddr {
        self.sock.local_addr().expect("addr")
    }

    /// The To line of our first INVITE (no tag).
    pub fn to_line(&self) -> String {
        format!("To: <sip:{}@{}>", super::server::TENANT_NUMBER, self.server)
    }

    fn head(&self, method: &str, cseq: u32, to: &str) -> String {
        let me = self.me();
        format!(
            "{method} sip:{}@{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-raw-{method}-{cseq}\r\n\
             From: <sip:{}@{me}>;tag=rawtrunk\r\n{to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:trunk@{me}>\r\nMax-Forwards: 70\r\n",
            super::server::TENANT_NUMBER,
            self.server,
            self.caller,
            self.call_id
        )
    }

    /// An INVITE (CSeq `cseq`) whose SDP offer says `a={direction}`.
    pub fn invite(&self, cseq: u32, direction: &str) -> String {
        let sdp = format!(
            "v=0\r\no=- 1 {cseq} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na={direction}\r\n",
            self.media_port
        );
        format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            self.head("INVITE", cseq, &self.to_line()),
            sdp.len()
        )
    }

    /// A re-INVITE (CSeq `cseq`) in the dialog whose To is `to`, its SDP offer moving our RTP to
    /// `media_port` (same session, version `cseq`).
    pub fn reinvite(&self, cseq: u32, to: &str, media_port: u16) -> String {
        let sdp = format!(
            "v=0\r\no=- 1 {cseq} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {media_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
        );
        format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            self.head("INVITE", cseq, &format!("To: {to}")),
            sdp.len()
        )
    }

    /// A body-less request `method` (CSeq `cseq`) in the dialog whose To (with our peer's tag) is
    /// `to`.
    pub fn in_dialog(&self, method: &str, cseq: u32, to: &str) -> String {
        format!(
            "{}Content-Length: 0\r\n\r\n",
            self.head(method, cseq, &format!("To: {to}"))
        )
    }

    pub async fn send(&self, msg: &str) {
        self.sock
            .send_to(msg.as_bytes(), self.server)
            .await
            .expect("send");
    }

    /// The next message that arrives before `until`; `None` without one.
    pub async fn recv_until(&self, until: Instant) -> Option<String> {
        recv_until(self.sock, until).await
    }

    /// The next request `method` that arrives (bounded); `None` without one.
    pub async fn request(&self, method: &str, limit: Duration) -> Option<String> {
        let until = Instant::now() + limit;
        loop {
            let msg = self.recv_until(until).await?;
            if msg.starts_with(&format!("{method} ")) {
                return Some(msg);
            }
        }
    }

    /// The first final response to our request `cseq method` (bounded).
    pub async fn response_to(&self, cseq: u32, method: &str, limit: Duration) -> String {
        let until = Instant::now() + limit;
        let want = format!("CSeq: {cseq} {method}");
        loop {
            let msg = self
                .recv_until(until)
                .await
                .unwrap_or_else(|| panic!("no final answer to {want} within {limit:?}"));
            if msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") && msg.contains(&want) {
                return msg;
            }
        }
    }
}

/// The next datagram on `sock` before `until` (tokio's clock), as text; `None` without one.
pub async fn recv_until(sock: &UdpSocket, until: Instant) -> Option<String> {
    if Instant::now() >= until {
        return None;
    }
    let mut buf = vec![0u8; 8192];
    match tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// The value of header `name` in a SIP message.
pub fn header(msg: &str, name: &str) -> Option<String> {
    msg.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(|v| v.trim().to_owned())
}

/// A response with `status` (`"200 OK"`) to `request` (as received): its Via, From, To (with
/// `to_tag` added unless it has one), Call-ID and CSeq; with `extra` header lines and `body` (SDP
/// when not empty).
pub fn response_to(request: &str, status: &str, to_tag: &str, extra: &str, body: &str) -> String {
    let field = |name: &str| header(request, name).unwrap_or_else(|| panic!("{name} in {request}"));
    let to = field("To");
    let to = if to.contains(";tag=") {
        to
    } else {
        format!("{to};tag={to_tag}")
    };
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n{body}",
        field("Via"),
        field("From"),
        field("Call-ID"),
        field("CSeq"),
        body.len()
    )
}
