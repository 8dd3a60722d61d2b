//! The calls the portal and the API see, and the event bus of their state changes.
//!
//! Each call task owns its state machine and publishes a [`CallView`] here whenever something an agent
//! would notice changes. Agents' requests (answer, hang up) travel back to the call task as
//! [`CallCommand`]s. Taking a call is decided here, atomically: of two agents clicking "Opnemen" at the
//! same moment, exactly one gets it.
//!
//! Ended calls stay listed, without attributes or caller number, for [`Registry::ENDED_RETENTION`].

use super::agent_outcome::AgentLegOutcome;
use super::{CallId, CallState, CallWarning, UnverifiedReason};
use crate::pii::Pii;
use crate::tenant::{AgentId, TenantId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc};

/// A verified attribute as an agent sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownAttribute {
    pub id: String,
    pub label: String,
    pub value: Pii<Option<String>>,
}

impl From<&crate::irma::VerifiedAttribute> for ShownAttribute {
    /// The attribute as the portal shows it (Dutch label).
    fn from(a: &crate::irma::VerifiedAttribute) -> ShownAttribute {
        ShownAttribute {
            id: a.id.clone(),
            label: a.label_nl.clone(),
            value: a.value.clone(),
        }
    }
}

/// Metrics for a call that just ended: one less active, one more ended with its outcome.
fn count_ended(view: &CallView) {
    let metrics = crate::metrics::global();
    metrics.calls_active.dec();
    let outcome = match (view.verified, view.reason) {
        (true, _) => "verified",
        (false, Some(reason)) => reason.as_str(),
        (false, None) => "undecided",
    };
    metrics.call_ended(outcome);
}

/// What an agent sees of one call.
#[derive(Clone, Debug)]
pub struct CallView {
    pub id: CallId,
    pub tenant: TenantId,
    pub state: CallState,
    pub verified: bool,
    /// Set once the call is classified and not verified.
    pub reason: Option<UnverifiedReason>,
    /// Calling number as the trunk presented it.
    pub caller: Pii<String>,
    /// Only for verified calls, and only until the call ends.
    pub attributes: Vec<ShownAttribute>,
    /// When the call arrived.
    pub since: SystemTime,
    /// The agent who took the call.
    pub agent: Option<AgentId>,
    pub ended_at: Option<SystemTime>,
    /// Whether caller and agent talk through our relay or end to end (`media = "direct"`).
    pub media: super::direct::MediaPath,
    /// The call was handed over by REFER and left us (`transfer = "refer"`, or overflow).
    pub transferred: bool,
    /// The agent's phone holds the caller (who hears the comfort signal meanwhile). Never set on an
    /// ended call.
    pub on_hold: bool,
    /// Warnings about the call (`code_reused`), each once. Set through [`Registry::warn`] and kept
    /// when the call task publishes a new view; they outlive the call's end (no personal data).
    pub warnings: Vec<CallWarning>,
    /// How the last agent leg failed (whose phone, its SIP status, why): set by the call task when
    /// the call goes back to waiting, kept after that (and after the end), gone as soon as an agent
    /// takes the call again ([`Registry::answer`]).
    pub agent_leg: Option<AgentLegOutcome>,
    /// How the call reached us: a SIP trunk, or the municipality's own exchange by API.
    pub via: CallVia,
    /// The exchange's forwarding number for the call (`forward_to`), for exchange calls that
    /// gave one. Not personal data: a number of the municipality. (Shared, not owned: a view is
    /// cloned for every subscriber of every change.)
    pub forward_to: Option<std::sync::Arc<str>>,
    /// What agents asked the caller for during the call ([`crate::extra_requests`]), oldest first.
    /// Set by the registry's users, never by the call task: kept when the task publishes; what
    /// the caller disclosed in them goes when the call ends.
    pub requests: Vec<crate::extra_requests::ExtraRequestView>,
}

/// How a call reached us (`via` in the API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallVia {
    /// A trunk's INVITE: we answered and read the code ([`super::task`]).
    #[default]
    Sip,
    /// The municipality's exchange answered and read the code, and told us by API
    /// ([`crate::exchange`]).
    Exchange,
    /// The citizen called from the web page where they disclosed, over WebRTC; bound to the
    /// disclosure by the session's token, so there was no code to read ([`crate::call::browser`]).
    Browser,
}

