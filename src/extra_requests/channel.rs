//! How an extra request reaches the citizen: a [`CitizenChannel`] carries [`CitizenPush`]es.
//!
//! * A **phone caller**'s channel is the page that started the disclosure, while it keeps asking
//!   `GET /api/v1/sessions/{token}/status?wait=N&requests=V` ([`crate::http::sessions`]): [`Pages`]
//!   holds, per session token, the current push, a version number that changes with it, and when
//!   the page last asked. A page counts as open while a request of it is waiting for news, and for
//!   [`RequestTiming::page_open`](super::RequestTiming::page_open) after its last one ended.
//! * A **browser caller**'s channel is the call's WebRTC data channel: the browser-call task
//!   attaches a [`CitizenChannel::DataChannel`] ([`ExtraRequests::attach`](super::ExtraRequests::attach))
//!   and sends each push it receives to the page as JSON, as the status answer's `request` holds it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::view::RequestState;
use crate::store::FrontendToken;

/// Most pages followed at once; beyond that a page is answered but not followed (its caller's
/// requests are `unreachable`).
const MAX_PAGES: usize = 100_000;
/// A page that has not asked for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// How often forgotten pages are swept out (at most).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What the citizen's page is told about the agent's latest request: the status answer's
/// `request` (`{"id","label","labelEn","kind","state","sessionPtr","frontendRequest"}`), or one
/// data-channel message.
#[derive(Clone, Serialize)]
pub struct CitizenPush {
    /// The request's number within the call.
    pub id: u32,
    /// Dutch label.
    pub label: String,
    #[serde(rename = "labelEn")]
    pub label_en: String,
    /// `disclose` or `sign`.
    pub kind: &'static str,
    pub state: PageState,
    /// The Yivi session to show, while `pending`.
    #[serde(rename = "sessionPtr", skip_serializing_if = "Option::is_none")]
    pub session_ptr: Option<serde_json::Value>,
    /// yivi-frontend's `frontendRequest` for that session, while `pending`.
    #[serde(rename = "frontendRequest", skip_serializing_if = "Option::is_none")]
    pub frontend_request: Option<serde_json::Value>,
}

impl std::fmt::Debug for CitizenPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The session pointer lets whoever holds it answer the session: keep it out of logs.
        f.debug_struct("CitizenPush")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl CitizenPush {
    /// The push for a new state: the session pointer goes once the request is over.
    pub fn with_state(&self, state: RequestState) -> CitizenPush {
        let state = PageState::of(state);
        let keep = state == PageState::Pending;
        CitizenPush {
            state,
            session_ptr: self.session_ptr.clone().filter(|_| keep),
            frontend_request: self.frontend_request.clone().filter(|_| keep),
            ..self.clone()
        }
    }
}

/// A request's state as the citizen's page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    /// Show the Yivi session.
    Pending,
    /// Thank you: the municipality has it.
    Done,
    /// Stopped (by the citizen, the agent, or the call's end).
    Cancelled,
    /// The time ran out.
    Expired,
    /// The answer was not accepted.
    Refused,
}

impl PageState {
    pub fn of(state: RequestState) -> PageState {
        match state {
            RequestState::Sent | RequestState::Shown => PageState::Pending,
            RequestState::Done => PageState::Done,
            RequestState::Cancelled => PageState::Cancelled,
            RequestState::Expired | RequestState::Unreachable => PageState::Expired,
            RequestState::Refused => PageState::Refused,
        }
    }
}

/// How an extra request reaches the citizen during a call.
#[derive(Clone, Debug)]
pub enum CitizenChannel {
    /// A phone caller: the status stream of the page that started the disclosure ([`Pages`]).
    StatusStream(FrontendToken),
    /// A browser caller: the call's WebRTC data channel. The browser-call task reads these and
    /// sends each to the page (JSON, as [`CitizenPush`] serializes); a closed or full channel
    /// makes the request `unreachable`.
    DataChannel(mpsc::Sender<CitizenPush>),
}

/// What became of handing a push to a channel.
pub(crate) enum Delivery {
    /// The page will get it; for a status stream, `picked_up` fires when it does.
    Sent {
        picked_up: Option<oneshot::Receiver<()>>,
    },
    /// Nobody is there to get it.
    Unreachable,
}

impl CitizenChannel {
    /// Whether a push could reach the citizen now.
    pub(crate) fn is_open(&self, pages: &Pages, page_open: Duration) -> bool {
        match self {
            CitizenChannel::StatusStream(token) => pages.is_open(token, Instant::now(), page_open),
            CitizenChannel::DataChannel(tx) => !tx.is_closed(),
        }
    }

    /// Hands `push` (a new request) to the citizen.
    pub(crate) fn deliver(&self, pages: &Pages, push: CitizenPush) -> Delivery {
        match self {
            CitizenChannel::StatusStream(token) => match pages.push(token, push) {
                Some(picked_up) => Delivery::Sent {
                    picked_up: Some(picked_up),
                },
                None => Delivery::Unreachable,
            },
            CitizenChannel::DataChannel(tx) => match tx.try_send(push) {
                Ok(()) => Delivery::Sent { picked_up: None },
                Err(_) => Delivery::Unreachable,
            },
        }
    }

