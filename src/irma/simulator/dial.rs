//! **Bel nu** (Call now): what the Yivi app does after a disclosure — dial the `tel:` return URL and
//! key in the link code — done by the demo itself, so a newcomer sees a verified call with only a
//! browser.
//!
//! The page never gets the code: it asks `POST /irma-sim/session/{clientToken}/call`, and the
//! server reads the session's return URL and hands number and code to a [`Dialer`] — in `demo`, our
//! own SIP caller ([`crate::softphone::caller`]) calling the demo's SIP address over loopback. One
//! call per disclosed session. The page follows the call with `GET …/call` ([`CallProgress`]) and
//! hangs up with `DELETE …/call`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::pii::Pii;

/// One call the demo places for a disclosed session.
#[derive(Debug)]
pub struct DialRequest {
    /// The number of the `tel:` URL (`+31…`).
    pub number: String,
    /// The digits after the comma: the link code.
    pub code: Pii<String>,
    /// Send the code as tones in the audio instead of RFC 4733 telephone-events.
    pub tones: bool,
}

/// What happened on a placed call, in order. No step holds the code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum DialStep {
    Dialling,
    Ringing,
    Answered,
    /// The code went out, as `rfc4733` events or `tones`.
    CodeSent {
        method: String,
        digits: usize,
    },
    /// The caller heard audio from the far end (ringback, the waiting signal, an agent).
    AudioHeard,
    /// The call ended; `by` is `caller` or `server`.
    Ended {
        by: String,
    },
    /// The call did not go through.
    Failed {
        why: String,
    },
}

impl DialStep {
    fn is_final(&self) -> bool {
        matches!(self, DialStep::Ended { .. } | DialStep::Failed { .. })
    }
}

/// The boxed future a [`Dialer`] returns.
pub type DialFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Places a call: reports each step on `progress` until the call ends, and hangs up when `hangup`
/// fires (or its sender is dropped).
pub trait Dialer: Send + Sync {
    fn dial(
        &self,
        request: DialRequest,
        progress: mpsc::Sender<DialStep>,
        hangup: oneshot::Receiver<()>,
    ) -> DialFuture;
}

/// The steps of one session's call so far, as `GET …/call` shows them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CallProgress {
    pub steps: Vec<DialStep>,
    /// The call is over (ended or failed).
    pub done: bool,
}

/// At most this many steps are kept per call (a call has a handful; this bounds a misbehaving dialer).
const MAX_STEPS: usize = 32;

/// A call in progress or done, shared between the task following it and the HTTP handlers.
#[derive(Default)]
pub(crate) struct PlacedCall {
    progress: Mutex<CallProgress>,
    hangup: Mutex<Option<oneshot::Sender<()>>>,
}

impl PlacedCall {
    /// Starts `request` on `dialer` in the background and follows it.
    pub(crate) fn start(dialer: Arc<dyn Dialer>, request: DialRequest) -> Arc<PlacedCall> {
        let (hangup_tx, hangup_rx) = oneshot::channel();
        let placed = Arc::new(PlacedCall {
            progress: Mutex::new(CallProgress::default()),
            hangup: Mutex::new(Some(hangup_tx)),
        });
        let (tx, mut rx) = mpsc::channel(MAX_STEPS);
        let follow = placed.clone();
        tokio::spawn(async move {
            let dialling = dialer.dial(request, tx, hangup_rx);
            let record = async {
                while let Some(step) = rx.recv().await {
                    follow.record(step);
                }
            };
            tokio::join!(dialling, record);
            // A dialer that stopped without a final step still ends the call for the page.
            follow.finish();
        });
        placed
    }

    pub(crate) fn progress(&self) -> CallProgress {
        lock(&self.progress).clone()
    }

    /// Asks the dialer to hang up; `false` when the call is already over.
    pub(crate) fn hang_up(&self) -> bool {
        match lock(&self.hangup).take() {
            Some(tx) => tx.send(()).is_ok(),
            None => false,
        }
    }

    fn record(&self, step: DialStep) {
        let mut progress = lock(&self.progress);
        if progress.done || progress.steps.len() >= MAX_STEPS {
            return;
        }
        progress.done = step.is_final();
        progress.steps.push(step);
        if progress.done {
            lock(&self.hangup).take();
        }
    }