impl CallView {
    /// A call that just came in through `via`, in `state`: not classified yet, no agent, no flags.
    /// Set the rest with struct update syntax.
    pub fn new(
        id: CallId,
        tenant: TenantId,
        state: CallState,
        caller: Pii<String>,
        since: SystemTime,
        via: CallVia,
    ) -> CallView {
        CallView {
            id,
            tenant,
            state,
            verified: false,
            reason: None,
            caller,
            attributes: Vec::new(),
            since,
            agent: None,
            ended_at: None,
            media: Default::default(),
            transferred: false,
            on_hold: false,
            warnings: Vec::new(),
            agent_leg: None,
            via,
            forward_to: None,
            requests: Vec::new(),
        }
    }
}

/// A change on the bus. Subscribers (the portal's SSE stream) get a snapshot of the call.
// Nearly every event is an update; boxing the view would add an allocation to each of them to
// shrink the rare `Removed`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum CallEvent {
    Updated(CallView),
    Removed(CallId),
}

/// Requests from agents to a call task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallCommand {
    Answer { agent: AgentId },
    Hangup,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("no such call")]
    NotFound,
    #[error("the call was already taken by an agent")]
    AlreadyTaken,
    #[error("the call has ended")]
    Ended,
    #[error("the call is not waiting for an agent yet")]
    NotWaiting,
}

struct Entry {
    view: CallView,
    /// Reaches the call task; dropped when the call ends (nothing is left to command), so an
    /// ended entry holds no channel.
    commands: Option<mpsc::Sender<CallCommand>>,
}

/// All calls of this instance.
pub struct Registry {
    calls: Mutex<BTreeMap<CallId, Entry>>,
    /// Calls in the order they ended, with their end time: pruning looks only at the oldest
    /// ([`Registry::prune`]), not at every call (at a thousand calls a second, ten minutes of
    /// ended calls are 600,000 entries, and every call's end pruned).
    ended: Mutex<std::collections::VecDeque<(SystemTime, CallId)>>,
    events: broadcast::Sender<CallEvent>,
    /// The last call id handed out ([`Registry::next_id`]).
    last_id: AtomicU64,
    /// This run's instance, random per start and named ([`Registry::instance`]).
    instance: String,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// How long an ended call stays listed.
    pub const ENDED_RETENTION: Duration = Duration::from_secs(10 * 60);

    pub fn new() -> Self {
        Self::named(None)
    }

    /// A registry of the instance called `name` (`store.instance`, stable across restarts): its
    /// run is `<random>@<name>`, so a shared store can tell this instance's calls from other
    /// instances' ([`crate::store::SessionStore::end_cut_off_calls`]). `None`: `<random>`.
    pub fn named(name: Option<&str>) -> Self {
        let (events, _) = broadcast::channel(1024);
        let run = rand::random::<u128>();
        Registry {
            calls: Mutex::new(BTreeMap::new()),
            ended: Mutex::new(std::collections::VecDeque::new()),
            events,
            last_id: AtomicU64::new(0),
            instance: match name {
                Some(name) => format!("{run:032x}@{name}"),
                None => format!("{run:032x}"),
            },
        }
    }

