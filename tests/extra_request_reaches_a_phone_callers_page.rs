//! Asking for more during a call, for a phone caller: the citizen discloses on the municipality's
//! page, calls with the code (our own caller, `veilig-bellen call --stay`), and keeps the page
//! open — an HTTP client following `GET /api/v1/sessions/{token}/status?wait=…&requests=…` as the
//! widget does. The agent asks for the address (`POST /api/v1/calls/{id}/requests`): the page gets
//! the new Yivi session, the simulated app discloses, and the call gains the attributes, marked as
//! answered to that request. A signature request comes back with the signed message; an answer
//! with an attribute off the allow-list is refused. Another municipality's agent cannot ask on
//! this call. Once the page stops asking, the next request is `unreachable` and the agent sees
//! why. When the call ends, what the citizen disclosed is gone from the list; the audit log holds
//! each request and its outcome, and no log line (at TRACE) holds a disclosed value.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::portal::{two_tenants, JAN_PASSWORD};
use support::server::{self, TestServer, API_TOKEN};
use tokio::sync::mpsc;
use veilig_bellen::tenant::{AllowedAttribute, ExtraRequest, Tenants};

const STREET: &str = "irma-demo.gemeente.address.street";
const ZIPCODE: &str = "irma-demo.gemeente.address.zipcode";
const FULLNAME: &str = "irma-demo.gemeente.personalData.fullname";
const MESSAGE: &str = "Ik ga akkoord met de afspraken uit dit gesprek.";
/// How long a page that stopped asking still counts as open, here.
const PAGE_OPEN: Duration = Duration::from_millis(1500);
/// The page's `?wait=`, seconds.
const PAGE_WAIT: u64 = 2;
const LIMIT: Duration = Duration::from_secs(10);

/// The demo tenant (and `arnhem`, with agent `jan`) can ask for the address and a signature.
pub(crate) fn with_extra_requests(c: &mut veilig_bellen::server::ServerConfig) {
    two_tenants(c);
    let mut tenants: Vec<_> = c.tenants.iter().cloned().collect();
    for tenant in &mut tenants {
        for (id, nl, en) in [
            (STREET, "Straat", "Street"),
            (ZIPCODE, "Postcode", "Postcode"),
        ] {
            tenant.allowed_attributes.push(AllowedAttribute {
                id: id.into(),
                label_nl: nl.into(),
                label_en: en.into(),
            });
        }
        tenant.extra_requests = vec![
            ExtraRequest {
                id: "adres".into(),
                label_nl: "Adres".into(),
                label_en: "Address".into(),
                disclose: vec![vec![vec![STREET.into(), ZIPCODE.into()]]],
                sign: None,
            },
            ExtraRequest {
                id: "akkoord".into(),
                label_nl: "Akkoord ondertekenen".into(),
                label_en: "Sign the agreement".into(),
                disclose: vec![vec![vec![FULLNAME.into()]]],
                sign: Some(MESSAGE.into()),
            },
        ];
    }
    c.tenants = Tenants::new(tenants);
    c.links.requests.page_open = PAGE_OPEN;
}

/// The citizen's page: follows the session's status as the widget does, sending every answer.
fn open_page(
    srv: &TestServer,
    token: &str,
) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<Value>) {
    let (tx, rx) = mpsc::channel(64);
    let url = format!("{}/api/v1/sessions/{token}/status", srv.http_base);
    let page = tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let mut version = 0u64;
        loop {
            let answer: Value = match client
                .get(format!("{url}?wait={PAGE_WAIT}&requests={version}"))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => r.json().await.expect("status JSON"),
                Ok(r) => panic!("status answered {}", r.status()),
                Err(e) => panic!("status: {e}"),
            };
            version = answer["requests"].as_u64().expect("a requests version");
            if tx.send(answer).await.is_err() {
                return;
            }
        }
    });
    (page, rx)
}

/// The page's next answer satisfying `pred`.
async fn page_sees(
    rx: &mut mpsc::Receiver<Value>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(answer)) if pred(&answer) => return answer,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the page stopped before it saw {what}"),
            Err(_) => panic!("the page did not see {what} within {LIMIT:?}"),
        }
    }
}

async fn ask(srv: &TestServer, call: &Value, request: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/calls/{}/requests",
            srv.http_base, call["id"]
        ))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "request": request }))
        .send()
        .await
        .expect("POST requests");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The simulated Yivi app answers the session `push` shows; `attributes` empty: the demo values.
