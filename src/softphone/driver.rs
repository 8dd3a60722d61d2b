//! The one thin tokio driver for our user agents: it owns a SIP UDP socket and an RTP UDP socket
//! (bound by whoever starts it, so tests use `127.0.0.1:0`), feeds a [`UserAgent`] what arrives,
//! sends what it says, hands its events to a callback, and sleeps until its next deadline. It
//! decides nothing: what happens next is the user agent's business.
//!
//! One loop turn: read `now` once (tokio's clock, so a paused test runtime controls it), hand the input that
//! woke us (a datagram or a control message) to the user agent, fire its timer if due, drain
//! [`UserAgent::poll_transmit`] onto the sockets, drain [`UserAgent::poll_event`] into the
//! callback, stop if [`UserAgent::is_finished`], else wait for the next datagram, control
//! message, deadline or shutdown.
//!
//! Control messages (`C`, e.g. "hang up") reach the user agent through a caller-supplied function,
//! so the driver stays the same for every user agent. `shutdown` is the hard stop: when it
//! completes the driver returns at once, whatever the user agent's state (a graceful hang-up is a
//! control message).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{Socket, UserAgent};

/// The largest datagram we read (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

/// A user agent with its two sockets, ready to run.
#[derive(Debug)]
pub struct Driver<U> {
    ua: U,
    sip: UdpSocket,
    rtp: UdpSocket,
}

/// Why the driver returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The user agent said it is finished.
    Finished,
    /// The shutdown future completed first.
    Shutdown,
}

enum Input<C> {
    Datagram(Socket, SocketAddr, Bytes),
    Control(C),
    ControlClosed,
    Timer,
    Shutdown,
}

impl<U: UserAgent> Driver<U> {
    /// Wraps `ua` with its sockets; nothing runs until [`Driver::run`].
    pub fn new(ua: U, sip: UdpSocket, rtp: UdpSocket) -> Driver<U> {
        Driver { ua, sip, rtp }
    }

    /// The bound SIP and RTP addresses.
    pub fn local_addrs(&self) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((self.sip.local_addr()?, self.rtp.local_addr()?))
    }

    /// The user agent (to read its state before or after running).
    pub fn user_agent(&self) -> &U {
        &self.ua
    }

    /// Runs until the user agent is finished or `shutdown` completes, and gives the user agent
    /// back. `control` messages are applied with `apply(ua, now, message)`; a closed control
    /// channel is simply no longer read. Each event goes to `on_event` as it happens. Errors are
    /// socket failures other than ICMP "refused/reset" reports, which are ignored as UDP does.
    pub async fn run<C>(
        mut self,
        mut control: mpsc::Receiver<C>,
        mut apply: impl FnMut(&mut U, Instant, C),
        mut on_event: impl FnMut(U::Event),
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<(U, Stopped)> {
        tokio::pin!(shutdown);
        let mut control_open = true;
        let mut sip_buf = vec![0u8; MAX_DATAGRAM];
        let mut rtp_buf = vec![0u8; MAX_DATAGRAM];
        let mut input: Option<Input<C>> = None;
        loop {
            let now = tokio::time::Instant::now().into_std();
            match input.take() {
                Some(Input::Datagram(socket, from, bytes)) => {
                    self.ua.handle_datagram(now, socket, from, bytes)
                }
                Some(Input::Control(c)) => apply(&mut self.ua, now, c),
                Some(Input::ControlClosed) => control_open = false,
                Some(Input::Shutdown) => return Ok((self.ua, Stopped::Shutdown)),
                Some(Input::Timer) | None => {}
            }
            if self.ua.poll_timeout().is_some_and(|t| t <= now) {
                self.ua.handle_timeout(now);
            }
            while let Some(d) = self.ua.poll_transmit() {
                let socket = match d.socket {
                    Socket::Sip => &self.sip,
                    Socket::Rtp => &self.rtp,
                };
                if let Err(e) = socket.send_to(&d.bytes, d.to).await {
                    // UDP: an unreachable peer is the user agent's timers' business.
                    tracing::debug!(to = %d.to, "softphone send failed: {e}");
                }
            }
            while let Some(e) = self.ua.poll_event() {
                on_event(e);
            }
            if self.ua.is_finished() {
                return Ok((self.ua, Stopped::Finished));
            }
            let deadline = self.ua.poll_timeout();
            input = Some(tokio::select! {
                biased;
                () = &mut shutdown => Input::Shutdown,
                c = control.recv(), if control_open => match c {
                    Some(c) => Input::Control(c),
                    None => Input::ControlClosed,
                },
                r = self.sip.recv_from(&mut sip_buf) => match received(r)? {
                    Some((n, from)) => Input::Datagram(Socket::Sip, from, Bytes::copy_from_slice(&sip_buf[..n])),
                    None => Input::Timer,
                },
                r = self.rtp.recv_from(&mut rtp_buf) => match received(r)? {
                    Some((n, from)) => Input::Datagram(Socket::Rtp, from, Bytes::copy_from_slice(&rtp_buf[..n])),
                    None => Input::Timer,
                },
                () = sleep_until(deadline) => Input::Timer,
            });
        }
    }
}