    /// A call id no other call of this run has (trunk calls and exchange calls share them), from 1.
    pub fn next_id(&self) -> CallId {
        CallId(self.last_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// This run's instance (random per start, then `@<name>` when named): calls' keys in the
    /// link-session store are `<call id>-<instance>` ([`super::config::store_key`]), unique across
    /// restarts and instances.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Listens to changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CallEvent> {
        self.events.subscribe()
    }

    /// A new call appears; `commands` reaches its task.
    pub fn insert(&self, view: CallView, commands: mpsc::Sender<CallCommand>) {
        let metrics = crate::metrics::global();
        metrics.calls_started.inc();
        metrics.calls_active.inc();
        let event = CallEvent::Updated(view.clone());
        self.lock().insert(
            view.id,
            Entry {
                view,
                commands: Some(commands),
            },
        );
        let _ = self.events.send(event);
    }

    /// The call task changed its call. Ignored for unknown calls.
    pub fn update(&self, id: CallId, change: impl FnOnce(&mut CallView)) {
        let mut newly_ended = None;
        let snapshot = {
            let mut calls = self.lock();
            let Some(entry) = calls.get_mut(&id) else {
                return;
            };
            let was_ended = entry.view.state == CallState::Ended;
            change(&mut entry.view);
            if !was_ended && entry.view.state == CallState::Ended {
                count_ended(&entry.view);
                newly_ended = entry.view.ended_at;
            }
            if entry.view.state == CallState::Ended {
                forget_personal_data(&mut entry.view);
                entry.view.on_hold = false;
                entry.commands = None;
            }
            entry.view.clone()
        };
        if let Some(at) = newly_ended {
            // Not under the calls' lock: `prune` takes this one first.
            crate::sync::lock(&self.ended).push_back((at, id));
        }
        let ended_at = snapshot.ended_at;
        let _ = self.events.send(CallEvent::Updated(snapshot));
        // Each call that ends clears out those that ended more than the retention ago, so the
        // registry stays bounded however rarely anyone lists the calls (a portal that only follows
        // the event stream never does).
        if let Some(now) = ended_at {
            self.prune(now);
        }
    }

    /// Adds `warning` to call `id` (once) and tells the subscribers. Ignored for unknown calls.
    pub fn warn(&self, id: CallId, warning: CallWarning) {
        self.update(id, |v| {
            if !v.warnings.contains(&warning) {
                v.warnings.push(warning);
            }
        });
    }

    /// The call task's new view of its call, keeping what only the registry sets (warnings) and
    /// the first end time.
    pub fn publish(&self, view: CallView, now: SystemTime) {
        self.update(view.id, |v| {
            let ended_at = match view.state {
                CallState::Ended => v.ended_at.or(Some(now)),
                _ => None,
            };
            let warnings = std::mem::take(&mut v.warnings);
            let requests = std::mem::take(&mut v.requests);
            *v = view;
            v.ended_at = ended_at;
            v.warnings = warnings;
            v.requests = requests;
        });
    }

    /// The call is over: attributes and caller number are dropped from memory at once.
    pub fn end(&self, id: CallId, now: SystemTime) {
        self.update(id, |v| {
            v.state = CallState::Ended;
            v.ended_at.get_or_insert(now);
        });
    }

    /// Every listed call, oldest first; ended calls past retention are pruned on the way.
    pub fn list(&self, now: SystemTime) -> Vec<CallView> {
        self.prune(now);
        self.lock().values().map(|e| e.view.clone()).collect()
    }

    pub fn get(&self, id: CallId) -> Option<CallView> {
        self.lock().get(&id).map(|e| e.view.clone())
    }

    /// An agent takes a waiting call. Exactly one of racing agents succeeds; the call moves to
    /// `ringing` here, so the list shows it taken before the call task even runs.
    pub fn answer(&self, id: CallId, agent: AgentId) -> Result<(), CommandError> {
        let snapshot = {
            let mut calls = self.lock();
            let entry = calls.get_mut(&id).ok_or(CommandError::NotFound)?;
            match entry.view.state {
                CallState::Waiting => {}
                CallState::Ended => return Err(CommandError::Ended),
                CallState::Ringing | CallState::Connected => {
                    return Err(CommandError::AlreadyTaken)
                }
                CallState::Collecting => return Err(CommandError::NotWaiting),
            }
            entry
                .commands
                .as_ref()
                .ok_or(CommandError::Ended)?
                .try_send(CallCommand::Answer {
                    agent: agent.clone(),
                })
                .map_err(|_| CommandError::Ended)?;
            entry.view.state = CallState::Ringing;
            entry.view.agent = Some(agent);
            // A new agent leg: the last one's outcome no longer says anything.
            entry.view.agent_leg = None;
            entry.view.clone()
        };
        let _ = self.events.send(CallEvent::Updated(snapshot));
        Ok(())
    }

    /// Asks the call task to hang up both legs.
    pub fn hangup(&self, id: CallId) -> Result<(), CommandError> {
        let calls = self.lock();
        let entry = calls.get(&id).ok_or(CommandError::NotFound)?;
        if entry.view.state == CallState::Ended {
            return Err(CommandError::Ended);
        }
        entry
            .commands
            .as_ref()
            .ok_or(CommandError::Ended)?
            .try_send(CallCommand::Hangup)
            .map_err(|_| CommandError::Ended)
    }

    /// Forgets the calls that ended [`Self::ENDED_RETENTION`] ago or more: the oldest ends first,
    /// so only those are looked at (a call whose end time came later than a younger call's is
    /// forgotten with it, a little late).
    fn prune(&self, now: SystemTime) {
        let expired =
            |t: &SystemTime| now.duration_since(*t).unwrap_or_default() >= Self::ENDED_RETENTION;
        let removed: Vec<CallId> = {
            let mut ended = crate::sync::lock(&self.ended);
            if !ended.front().is_some_and(|(t, _)| expired(t)) {
                return;
            }
            let mut calls = self.lock();
            let mut removed = Vec::new();
            while let Some((_, id)) = ended.pop_front_if(|(t, _)| expired(t)) {
                if calls
                    .get(&id)
                    .is_some_and(|e| e.view.state == CallState::Ended)
                {
                    calls.remove(&id);
                    removed.push(id);
                }
            }
            removed
        };
        for id in removed {
            let _ = self.events.send(CallEvent::Removed(id));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CallId, Entry>> {
        // A panic while holding this lock would be a bug in this file; the map stays consistent because
        // every critical section above only does infallible updates, so a poisoned lock is still usable.
        crate::sync::lock(&self.calls)
    }
}

fn forget_personal_data(view: &mut CallView) {
    view.attributes.clear();
    view.caller = Pii::new(String::new());
    for request in &mut view.requests {
        request.forget_personal_data();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64, state: CallState) -> CallView {
        CallView {
            verified: true,
            attributes: vec![ShownAttribute {
                id: "irma-demo.gemeente.personalData.fullname".into(),
                label: "Naam".into(),
                value: Pii::new(Some("Jan de Vries".into())),
            }],
            ..CallView::new(
                CallId(id),
                TenantId("demo".into()),
                state,
                Pii::new("+31612345678".into()),
                SystemTime::UNIX_EPOCH,
                CallVia::Sip,
            )
        }
    }

    #[test]
    fn a_refused_agent_leg_is_shown_until_an_agent_takes_the_call_again() {
        use crate::call::agent_outcome::{AgentLegFailure, AgentLegReason};
        let reg = Registry::new();
        let (tx, mut rx) = mpsc::channel(4);
        let mut events = reg.subscribe();
        reg.insert(view(1, CallState::Waiting), tx);
        assert_eq!(reg.answer(CallId(1), AgentId("jan".into())), Ok(()));
        let refused = AgentLegFailure::response(488).of(AgentId("jan".into()));
        let mut back = view(1, CallState::Waiting);
        back.agent_leg = Some(refused.clone());
        reg.publish(back, SystemTime::UNIX_EPOCH);
        assert_eq!(
            reg.get(CallId(1)).and_then(|v| v.agent_leg),
            Some(refused.clone())
        );
        let mut carried = false;
        while let Ok(e) = events.try_recv() {
            if let CallEvent::Updated(v) = e {
                carried |= v.agent_leg.as_ref() == Some(&refused);
            }
        }
        assert!(carried, "the outcome goes out on the bus");

        // Taking the call again clears it at once, before the call task even runs.
        assert_eq!(reg.answer(CallId(1), AgentId("piet".into())), Ok(()));
        assert_eq!(reg.get(CallId(1)).and_then(|v| v.agent_leg), None);
        match events.try_recv() {
            Ok(CallEvent::Updated(v)) => assert_eq!(v.agent_leg, None),
            other => panic!("{other:?}"),
        }
        while rx.try_recv().is_ok() {}

        // After the end it stays (no personal data in it).
        let mut last = view(1, CallState::Waiting);
        last.agent_leg = Some(AgentLegFailure::no_answer().of(AgentId("piet".into())));
        reg.publish(last, SystemTime::UNIX_EPOCH);
        reg.end(CallId(1), SystemTime::UNIX_EPOCH);
        let ended = reg.get(CallId(1)).expect("listed");
        assert_eq!(ended.state, CallState::Ended);
        assert_eq!(
            ended.agent_leg.map(|o| (o.status, o.reason)),
            Some((None, AgentLegReason::NoAnswer))
        );
    }

    #[test]
    fn a_warning_is_kept_when_the_call_task_publishes_and_after_the_end() {
        let reg = Registry::new();
        let (tx, _rx) = mpsc::channel(4);
        let mut events = reg.subscribe();
        reg.insert(view(1, CallState::Waiting), tx);
        reg.warn(CallId(1), CallWarning::CodeReused);
        reg.warn(CallId(1), CallWarning::CodeReused);
        reg.warn(CallId(9), CallWarning::CodeReused);
        assert_eq!(
            reg.get(CallId(1)).map(|v| v.warnings),
            Some(vec![CallWarning::CodeReused]),
            "once, and only on the known call"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        reg.publish(view(1, CallState::Connected), t);
        reg.publish(view(1, CallState::Ended), t);
        let ended = reg.get(CallId(1)).expect("listed");
        assert_eq!(ended.warnings, vec![CallWarning::CodeReused]);
        assert_eq!(ended.ended_at, Some(t));
        let mut warned_events = 0;
        while let Ok(e) = events.try_recv() {
            if let CallEvent::Updated(v) = e {
                warned_events += usize::from(v.warnings == vec![CallWarning::CodeReused]);
            }
        }
        assert!(warned_events >= 3, "the warning goes out on the bus");
    }

    #[test]
    fn only_one_of_two_agents_gets_the_call() {
        let reg = Registry::new();
        let (tx, mut rx) = mpsc::channel(4);
        reg.insert(view(1, CallState::Waiting), tx);
        assert_eq!(reg.answer(CallId(1), AgentId("a".into())), Ok(()));
        assert_eq!(
            reg.answer(CallId(1), AgentId("b".into())),
            Err(CommandError::AlreadyTaken)
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some(CallCommand::Answer {
                agent: AgentId("a".into())
            })
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(
            reg.get(CallId(1)).map(|v| v.state),
            Some(CallState::Ringing)
        );
    }

    #[test]
    fn an_ended_call_is_never_shown_on_hold() {
        let reg = Registry::new();
        let (tx, _rx) = mpsc::channel(4);
        reg.insert(view(1, CallState::Connected), tx);
        reg.update(CallId(1), |v| v.on_hold = true);
        assert_eq!(reg.get(CallId(1)).map(|v| v.on_hold), Some(true));
        // The call task's last view may still say held when the call ends.
        reg.update(CallId(1), |v| v.state = CallState::Ended);
        assert_eq!(reg.get(CallId(1)).map(|v| v.on_hold), Some(false));
        reg.update(CallId(1), |v| v.on_hold = true);
        assert_eq!(reg.get(CallId(1)).map(|v| v.on_hold), Some(false));
    }

    #[test]
    fn a_call_still_collecting_cannot_be_answered() {
        let reg = Registry::new();
        let (tx, _rx) = mpsc::channel(4);
        reg.insert(view(1, CallState::Collecting), tx);
        assert_eq!(
            reg.answer(CallId(1), AgentId("a".into())),
            Err(CommandError::NotWaiting)
        );
        assert_eq!(
            reg.answer(CallId(9), AgentId("a".into())),
            Err(CommandError::NotFound)
        );
    }

    #[test]
    fn ending_a_call_drops_attributes_and_caller_and_keeps_it_listed_ten_minutes() {
        let reg = Registry::new();
        let (tx, _rx) = mpsc::channel(4);
        let mut events = reg.subscribe();
        reg.insert(view(1, CallState::Waiting), tx);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        reg.end(CallId(1), t);
        let listed = reg.list(t + Duration::from_secs(599));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, CallState::Ended);
        assert!(listed[0].attributes.is_empty());
        assert!(listed[0].caller.expose().is_empty());
        assert_eq!(
            reg.answer(CallId(1), AgentId("a".into())),
            Err(CommandError::Ended)
        );
        assert!(reg.list(t + Duration::from_secs(600)).is_empty());
        let mut saw_removed = false;
        while let Ok(e) = events.try_recv() {
            if let CallEvent::Updated(v) = &e {
                if v.state == CallState::Ended {
                    assert!(
                        v.attributes.is_empty(),
                        "ended snapshot must not carry attributes"
                    );
                }
            }
            saw_removed |= matches!(e, CallEvent::Removed(CallId(1)));
        }
        assert!(saw_removed);
    }

    #[test]
    fn ended_calls_are_forgotten_without_anyone_listing_them() {
        let reg = Registry::new();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        for id in 1..=100 {
            let (tx, _rx) = mpsc::channel(4);
            reg.insert(view(id, CallState::Waiting), tx);
            // One call ending every 30 s, and nobody calls `list`.
            reg.end(CallId(id), t + Duration::from_secs(30 * id));
        }
        let kept = reg.lock().len();
        // Those that ended within the last ten minutes (20 of them, plus the boundary).
        assert!(kept <= 21, "{kept} ended calls kept");
        assert!(
            reg.lock().values().all(|e| e.commands.is_none()),
            "an ended call still holds its task's channel"
        );
    }

    #[test]
    fn extra_requests_outlive_the_tasks_views_and_lose_what_they_brought_at_the_end() {
        use crate::extra_requests::{ExtraRequestView, RequestState, SignedView};
        let reg = Registry::new();
        let (tx, _rx) = mpsc::channel(4);
        reg.insert(view(1, CallState::Connected), tx);
        reg.update(CallId(1), |v| {
            v.requests.push(ExtraRequestView {
                seq: 1,
                request: "adres".into(),
                label: "Adres".into(),
                sign: true,
                state: RequestState::Done,
                reason: None,
                agent: Some(AgentId("jan".into())),
                asked_at: SystemTime::UNIX_EPOCH,
                ended_at: Some(SystemTime::UNIX_EPOCH),
                attributes: vec![ShownAttribute {
                    id: "irma-demo.gemeente.address.street".into(),
                    label: "Straat".into(),
                    value: Pii::new(Some("Voorbeeldstraat".into())),
                }],
                signature: Some(SignedView {
                    message: "Akkoord".into(),
                    signed: Pii::new(serde_json::json!({"message": "Akkoord"})),
                }),
            })
        });
        // The call task knows nothing of requests: its next view keeps them.
        reg.publish(view(1, CallState::Connected), SystemTime::UNIX_EPOCH);
        let kept = reg.get(CallId(1)).expect("listed").requests;
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].attributes.len(), 1);
        let mut events = reg.subscribe();
        reg.end(CallId(1), SystemTime::UNIX_EPOCH);
        let ended = reg.get(CallId(1)).expect("listed");
        assert_eq!(ended.requests.len(), 1, "the request itself stays listed");
        assert!(ended.requests[0].attributes.is_empty());
        assert!(ended.requests[0].signature.is_none());
        match events.try_recv() {
            Ok(CallEvent::Updated(v)) => assert!(v.requests[0].attributes.is_empty()),
            other => panic!("{other:?}"),
        }
        // Nothing added to an ended call survives either.
        reg.update(CallId(1), |v| {
            v.requests[0].attributes.push(ShownAttribute {
                id: "x.y.z.w".into(),
                label: "X".into(),
                value: Pii::new(Some("late".into())),
            })
        });
        assert!(reg.get(CallId(1)).expect("listed").requests[0]
            .attributes
            .is_empty());
    }

    #[test]
    fn hangup_reaches_the_call_task() {
        let reg = Registry::new();
        let (tx, mut rx) = mpsc::channel(4);
        reg.insert(view(3, CallState::Connected), tx);
        assert_eq!(reg.hangup(CallId(3)), Ok(()));
        assert_eq!(rx.try_recv().ok(), Some(CallCommand::Hangup));
    }
}
