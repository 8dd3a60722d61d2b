//! The demo's **Bel nu**: the IRMA simulator's [`Dialer`] made of our own [`caller`](super::caller),
//! so the simulated Yivi app places a real call — SIP and RTP over loopback — to the demo's own SIP
//! address, the same way `veilig-bellen call` does.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::caller::{place_call, CallEvent, CallOptions, CodeMethod, HangUp, Party};
use crate::irma::simulator::dial::{DialFuture, DialRequest, DialStep, Dialer};

/// Longest a **Bel nu** call stays up after the code when nobody hangs up.
pub const MAX_CALL: Duration = Duration::from_secs(30 * 60);

/// Calls `sip:NUMBER@sip` for each request.
pub struct SoftphoneDialer {
    sip: SocketAddr,
}

impl SoftphoneDialer {
    /// A dialer calling the SIP (UDP) address `sip`.
    pub fn new(sip: SocketAddr) -> SoftphoneDialer {
        SoftphoneDialer { sip }
    }
}

impl Dialer for SoftphoneDialer {
    fn dial(
        &self,
        request: DialRequest,
        progress: mpsc::Sender<DialStep>,
        hangup: oneshot::Receiver<()>,
    ) -> DialFuture {
        let uri = format!("sip:{}@{}", request.number, self.sip);
        Box::pin(async move {
            let (events_tx, mut events) = mpsc::unbounded_channel();
            let mut options = CallOptions::new(uri, request.code);
            options.method = if request.tones {
                CodeMethod::InBand
            } else {
                CodeMethod::Rfc4733
            };
            // The citizen stays on the line until they or the municipality hang up.
            options.hang_up = HangUp::After(MAX_CALL);
            options.progress = Some(events_tx);
            options.hang_up_signal = Some(hangup);
            let call = place_call(options);
            let forward = async {
                let mut heard = false;
                while let Some(event) = events.recv().await {
                    let Some(step) = step_of(&event, &mut heard) else {
                        continue;
                    };
                    if progress.send(step).await.is_err() {
                        break;
                    }
                }
            };
            let (placed, ()) = tokio::join!(call, forward);
            if let Err(e) = placed {
                tracing::warn!("Bel nu: the call could not be placed: {e}");
                let _ = progress.send(DialStep::Failed { why: e.to_string() }).await;
            }
        })
    }
}

/// The page's step for a caller event; `None` for events the page does not show (and for audio
/// after the first time).
fn step_of(event: &CallEvent, heard: &mut bool) -> Option<DialStep> {
    Some(match event {
        CallEvent::Dialling { .. } => DialStep::Dialling,
        CallEvent::Ringing { .. } => DialStep::Ringing,
        CallEvent::Answered { .. } => DialStep::Answered,
        CallEvent::CodeSent { digits, method } => DialStep::CodeSent {
            method: match method {
                CodeMethod::Rfc4733 => "rfc4733",
                CodeMethod::Info => "info",
                CodeMethod::InBand => "tones",
            }
            .to_owned(),
            digits: *digits,
        },
        CallEvent::AudioHeard { .. } if !*heard => {
            *heard = true;
            DialStep::AudioHeard
        }
        CallEvent::Ended { by, .. } => DialStep::Ended {
            by: match by {
                Party::Caller => "caller",
                Party::FarEnd => "server",
            }
            .to_owned(),
        },
        CallEvent::Failed(failure) => DialStep::Failed {
            why: failure.to_string(),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::softphone::caller::Failure;

    #[test]
    fn the_page_sees_each_step_once_and_never_a_digit() {
        let mut heard = false;
        let sent = step_of(
            &CallEvent::CodeSent {
                digits: 8,
                method: CodeMethod::InBand,
            },
            &mut heard,
        );
        assert_eq!(
            sent,
            Some(DialStep::CodeSent {
                method: "tones".into(),
                digits: 8
            })
        );
        let audio = CallEvent::AudioHeard { level_dbfs: -20.0 };
        assert_eq!(step_of(&audio, &mut heard), Some(DialStep::AudioHeard));
        assert_eq!(step_of(&audio, &mut heard), None, "audio shown once");
        assert_eq!(
            step_of(
                &CallEvent::Ended {
                    by: Party::FarEnd,
                    after: Duration::from_secs(3)
                },
                &mut heard
            ),
            Some(DialStep::Ended {
                by: "server".into()
            })
        );
        assert_eq!(
            step_of(&CallEvent::Failed(Failure::NoAnswer), &mut heard),
            Some(DialStep::Failed {
                why: "no answer".into()
            })
        );
    }
}