/// A read result: `None` for the ICMP errors a UDP socket reports on a later read.
fn received(r: io::Result<(usize, SocketAddr)>) -> io::Result<Option<(usize, SocketAddr)>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::softphone::Datagram;
    use std::collections::VecDeque;
    use std::time::Duration;

    /// Sends "ping" to `peer` at start, counts echoes, stops after `want` echoes or 200 ms.
    #[derive(Debug)]
    struct Pinger {
        peer: SocketAddr,
        started: bool,
        echoes: usize,
        want: usize,
        give_up: Option<Instant>,
        out: VecDeque<Datagram>,
        events: VecDeque<String>,
        stopped: bool,
    }

    impl UserAgent for Pinger {
        type Event = String;
        fn handle_datagram(&mut self, _now: Instant, socket: Socket, _from: SocketAddr, b: Bytes) {
            self.echoes += 1;
            self.events
                .push_back(format!("{socket:?} {}", String::from_utf8_lossy(&b)));
        }
        fn handle_timeout(&mut self, now: Instant) {
            if !self.started {
                self.started = true;
                self.give_up = Some(now + Duration::from_millis(200));
                for socket in [Socket::Sip, Socket::Rtp] {
                    self.out.push_back(Datagram {
                        socket,
                        to: self.peer,
                        bytes: Bytes::from_static(b"ping"),
                    });
                }
            } else if self.give_up.is_some_and(|g| now >= g) {
                self.stopped = true;
                self.events.push_back("gave up".into());
            }
        }
        fn poll_transmit(&mut self) -> Option<Datagram> {
            self.out.pop_front()
        }
        fn poll_event(&mut self) -> Option<String> {
            self.events.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            if self.started {
                self.give_up
            } else {
                Some(Instant::now() - Duration::from_secs(1))
            }
        }
        fn is_finished(&self) -> bool {
            self.stopped || self.echoes >= self.want
        }
    }

    fn pinger(peer: SocketAddr, want: usize) -> Pinger {
        Pinger {
            peer,
            started: false,
            echoes: 0,
            want,
            give_up: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stopped: false,
        }
    }

    async fn sockets() -> (UdpSocket, UdpSocket) {
        (
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        )
    }

    #[tokio::test]
    async fn datagrams_go_out_on_their_socket_and_echoes_come_back() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let (sip, rtp) = sockets().await;
        let driver = Driver::new(pinger(peer, 2), sip, rtp);
        let (_tx, rx) = mpsc::channel::<()>(1);
        let mut seen = Vec::new();
        let (ua, why) = driver
            .run(rx, |_, _, ()| {}, |e| seen.push(e), std::future::pending())
            .await
            .unwrap();
        assert_eq!(why, Stopped::Finished);
        assert_eq!(ua.echoes, 2);
        seen.sort();
        assert_eq!(seen, ["Rtp ping", "Sip ping"]);
    }

    #[tokio::test]
    async fn deadlines_fire_on_tokio_time() {
        // Nobody answers: the user agent gives up after 200 ms of tokio time.
        let nobody = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (sip, rtp) = sockets().await;
        let (_tx, rx) = mpsc::channel::<()>(1);
        let mut seen = Vec::new();
        let started = tokio::time::Instant::now();
        let (_, why) = Driver::new(pinger(nobody.local_addr().unwrap(), 1), sip, rtp)
            .run(rx, |_, _, ()| {}, |e| seen.push(e), std::future::pending())
            .await
            .unwrap();
        assert_eq!(why, Stopped::Finished);
        assert_eq!(seen, ["gave up"]);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn control_messages_and_shutdown() {
        let nobody = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (sip, rtp) = sockets().await;
        let (tx, rx) = mpsc::channel::<usize>(1);
        tx.send(7).await.unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut applied = Vec::new();
        let run = Driver::new(pinger(nobody.local_addr().unwrap(), 1), sip, rtp).run(
            rx,
            |ua, _, c| {
                applied.push(c);
                ua.want += c;
            },
            |_| {},
            async {
                let _ = stop_rx.await;
            },
        );
        let stopper = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stop_tx.send(());
        };
        let (result, ()) = tokio::join!(run, stopper);
        let (ua, why) = result.unwrap();
        assert_eq!(why, Stopped::Shutdown);
        assert_eq!(ua.want, 8);
        assert_eq!(applied, [7]);
    }
}
