//! The municipality's exchange follows its call on `GET /api/v1/pbx/calls/{id}/events`:
//! - an agent takes the call in the agents' API → `answered` with where to route the caller (the
//!   agent's extension; without one, the call's `forward_to`); an exchange that connects late gets
//!   the history first;
//! - the exchange ends the call (`POST …/ended`) → `ended`, and the attributes and the calling
//!   number are gone from the call list;
//! - the agent hangs up in the portal → `hangup`, then `ended`.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::exchange::{
    two_tenants, Pbx, PbxEvents, AGENT_EXTENSION, ARNHEM_KEY, ARNHEM_NUMBER, DEMO_KEY,
};
use support::server::{self, code_of, TestServer, API_TOKEN};

const WAIT: Duration = Duration::from_secs(5);

/// The agents' API: `POST /api/v1/calls/{id}/{action}` with the token.
async fn agents(srv: &TestServer, id: &Value, action: &str, body: Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/api/v1/calls/{id}/{action}", srv.http_base))
        .bearer_auth(API_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("agents' API")
        .status()
        .as_u16()
}

async fn next(events: &mut PbxEvents) -> (String, Value) {
    events.next(WAIT).await.expect("an event in time")
}

async fn open(pbx: &Pbx, key: &str, id: &Value) -> PbxEvents {
    let (status, events) = pbx.events(key, id).await;
    assert_eq!(status, 200);
    events.expect("a stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_learns_who_took_the_call_and_ends_it() {
    let srv = server::start(1, two_tenants).await;
    let pbx = Pbx::new(&srv.http_base);
    let code = srv.new_code().await;
    let answer = pbx.call(DEMO_KEY, "+31612345678", Some(&code)).await;
    assert_eq!(answer["verified"], true, "{answer:#}");
    let id = answer["call_id"].clone();

    let mut events = open(&pbx, DEMO_KEY, &id).await;
    assert_eq!(
        next(&mut events).await,
        (
            "waiting".to_owned(),
            json!({"event": "waiting", "verified": true, "reason": null})
        )
    );

    // The agent takes it: no softphone of ours rings, the exchange routes the caller.
    assert_eq!(
        agents(&srv, &id, "answer", json!({"agent": "agent"})).await,
        202
    );
    let answered = json!({"event": "answered", "agent": "agent", "route_to": AGENT_EXTENSION});
    assert_eq!(
        next(&mut events).await,
        ("answered".to_owned(), answered.clone())
    );
    let taken = srv
        .wait_for_call(WAIT, |c| c["id"] == id && c["state"] == "connected")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken["agent"], "agent");
    assert_eq!(taken["attributes"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        agents(&srv, &id, "answer", json!({"agent": "agent"})).await,
        409
    );

    // An exchange that connects now hears the history first.
    let mut late = open(&pbx, DEMO_KEY, &id).await;
    assert_eq!(next(&mut late).await.0, "waiting");
    assert_eq!(next(&mut late).await.1, answered);

    // The caller hung up at the exchange.
    assert_eq!(pbx.end(DEMO_KEY, &id).await, 204);
    let ended = json!({"event": "ended", "reason": "exchange"});
    assert_eq!(next(&mut events).await, ("ended".to_owned(), ended.clone()));
    assert_eq!(
        events.next(WAIT).await,
        None,
        "the stream ends with the call"
    );
    assert_eq!(next(&mut late).await.1, ended);
    let call = srv
        .calls()
        .await
        .into_iter()
        .find(|c| c["id"] == id)
        .expect("still listed");
    assert_eq!(call["state"], "ended");
    assert_eq!(
        call["attributes"],
        json!([]),
        "attributes gone with the call"
    );
    assert_eq!(call["caller"], "", "calling number gone with the call");
    assert_eq!(call["links"], json!([]));

    // Ending twice is fine; the history stays readable for a while.
    assert_eq!(pbx.end(DEMO_KEY, &id).await, 204);
    let mut after = open(&pbx, DEMO_KEY, &id).await;
    let names: Vec<String> = [
        next(&mut after).await.0,
        next(&mut after).await.0,
        next(&mut after).await.0,
    ]
    .into();
    assert_eq!(names, ["waiting", "answered", "ended"]);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_hanging_up_tells_the_exchange_to_hang_up() {
    let srv = server::start(1, two_tenants).await;
    let pbx = Pbx::new(&srv.http_base);
    // Arnhem's agent `jan` has no extension at its exchange: the call's forward_to is used.
    let code = code_of(&srv.http_base, "arnhem", ARNHEM_NUMBER).await;
    let answer = pbx.call(ARNHEM_KEY, "+31612345678", Some(&code)).await;
    let id = answer["call_id"].clone();
    let mut events = open(&pbx, ARNHEM_KEY, &id).await;
    assert_eq!(next(&mut events).await.0, "waiting");
    assert_eq!(
        agents(&srv, &id, "answer", json!({"agent": "jan"})).await,
        202
    );
    assert_eq!(
        next(&mut events).await.1,
        json!({"event": "answered", "agent": "jan", "route_to": "+31850000099"})
    );

    assert_eq!(agents(&srv, &id, "hangup", json!({})).await, 202);
    assert_eq!(
        next(&mut events).await,
        ("hangup".to_owned(), json!({"event": "hangup"}))
    );
    assert_eq!(
        next(&mut events).await.1,
        json!({"event": "ended", "reason": "hangup"})
    );
    let ended = srv.wait_ended(&id).await;
    assert_eq!(ended["attributes"], json!([]));
    assert_eq!(ended["caller"], "");
    // The exchange's own report of the end comes after: nothing changes.
    assert_eq!(pbx.end(ARNHEM_KEY, &id).await, 204);
    srv.shutdown().await;
}
