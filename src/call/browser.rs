//! Starting calls from citizens' browsers (WebRTC) and hanging them up: the HTTP side's handle on
//! the call flow ([`crate::http::whip`]).
//!
//! A browser call is admitted like a trunk's INVITE — the same capacity limit, the same call ids,
//! the same routing table, so draining and the health probe count it — and then runs the same call
//! task with a browser caller leg ([`super::task::run_browser`]). The session's frontend token
//! binds the call to the disclosure: it is spent here, once, exactly as a phone call spends a link
//! code, so neither a second browser call nor a phone call with the session's code gets the
//! attributes again.

use super::config::{store_key, CallInput, Routes};
use super::task::{self, CallTaskContext};
use super::CallId;
use crate::extra_requests::{CitizenChannel, CitizenPush};
use crate::links::Unverified;
use crate::store::FrontendToken;
use crate::tenant::Tenant;
use crate::time::unix_now;
use crate::webrtc::gateway::{DataSender, Gateway, GatewayConfig, GatewayError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Capacity of a browser call task's input queue: only hang-ups arrive there.
const BROWSER_QUEUE: usize = 8;
/// The agent's requests waiting for the data channel (one per request and state change).
const PUSH_QUEUE: usize = 8;

/// Why a browser call was not started.
#[derive(Debug, thiserror::Error)]
pub enum BrowserCallError {
    /// As many calls as `calls.max_calls` are live, or the server is shutting down.
    #[error("no room for another call")]
    AtCapacity,
    /// The session's attributes cannot be had (any more): see the reason.
    #[error("the session cannot call: {}", .0.as_str())]
    Session(Unverified),
    /// The browser's offer was unusable or no media socket could be had.
    #[error("the browser's media: {0}")]
    Media(#[from] GatewayError),
}

/// The call flow's door for browser calls. Cloned into the HTTP state.
#[derive(Clone)]
pub struct BrowserCalls {
    ctx: Arc<CallTaskContext>,
    routes: Arc<Mutex<Routes>>,
    gateway: GatewayConfig,
    /// Each session's call, for its `DELETE`.
    by_session: Arc<Mutex<HashMap<FrontendToken, CallId>>>,
    /// The agents' requests during calls, once the server made them: a browser call's page gets
    /// them as a phone caller's does.
    extra: Arc<std::sync::OnceLock<crate::extra_requests::ExtraRequests>>,
}

/// A browser call that started: its id and the SDP answer for the browser.
#[derive(Debug)]
pub struct StartedCall {
    pub call: CallId,
    pub answer: String,
}

impl BrowserCalls {
    pub(super) fn new(
        ctx: Arc<CallTaskContext>,
        routes: Arc<Mutex<Routes>>,
        gateway: GatewayConfig,
    ) -> BrowserCalls {
        BrowserCalls {
            ctx,
            routes,
            gateway,
            by_session: Arc::default(),
            extra: Arc::default(),
        }
    }

    /// Where the agents' requests during a browser call go (set once, at the server's start).
    pub fn set_extra_requests(&self, extra: crate::extra_requests::ExtraRequests) {
        let _ = self.extra.set(extra);
    }

    /// Starts the call of session `token` (of `tenant`, whose `webrtc` switch the caller checked)
    /// with the browser's SDP `offer`; the session's attributes are bound to the new call, once.
    pub async fn start(
        &self,
        tenant: &Tenant,
        token: &FrontendToken,
        offer: &str,
    ) -> Result<StartedCall, BrowserCallError> {
        {
            let r = crate::sync::lock(&self.routes);
            if r.calls.len() >= self.ctx.flow.max_calls || r.draining {
                return Err(BrowserCallError::AtCapacity);
            }
        }
        let id = self.ctx.registry.next_id();
        let key = store_key(id, &self.ctx.instance);
        // The offer first: one we cannot answer leaves the session unspent, to try again.
        let (gateway, answer) = Gateway::start(offer, &self.gateway).await?;
        let verified = match self
            .ctx
            .links
            .bind_session(&tenant.id, token, &key, unix_now())
            .await
        {
            Ok(verified) => verified,
            Err(reason) => {
                gateway.close();
                return Err(BrowserCallError::Session(reason));
            }
        };
        let (input_tx, input_rx) = mpsc::channel(BROWSER_QUEUE);
        {
            let mut r = crate::sync::lock(&self.routes);
            r.calls.insert(id, input_tx);
        }
        let gone: Vec<CallId> = {
            let mut sessions = crate::sync::lock(&self.by_session);
            let routes = crate::sync::lock(&self.routes);
            let gone = sessions
                .values()
                .filter(|call| !routes.calls.contains_key(call))
                .copied()
                .collect();
            sessions.retain(|_, call| routes.calls.contains_key(call));
            sessions.insert(token.clone(), id);
            gone
        };
        if let Some(extra) = self.extra.get() {
            for call in gone {
                extra.detach(call);
            }
        }
        if let Some(extra) = self.extra.get() {
            // What the agent asks reaches the page over the call's own data channel.
            let (pushes, from_agent) = mpsc::channel(PUSH_QUEUE);
            forward_pushes(from_agent, gateway.data_sender());
            extra.attach(id, CitizenChannel::DataChannel(pushes));
        }
        tokio::spawn(task::run_browser(
            self.ctx.clone(),
            id,
            tenant.clone(),
            verified,
            gateway,
            input_rx,
        ));
        Ok(StartedCall { call: id, answer })
    }

    /// The browser hung up its call (`DELETE`). Whether session `token` had a live call.
    pub fn hang_up(&self, token: &FrontendToken) -> bool {
        let Some(id) = crate::sync::lock(&self.by_session).remove(token) else {
            return false;
        };
        let call = crate::sync::lock(&self.routes).calls.get(&id).cloned();
        match call {
            Some(call) => call.try_send(CallInput::CallerHangup).is_ok(),
            None => false,
        }
    }
}

/// The data-channel message that carries `push` to the page: `{"type":"request","request":…}`,
/// the request as a phone caller's page reads it from its status answer.
fn request_message(push: &CitizenPush) -> String {
    serde_json::json!({ "type": "request", "request": push }).to_string()
}

/// Sends the agent's requests of one browser call over its data channel until the gateway ends;
/// then `pushes` closes, and a request made after that is `unreachable` on the agent's card.
fn forward_pushes(mut pushes: mpsc::Receiver<CitizenPush>, data: DataSender) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                push = pushes.recv() => match push {
                    Some(push) => {
                        if !data.send(request_message(&push)) {
                            tracing::debug!(request = push.id, "a request for the browser's data channel was dropped");
                        }
                    }
                    None => return,
                },
                () = data.closed() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extra_requests::PageState;

    #[test]
    fn a_request_message_holds_the_push_as_the_status_answer_does() {
        let push = CitizenPush {
            id: 2,
            label: "Adres".into(),
            label_en: "Address".into(),
            kind: "disclose",
            state: PageState::Pending,
            session_ptr: Some(
                serde_json::json!({"u": "https://irma.example/s/1", "irmaqr": "disclosing"}),
            ),
            frontend_request: None,
        };
        let message: serde_json::Value = serde_json::from_str(&request_message(&push)).unwrap();
        assert_eq!(message["type"], "request");
        assert_eq!(message["request"]["id"], 2);
        assert_eq!(message["request"]["labelEn"], "Address");
        assert_eq!(message["request"]["state"], "pending");
        assert_eq!(message["request"]["sessionPtr"]["irmaqr"], "disclosing");
    }
}
