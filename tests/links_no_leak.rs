//! No response of ours ever carries a link code or an IRMA requestor token: not the session start,
//! not the status (pending or done), not the widget or demo page, not any error. Prior systems sent
//! the code to the browser; whoever reads it there can dial in as the citizen.

use crate::links_common;

use links_common::{code_from_return_url, start_memory_app, SITE};
use serde_json::json;
use veilig_bellen::store::{FrontendToken, SessionStore};

#[tokio::test]
async fn no_response_body_contains_the_code_or_the_requestor_token() {
    let (store, app) = start_memory_app().await;
    let mut bodies = Vec::new();
    let get = |url: String, origin: Option<&'static str>| {
        let mut request = app.http.get(url);
        if let Some(o) = origin {
            request = request.header("origin", o);
        }
        request
    };

    let first = app.start_session().await;
    let second = app.start_session().await;
    let token = first["token"].as_str().unwrap().to_owned();
    for path in [
        format!("/api/v1/sessions/{token}/status"),
        "/widget.js".to_owned(),
        "/button-demo".to_owned(),
        "/api/v1/sessions/ffffffffffffffffffffffffffffffff/status".to_owned(),
    ] {
        bodies.push(
            get(format!("{}{path}", app.base), Some(SITE))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    bodies.push(
        get(
            format!("{}/api/v1/sessions/{token}/status", app.base),
            Some("https://evil.example"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    );
    for body in [
        r#"{"tenant":"atlantis"}"#,
        "{",
        r#"{"tenant":"demo","x":1}"#,
    ] {
        let response = app
            .http
            .post(format!("{}/api/v1/sessions", app.base))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error());
        bodies.push(response.text().await.unwrap());
    }

    let answer = app.app_disclose(&first, json!({"attributes": {}})).await;
    let code = code_from_return_url(answer["clientReturnUrl"].as_str().unwrap());
    bodies.push(serde_json::to_string(&app.status(&token, 10).await).unwrap());
    bodies.push(
        get(
            format!("{}/api/v1/sessions/{token}/status?wait=1", app.base),
            None,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    );
    bodies.extend(app.bodies.lock().unwrap().iter().cloned());

    let mut secrets = vec![code];
    for session in [&first, &second] {
        let token = FrontendToken::parse(session["token"].as_str().unwrap()).unwrap();
        let row = store.get(token).await.unwrap().unwrap();
        assert_ne!(
            row.irma_token,
            row.token.as_str(),
            "the frontend token is not the requestor token"
        );
        secrets.push(row.irma_token.clone());
        secrets.push(row.code.expose().to_owned());
    }
    assert!(bodies.len() >= 12);
    for body in &bodies {
        for secret in &secrets {
            assert!(
                !body.contains(secret.as_str()),
                "a response body leaks a code or requestor token"
            );
        }
    }
}