    fn finish(&self) {
        let mut progress = lock(&self.progress);
        if !progress.done {
            progress.done = true;
            progress.steps.push(DialStep::Ended {
                by: "caller".into(),
            });
        }
        lock(&self.hangup).take();
    }
}

/// Number and code of a Yivi `tel:` return URL (`tel:+31243290000,12345678`): the number up to the
/// first comma, the code from the digits after it (commas are pauses). `None` when there is no
/// number or no code.
pub fn parse_tel(url: &str) -> Option<(String, Pii<String>)> {
    let rest = url.strip_prefix("tel:")?;
    let (number, after) = rest.split_once(',')?;
    let number = number.trim();
    let plain = number.strip_prefix('+').unwrap_or(number);
    if plain.is_empty() || plain.len() > 20 || !plain.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: String = after.chars().filter(|c| *c != ',').collect();
    if code.is_empty()
        || code.len() > 32
        || !code
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
    {
        return None;
    }
    Some((number.to_owned(), Pii::new(code)))
}

use crate::sync::lock;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_return_url_gives_number_and_code() {
        let (number, code) = parse_tel("tel:+31243290000,12345678").unwrap();
        assert_eq!(number, "+31243290000");
        assert_eq!(code.into_inner(), "12345678");
        let (_, code) = parse_tel("tel:+31243290000,,1234,5678").unwrap();
        assert_eq!(code.into_inner(), "12345678", "commas are pauses");
    }

    #[test]
    fn urls_without_number_or_code_are_refused() {
        for bad in [
            "tel:+31243290000",
            "tel:+31243290000,",
            "tel:,12345678",
            "https://example.org/,1234",
            "tel:+31abc,1234",
            "tel:+3124,12a4",
        ] {
            assert!(parse_tel(bad).is_none(), "{bad}");
        }
    }

    struct Scripted(Vec<DialStep>);

    impl Dialer for Scripted {
        fn dial(
            &self,
            _request: DialRequest,
            progress: mpsc::Sender<DialStep>,
            hangup: oneshot::Receiver<()>,
        ) -> DialFuture {
            let steps = self.0.clone();
            Box::pin(async move {
                for step in steps {
                    let _ = progress.send(step).await;
                }
                if hangup.await.is_ok() {
                    let _ = progress
                        .send(DialStep::Ended {
                            by: "caller".into(),
                        })
                        .await;
                }
            })
        }
    }

    fn request() -> DialRequest {
        DialRequest {
            number: "+31243290000".into(),
            code: Pii::new("12345678".into()),
            tones: false,
        }
    }

    async fn progress_until(
        placed: &PlacedCall,
        pred: impl Fn(&CallProgress) -> bool,
    ) -> CallProgress {
        for _ in 0..200 {
            let p = placed.progress();
            if pred(&p) {
                return p;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        placed.progress()
    }

    #[tokio::test]
    async fn the_page_sees_each_step_and_can_hang_up() {
        let dialer = Arc::new(Scripted(vec![
            DialStep::Dialling,
            DialStep::Answered,
            DialStep::CodeSent {
                method: "rfc4733".into(),
                digits: 8,
            },
        ]));
        let placed = PlacedCall::start(dialer, request());
        let p = progress_until(&placed, |p| p.steps.len() == 3).await;
        assert!(!p.done, "still on the line");
        assert!(placed.hang_up());
        let p = progress_until(&placed, |p| p.done).await;
        assert_eq!(
            p.steps.last(),
            Some(&DialStep::Ended {
                by: "caller".into()
            })
        );
        assert!(!placed.hang_up(), "nothing left to hang up");
    }

    #[tokio::test]
    async fn a_failed_call_is_done_and_steps_after_it_are_ignored() {
        let dialer = Arc::new(Scripted(vec![
            DialStep::Dialling,
            DialStep::Failed {
                why: "486 Busy Here".into(),
            },
            DialStep::Answered,
        ]));
        let placed = PlacedCall::start(dialer, request());
        let p = progress_until(&placed, |p| p.done).await;
        assert_eq!(p.steps.len(), 2);
        assert!(matches!(p.steps[1], DialStep::Failed { .. }));
    }
}