    /// Tells the citizen's page that request `push.id` changed (best effort).
    pub(crate) fn update(&self, pages: &Pages, push: CitizenPush) {
        match self {
            CitizenChannel::StatusStream(token) => pages.update(token, push),
            CitizenChannel::DataChannel(tx) => {
                // A page that is gone cannot be told; the agent's card already says it.
                let _ = tx.try_send(push);
            }
        }
    }
}

/// What a page's status request learns about the agent's requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Listened {
    /// Pass it back as `requests=` next time: the answer waits until it changes.
    pub version: u64,
    /// The agent's latest request, while the page should show it or its outcome.
    pub push: Option<CitizenPushJson>,
}

/// [`CitizenPush`] as JSON, ready for the status answer.
pub type CitizenPushJson = serde_json::Value;

/// The pages of phone callers that follow their session's status (see the module docs).
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Pages {
    inner: Arc<Mutex<PagesInner>>,
}

#[derive(Default)]
struct PagesInner {
    pages: HashMap<FrontendToken, Page>,
    /// Hands out versions; every change of any page takes the next one, so a page forgotten and
    /// met again never repeats a version its client saw.
    clock: u64,
    swept: Option<Instant>,
}

struct Page {
    /// Status requests of this page waiting right now.
    waiting: usize,
    /// When the page last asked (or its last waiting request ended).
    last_seen: Instant,
    push: Option<CitizenPush>,
    version: watch::Sender<u64>,
    /// Fires when the page first receives the current request.
    picked_up: Option<oneshot::Sender<()>>,
}

impl Pages {
    /// A status request of the page holding `token` (a known session's), which has seen
    /// `version` (0 at first): answers at once when the version differs, else waits up to `wait`
    /// for a change. The page counts as open meanwhile.
    pub async fn listen(&self, token: &FrontendToken, version: u64, wait: Duration) -> Listened {
        let Some(mut changes) = self.enter(token) else {
            return Listened {
                version,
                push: None,
            };
        };
        let _waiting = Waiting { pages: self, token };
        let current = *changes.borrow_and_update();
        if current == version {
            // Ends at a change, at the wait's end, or (a channel that closed) at once.
            let _ = tokio::time::timeout(wait, changes.changed()).await;
        }
        self.snapshot(token, version)
    }

    /// Registers a waiting request of `token`'s page; its change feed. `None` when too many
    /// pages are followed already.
    fn enter(&self, token: &FrontendToken) -> Option<watch::Receiver<u64>> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        if !inner.pages.contains_key(token) && inner.pages.len() >= MAX_PAGES {
            return None;
        }
        inner.clock += 1;
        let fresh = inner.clock;
        let page = inner.pages.entry(token.clone()).or_insert_with(|| Page {
            waiting: 0,
            last_seen: now,
            push: None,
            version: watch::channel(fresh).0,
            picked_up: None,
        });
        page.waiting += 1;
        page.last_seen = now;
        Some(page.version.subscribe())
    }

    /// The page's news now; the current request counts as received when it goes out.
    fn snapshot(&self, token: &FrontendToken, seen: u64) -> Listened {
        let mut inner = self.lock();
        let Some(page) = inner.pages.get_mut(token) else {
            return Listened {
                version: seen,
                push: None,
            };
        };
        let version = *page.version.borrow();
        if let Some(picked_up) = page.picked_up.take() {
            // The agent's side may have stopped waiting; nothing to tell then.
            let _ = picked_up.send(());
        }
        Listened {
            version,
            push: page
                .push
                .as_ref()
                .and_then(|p| serde_json::to_value(p).ok()),
        }
    }

    /// Whether `token`'s page is open at `now`: asking right now, or within `open` of its last
    /// request.
    pub fn is_open(&self, token: &FrontendToken, now: Instant, open: Duration) -> bool {
        self.lock()
            .pages
            .get(token)
            .is_some_and(|p| p.waiting > 0 || now.saturating_duration_since(p.last_seen) <= open)
    }

    /// Shows `push` on `token`'s page (replacing what it showed); fires the receiver when the page
    /// gets it. `None` for a page never seen.
    fn push(&self, token: &FrontendToken, push: CitizenPush) -> Option<oneshot::Receiver<()>> {
        let mut inner = self.lock();
        inner.clock += 1;
        let version = inner.clock;
        let page = inner.pages.get_mut(token)?;
        let (tx, rx) = oneshot::channel();
        page.push = Some(push);
        page.picked_up = Some(tx);
        page.version.send_replace(version);
        Some(rx)
    }

    /// The page's current request `push.id` changed.
    fn update(&self, token: &FrontendToken, push: CitizenPush) {
        let mut inner = self.lock();
        inner.clock += 1;
        let version = inner.clock;
        let Some(page) = inner.pages.get_mut(token) else {
            return;
        };
        if page.push.as_ref().is_some_and(|p| p.id == push.id) {
            page.push = Some(push);
            page.version.send_replace(version);
        }
    }

    fn leave(&self, token: &FrontendToken) {
        let mut inner = self.lock();
        if let Some(page) = inner.pages.get_mut(token) {
            page.waiting = page.waiting.saturating_sub(1);
            page.last_seen = Instant::now();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PagesInner> {
        // Every critical section is a few field updates: a poisoned map is still consistent.
        crate::sync::lock(&self.inner)
    }
}

impl PagesInner {
    /// Forgets pages quiet for [`FORGET_AFTER`], at most every [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        self.pages.retain(|_, p| {
            p.waiting > 0 || now.saturating_duration_since(p.last_seen) < FORGET_AFTER
        });
    }
}