async fn app_answers(srv: &TestServer, push: &Value, attributes: Value) {
    let u = push["sessionPtr"]["u"].as_str().expect("sessionPtr.u");
    let client_token = u.rsplit('/').next().expect("client token");
    let response = reqwest::Client::new()
        .post(format!(
            "{}/irma-sim/session/{client_token}/disclose",
            srv.http_base
        ))
        .json(&json!({ "attributes": attributes }))
        .send()
        .await
        .expect("disclose");
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

/// Call `id`'s request `seq` once it satisfies `pred`.
async fn request_becomes(
    srv: &TestServer,
    id: &Value,
    seq: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let call = srv
        .wait_for_call(LIMIT, |c| {
            &c["id"] == id
                && c["requests"]
                    .as_array()
                    .and_then(|r| r.iter().find(|r| r["seq"] == seq))
                    .is_some_and(&pred)
        })
        .await
        .unwrap_or_else(|e| panic!("request {seq}: {e}"));
    call["requests"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["seq"] == seq))
        .cloned()
        .expect("the request")
}

fn value_of(request: &Value, id: &str) -> Value {
    request["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == id))
        .map(|a| a["value"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_asks_a_phone_caller_for_more_through_the_open_page() {
    let log = support::log_capture::capture_at_trace();
    let srv = server::start(4, with_extra_requests).await;

    // The website: disclosure done, the page stays open.
    let session = srv.start_session().await;
    let code = srv.disclose(&session).await;
    let token = session["token"].as_str().expect("token").to_owned();

    // The phone call with the code, staying on the line.
    let mut caller = srv.call_and_stay(&code, Duration::from_secs(60));
    let call = srv
        .wait_for_call(LIMIT, |c| c["verified"] == true && c["state"] == "waiting")
        .await
        .unwrap_or_else(|e| panic!("no verified call: {e}"));
    let id = call["id"].clone();
    assert_eq!(call["requests"], json!([]));

    // No page is following the session yet: the request cannot reach the caller.
    let (status, first) = ask(&srv, &call, "adres").await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(
        (first["state"].as_str(), first["reason"].as_str()),
        (Some("unreachable"), Some("page_closed"))
    );

    // The page follows its status; the agent asks again.
    let (page, mut news) = open_page(&srv, &token);
    let quiet = page_sees(&mut news, "its first answer", |a| a["status"] == "done").await;
    assert_eq!(quiet["call"], "active");
    assert!(quiet.get("request").is_none(), "{quiet}");
    let (status, asked) = ask(&srv, &call, "adres").await;
    assert_eq!(status, 202, "{asked}");
    assert_eq!(
        (asked["seq"].as_u64(), asked["state"].as_str()),
        (Some(2), Some("sent"))
    );
    assert_eq!(asked["label"], "Adres");
    let shown = page_sees(&mut news, "the request", |a| {
        a["request"]["state"] == "pending"
    })
    .await;
    let push = &shown["request"];
    assert_eq!(
        (
            push["id"].as_u64(),
            push["label"].as_str(),
            push["labelEn"].as_str()
        ),
        (Some(2), Some("Adres"), Some("Address"))
    );
    assert_eq!(push["kind"], "disclose");
    assert_eq!(push["sessionPtr"]["irmaqr"], "disclosing");
    request_becomes(&srv, &id, 2, |r| r["state"] == "shown").await;

    // The app discloses the demo values: the card gains them.
    app_answers(&srv, push, json!({})).await;
    let done = request_becomes(&srv, &id, 2, |r| r["state"] == "done").await;
    assert_eq!(value_of(&done, STREET), json!("Voorbeeldstraat"));
    assert_eq!(value_of(&done, ZIPCODE), json!("1234 AB"));
    assert_eq!(done["attributes"][0]["label"], "Straat");
    assert_eq!(done["signature"], Value::Null);
    let thanked = page_sees(&mut news, "the outcome", |a| {
        a["request"]["state"] == "done"
    })
    .await;
    assert!(thanked["request"].get("sessionPtr").is_none(), "{thanked}");

    // A signature: the signed message comes back with the attributes signed with.
    let (status, asked) = ask(&srv, &call, "akkoord").await;
    assert_eq!(
        (status, asked["sign"].as_bool()),
        (202, Some(true)),
        "{asked}"
    );
    let shown = page_sees(&mut news, "the signature request", |a| {
        a["request"]["id"] == 3 && a["request"]["state"] == "pending"
    })
    .await;
    assert_eq!(shown["request"]["kind"], "sign");
    assert_eq!(shown["request"]["sessionPtr"]["irmaqr"], "signing");
    app_answers(&srv, &shown["request"], json!({})).await;
    let signed = request_becomes(&srv, &id, 3, |r| r["state"] == "done").await;
    assert_eq!(signed["signature"]["message"], MESSAGE);
    assert_eq!(signed["signature"]["signed"]["message"], MESSAGE);
    assert_eq!(value_of(&signed, FULLNAME), json!("Jan de Vries"));

    // An answer with an attribute the municipality does not accept is refused.
    let (status, _) = ask(&srv, &call, "adres").await;
    assert_eq!(status, 202);
    let shown = page_sees(&mut news, "the third request", |a| {
        a["request"]["id"] == 4 && a["request"]["state"] == "pending"
    })
    .await;
    app_answers(
        &srv,
        &shown["request"],
        json!({ STREET: "Elders 1", ZIPCODE: "9999 ZZ", "pbdf.pbdf.email.email": "jan@example.org" }),
    )
    .await;
    let refused = request_becomes(&srv, &id, 4, |r| r["state"] == "refused").await;
    assert_eq!(refused["reason"], "not_allowed");
    assert_eq!(refused["attributes"], json!([]));
    page_sees(&mut news, "the refusal", |a| {
        a["request"]["state"] == "refused"
    })
    .await;

    // Another municipality's agent does not see the call, so cannot ask on it; an unknown request
    // and a missing CSRF token are refused too.
    let jan = support_login(&srv, "jan", JAN_PASSWORD).await;
    let foreign = jan
        .client
        .post(format!("{}/api/v1/calls/{id}/requests", srv.http_base))
        .header("cookie", &jan.cookie)
        .header("x-csrf-token", &jan.csrf)
        .json(&json!({"request": "adres"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(foreign.status(), 404);
    assert_eq!(
        foreign.json::<Value>().await.unwrap()["error"],
        "call_not_found"
    );
    let no_csrf = jan
        .client
        .post(format!("{}/api/v1/calls/{id}/requests", srv.http_base))
        .header("cookie", &jan.cookie)
        .json(&json!({"request": "adres"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(no_csrf.status(), 403);
    let (status, unknown) = ask(&srv, &call, "schoenmaat").await;
    assert_eq!(
        (status, unknown["error"].as_str()),
        (404, Some("unknown_request"))
    );

    // The page closes: after its grace the next request cannot reach the caller, and says why.
    // (Its last status request may still wait at the server until its `wait` is over.)
    page.abort();
    drop(news);
    tokio::time::sleep(Duration::from_secs(PAGE_WAIT) + PAGE_OPEN + Duration::from_millis(500))
        .await;
    let (status, gone) = ask(&srv, &call, "adres").await;
    assert_eq!(status, 202, "{gone}");
    assert_eq!(
        (gone["state"].as_str(), gone["reason"].as_str()),
        (Some("unreachable"), Some("page_closed"))
    );

    // The call ends: the requests stay listed, what they brought does not.
    let hangup = reqwest::Client::new()
        .post(format!("{}/api/v1/calls/{id}/hangup", srv.http_base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("hangup");
    assert_eq!(hangup.status(), 202);
    let ended = srv.wait_ended(&id).await;
    let requests = ended["requests"].as_array().expect("requests");
    assert_eq!(requests.len(), 5);
    for r in requests {
        assert_eq!(r["attributes"], json!([]), "{r}");
        assert_eq!(r["signature"], Value::Null, "{r}");
    }
    let states: Vec<&str> = requests
        .iter()
        .filter_map(|r| r["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["unreachable", "done", "done", "refused", "unreachable"]
    );
    let _ = tokio::time::timeout(LIMIT, caller.wait()).await;
    let (status, _) = ask(&srv, &ended, "adres").await;
    assert_eq!(status, 409, "an ended call takes no requests");

    // The audit log: each request and its outcome, by id.
    let audit: Vec<Value> = reqwest::Client::new()
        .get(format!("{}/api/v1/audit?tenant=demo", srv.http_base))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("audit")
        .json()
        .await
        .expect("audit JSON");
    let mut trail: Vec<(String, String)> = audit
        .iter()
        .filter(|e| e["request"].is_string())
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["request"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    trail.reverse();
    let expected: Vec<(String, String)> = [
        ("request", "adres"),
        ("request_unanswered", "adres"),
        ("request", "adres"),
        ("request_answered", "adres"),
        ("request", "akkoord"),
        ("request_answered", "akkoord"),
        ("request", "adres"),
        ("request_refused", "adres"),
        ("request", "adres"),
        ("request_unanswered", "adres"),
    ]
    .iter()
    .map(|(a, r)| (a.to_string(), r.to_string()))
    .collect();
    assert_eq!(trail, expected);
    assert!(audit
        .iter()
        .all(|e| !e.to_string().contains("Voorbeeldstraat")));

    srv.shutdown().await;
    let text = log.text();
    assert!(
        text.contains("extra request ended"),
        "the server's logs were captured"
    );
    for secret in [
        "Voorbeeldstraat",
        "1234 AB",
        "Elders 1",
        "jan@example.org",
        "Jan de Vries",
        &code,
    ] {
        let leaks: Vec<&str> = text.lines().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "logged {secret:?}:\n{}", leaks.join("\n"));
    }
}

/// A logged-in portal agent.
struct Portal {
    client: reqwest::Client,
    cookie: String,
    csrf: String,
}

async fn support_login(srv: &TestServer, username: &str, password: &str) -> Portal {
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/api/v1/login", srv.http_base))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let body: Value = response.json().await.expect("login JSON");
    Portal {
        client,
        cookie,
        csrf: body["csrf"].as_str().expect("csrf").to_owned(),
    }
}
