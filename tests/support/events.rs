//! Test support: the agents' live event stream, `GET /api/v1/calls/events` (server-sent events),
//! read frame by frame.

use std::time::Duration;

use serde_json::Value;

use super::server::API_TOKEN;

/// Server-sent events of `GET /api/v1/calls/events`, read frame by frame.
pub struct Events {
    response: reqwest::Response,
    buf: String,
}

impl Events {
    /// Opens the stream at `http_base` with the agents' token; it answered 200.
    pub async fn open(http_base: &str) -> Events {
        let response = reqwest::Client::new()
            .get(format!("{http_base}/api/v1/calls/events"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("GET /api/v1/calls/events");
        assert_eq!(response.status(), 200);
        Events {
            response,
            buf: String::new(),
        }
    }

    /// The stream's `Content-Type` (empty when it has none).
    pub fn content_type(&self) -> String {
        self.response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    /// The next `call` event's data (bounded by `limit`); keep-alive comments and other events
    /// skipped.
    pub async fn next_call(&mut self, limit: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut kind = "message";
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if kind == "call" {
                    return serde_json::from_str(&data).map_err(|e| format!("{e}: {data}"));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .map_err(|_| format!("no call event within {limit:?}"))?
                .map_err(|e| format!("event stream: {e}"))?
                .ok_or("the event stream ended")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The first `call` event (within `limit`) for which `pred` holds; `None` when none came or the
    /// stream failed.
    pub async fn until(&mut self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let view = self.next_call(left).await.ok()?;
            if pred(&view) {
                return Some(view);
            }
        }
    }

    /// Reads call events (each within 3 s) until call `id` shows `waiting` with this `agent_leg`;
    /// on the way the call must have shown `ringing` with nothing to show yet (no `agent_leg`).
    /// Returns the call's events.
    pub async fn ringing_then_waiting_with(&mut self, id: &Value, agent_leg: &Value) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let event = self
                .next_call(Duration::from_secs(3))
                .await
                .unwrap_or_else(|e| panic!("{e}; events so far: {seen:#?}"));
            if event["id"] != *id {
                continue;
            }
            let done = event["state"] == "waiting" && event["agent_leg"] == *agent_leg;
            seen.push(event);
            if done {
                break;
            }
        }
        let ringing = seen
            .iter()
            .position(|e| e["state"] == "ringing")
            .unwrap_or_else(|| panic!("no ringing event: {seen:#?}"));
        assert_eq!(seen[ringing]["agent_leg"], Value::Null, "{seen:#?}");
        seen
    }
}