/// A waiting status request; leaving (answered, or the client went away) updates the page.
struct Waiting<'a> {
    pages: &'a Pages,
    token: &'a FrontendToken,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pages.leave(self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(id: u32) -> CitizenPush {
        CitizenPush {
            id,
            label: "Adres".into(),
            label_en: "Address".into(),
            kind: "disclose",
            state: PageState::Pending,
            session_ptr: Some(
                serde_json::json!({"u": "https://irma.example/x", "irmaqr": "disclosing"}),
            ),
            frontend_request: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_page_gets_the_push_at_once_and_counts_as_open() {
        let pages = Pages::default();
        let token = FrontendToken::generate();
        let open = Duration::from_secs(10);
        assert!(!pages.is_open(&token, Instant::now(), open), "never seen");
        // First look: nothing yet.
        let first = pages.listen(&token, 0, Duration::ZERO).await;
        assert_eq!(first.push, None);
        assert!(pages.is_open(&token, Instant::now(), open));

        let waiting = {
            let pages = pages.clone();
            let token = token.clone();
            let seen = first.version;
            tokio::spawn(async move { pages.listen(&token, seen, Duration::from_secs(15)).await })
        };
        tokio::task::yield_now().await;
        let Delivery::Sent {
            picked_up: Some(picked_up),
        } = CitizenChannel::StatusStream(token.clone()).deliver(&pages, push(1))
        else {
            panic!("the page is known");
        };
        let got = waiting.await.unwrap();
        assert_ne!(got.version, first.version);
        let json = got.push.unwrap();
        assert_eq!(json["id"], 1);
        assert_eq!(json["state"], "pending");
        assert_eq!(json["sessionPtr"]["irmaqr"], "disclosing");
        assert!(
            picked_up.await.is_ok(),
            "the agent's side learns it was shown"
        );

        // The outcome replaces it, without the session pointer.
        CitizenChannel::StatusStream(token.clone())
            .update(&pages, push(1).with_state(RequestState::Done));
        let done = pages
            .listen(&token, got.version, Duration::from_secs(15))
            .await;
        let json = done.push.unwrap();
        assert_eq!(json["state"], "done");
        assert!(json.get("sessionPtr").is_none());
        // An update of another (older) request changes nothing.
        CitizenChannel::StatusStream(token.clone())
            .update(&pages, push(7).with_state(RequestState::Cancelled));
        assert_eq!(
            pages
                .listen(&token, done.version, Duration::ZERO)
                .await
                .push
                .unwrap()["id"],
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_that_stopped_asking_is_closed_after_the_grace() {
        let pages = Pages::default();
        let token = FrontendToken::generate();
        let open = Duration::from_secs(10);
        let seen = pages.listen(&token, 0, Duration::from_secs(5)).await;
        assert!(pages.is_open(&token, Instant::now(), open));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!pages.is_open(&token, Instant::now(), open));
        // A page waiting right now is open however long ago it began.
        let waiting = {
            let pages = pages.clone();
            let token = token.clone();
            tokio::spawn(async move {
                pages
                    .listen(&token, seen.version, Duration::from_secs(15))
                    .await
            })
        };
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(pages.is_open(&token, Instant::now(), Duration::ZERO));
        let unchanged = waiting.await.unwrap();
        assert_eq!(unchanged.version, seen.version, "no news within the wait");
        assert!(unchanged.push.is_none());
        // A data channel is open while its receiver lives.
        let (tx, rx) = mpsc::channel(1);
        let channel = CitizenChannel::DataChannel(tx);
        assert!(channel.is_open(&pages, open));
        drop(rx);
        assert!(!channel.is_open(&pages, open));
        assert!(matches!(
            channel.deliver(&pages, push(2)),
            Delivery::Unreachable
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_pages_are_forgotten_and_an_unknown_page_gets_no_push() {
        let pages = Pages::default();
        let token = FrontendToken::generate();
        assert!(matches!(
            CitizenChannel::StatusStream(token.clone()).deliver(&pages, push(1)),
            Delivery::Unreachable
        ));
        pages.listen(&token, 0, Duration::ZERO).await;
        tokio::time::advance(FORGET_AFTER + SWEEP_EVERY).await;
        pages
            .listen(&FrontendToken::generate(), 0, Duration::ZERO)
            .await;
        assert!(!pages.lock().pages.contains_key(&token));
    }

    #[test]
    fn debug_hides_the_session_pointer() {
        let dbg = format!("{:?}", push(3));
        assert!(!dbg.contains("irma.example"), "{dbg}");
    }
}
