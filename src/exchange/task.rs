//! The thin driver of one exchange call: it owns the call's [`ExchangeCall`], the agents' command
//! channel (from the registry) and the exchange's `ended` requests, reads the clock once per turn,
//! and carries out what the machine decides: append to the event stream, show the call taken,
//! release it.

use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};

use super::call::{AgentRoute, EndReason, ExchangeCall, ExchangeEvent, Output};
use super::Control;
use crate::call::registry::{CallCommand, Registry};
use crate::call::{CallId, CallState};
use crate::links::LinkService;
use crate::tenant::{AgentId, Tenant};
use std::sync::Arc;

/// Everything the task owns.
pub(super) struct Context {
    pub id: CallId,
    pub tenant: Tenant,
    pub registry: Arc<Registry>,
    pub links: LinkService,
    /// The call's key in the link-session store, when its code was looked up (it may hold a
    /// binding to release).
    pub store_key: Option<String>,
    pub machine: ExchangeCall,
    pub commands: mpsc::Receiver<CallCommand>,
    pub control: mpsc::Receiver<Control>,
    pub events: watch::Sender<Vec<ExchangeEvent>>,
}

/// Runs the call until it ends and is released.
pub(super) async fn run(mut cx: Context) {
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        while let Some(output) = cx.machine.poll_output() {
            match output {
                Output::Tell(event) => cx.events.send_modify(|log| log.push(event)),
                Output::ShowTaken(agent) => cx.registry.update(cx.id, |v| {
                    v.state = CallState::Connected;
                    v.agent = Some(agent);
                }),
                Output::Release(reason) => {
                    release(&cx, reason).await;
                    for ack in acks.drain(..) {
                        let _ = ack.send(());
                    }
                    return;
                }
            }
        }
        let Some(deadline) = cx.machine.poll_timeout() else {
            return;
        };
        tokio::select! {
            Some(command) = cx.commands.recv() => {
                let now = Instant::now();
                match command {
                    CallCommand::Answer { agent } => {
                        let route = route_of(&cx.tenant, &agent);
                        cx.machine.handle_answer(now, agent, route);
                    }
                    CallCommand::Hangup => cx.machine.handle_hangup(now),
                }
            }
            Some(Control::Ended(ack)) = cx.control.recv() => {
                acks.push(ack);
                cx.machine.handle_ended(Instant::now());
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                cx.machine.handle_timeout(Instant::now());
            }
        }
    }
}

/// Where `agent` is reached at the tenant's exchange.
fn route_of(tenant: &Tenant, agent: &AgentId) -> AgentRoute {
    AgentRoute {
        extension: tenant.exchange.extensions.get(agent).cloned(),
        sip_username: tenant
            .agents
            .get(agent)
            .map_or_else(|| agent.0.clone(), |a| a.sip_username.clone()),
    }
}

/// The call is over: the registry drops its personal data at once, then the store its binding.
async fn release(cx: &Context, reason: EndReason) {
    cx.registry.end(cx.id, SystemTime::now());
    let released = match &cx.store_key {
        Some(key) => cx.links.release_call(key, crate::time::unix_now()).await,
        None => false,
    };
    crate::metrics::global().exchange_call_ended(reason.as_str());
    tracing::info!(
        call = %cx.id,
        tenant = %cx.tenant.id,
        reason = reason.as_str(),
        held_code = released,
        "exchange call ended"
    );
}
