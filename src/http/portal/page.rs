//! The portal's HTML (maud): the login form, and the shell of the live call list that
//! `portal.js` fills from `GET /api/v1/calls` and keeps current from the event stream. No inline
//! script or style: the texts the script needs travel as JSON in `data-texts`.

use maud::{html, Markup, DOCTYPE};

use super::i18n::Lang;

/// Who is logged in, as the page shows it.
pub struct PageAgent<'a> {
    pub username: &'a str,
    pub name: &'a str,
    pub tenant_name: &'a str,
    pub csrf: &'a str,
    /// A supervisor also sees why other agents' phones did not take a call (`data-supervisor`).
    pub supervisor: bool,
    /// The tenant's extra requests, the card's **Vraag gegevens** menu (`data-requests`).
    pub extra_requests: &'a [crate::tenant::ExtraRequest],
}

/// The menu's items as the script reads them: `[{"id","label"}]`, labels in `lang`.
fn requests_json(lang: Lang, requests: &[crate::tenant::ExtraRequest]) -> String {
    let items: Vec<serde_json::Value> = requests
        .iter()
        .map(|r| {
            let label = match lang {
                Lang::Nl => &r.label_nl,
                Lang::En => &r.label_en,
            };
            serde_json::json!({ "id": r.id, "label": label })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

fn head(lang: Lang, csrf: Option<&str>) -> Markup {
    let t = lang.texts();
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(csrf) = csrf {
                meta name="csrf-token" content=(csrf);
            }
            title { (t.title) }
            link rel="icon" type="image/svg+xml" href="/portal/favicon.svg";
            link rel="stylesheet" href="/portal/portal.css";
            script src="/portal/portal.js" defer {}
        }
    }
}

fn texts_json(lang: Lang) -> String {
    // Serialising a struct of string slices cannot fail.
    serde_json::to_string(lang.texts()).unwrap_or_default()
}

fn language_switch(lang: Lang) -> Markup {
    let other = lang.other();
    html! {
        a .lang href={ "/portal?lang=" (other.code()) } lang=(other.code()) hreflang=(other.code()) {
            (other.texts().language_name)
        }
    }
}

/// `GET /portal` without a session.
pub fn login(lang: Lang) -> Markup {
    let t = lang.texts();
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, None))
            body data-page="login" data-texts=(texts_json(lang)) {
                header .top {
                    span .brand { "Veilig bellen" }
                    nav .tools { (language_switch(lang)) }
                }
                main .login {
                    h1 { (t.login_heading) }
                    p { (t.login_intro) }
                    form #login-form method="post" action="/portal" {
                        div .field {
                            label for="username" { (t.username) }
                            input #username name="username" type="text" autocomplete="username"
                                autocapitalize="none" spellcheck="false" required autofocus;
                        }
                        div .field {
                            label for="password" { (t.password) }
                            input #password name="password" type="password"
                                autocomplete="current-password" required;
                        }
                        button type="submit" { (t.log_in) }
                        p #login-error .error role="alert" hidden {}
                    }
                }
            }
        }
    }
}

/// `GET /portal` with a session: the call list's shell.
pub fn calls(lang: Lang, agent: &PageAgent<'_>) -> Markup {
    let t = lang.texts();
    let who = t
        .logged_in_as
        .replace("{name}", agent.name)
        .replace("{tenant}", agent.tenant_name);
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, Some(agent.csrf)))
            body data-page="calls" data-agent=(agent.username) data-supervisor[agent.supervisor]
                data-texts=(texts_json(lang))
                data-requests=(requests_json(lang, agent.extra_requests)) {
                header .top {
                    span .brand { "Veilig bellen" }
                    span .who { (who) }
                    nav .tools {
                        label .sound {
                            input #sound-toggle type="checkbox";
                            " " (t.sound)
                        }
                        (language_switch(lang))
                        button #logout type="button" { (t.log_out) }
                    }
                }
                p #offline .offline role="status" hidden { (t.offline) }
                main .calls-page {
                    h1 { (t.calls_heading) }
                    p #no-calls { (t.no_calls) }
                    ul #calls .calls aria-label=(t.calls_heading) {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_form_has_labelled_fields_and_no_inline_script() {
        let html = login(Lang::Nl).into_string();
        assert!(html.starts_with("<!DOCTYPE html><html lang=\"nl\">"));
        assert!(html.contains(r#"<label for="username">Gebruikersnaam</label>"#));
        assert!(html.contains(r#"<label for="password">Wachtwoord</label>"#));
        assert!(html.contains(r#"<button type="submit">Inloggen</button>"#));
        assert!(!html.contains("csrf-token"));
        assert!(!html.contains("<script>") && !html.contains(" style="));
        let en = login(Lang::En).into_string();
        assert!(en.contains(">Username</label>") && en.contains(">Log in</button>"));
    }

    #[test]
    fn the_call_list_carries_the_csrf_token_and_escapes_names() {
        let html = calls(
            Lang::Nl,
            &PageAgent {
                username: "agent",
                name: "<Jan & \"co\">",
                tenant_name: "Gemeente Demodam",
                csrf: "tok-123",
                supervisor: false,
                extra_requests: &[],
            },
        )
        .into_string();
        assert!(html.contains(r#"<meta name="csrf-token" content="tok-123">"#));
        assert!(html.contains("Ingelogd als &lt;Jan &amp; &quot;co&quot;&gt; (Gemeente Demodam)"));
        assert!(html.contains(r#"data-agent="agent""#));
        assert!(!html.contains("data-supervisor"));
        let supervisor = calls(
            Lang::Nl,
            &PageAgent {
                username: "agent",
                name: "Jan",
                tenant_name: "Gemeente Demodam",
                csrf: "tok-123",
                supervisor: true,
                extra_requests: &[],
            },
        )
        .into_string();
        assert!(supervisor.contains(r#"data-agent="agent" data-supervisor data-texts"#));
        assert!(html.contains(r#"data-requests="[]""#));
        assert!(html.contains("&quot;answer&quot;:&quot;Opnemen&quot;"));
    }

    #[test]
    fn the_menu_lists_the_tenants_extra_requests_in_the_pages_language() {
        let requests = [crate::tenant::ExtraRequest {
            id: "adres".into(),
            label_nl: "Adres <nu>".into(),
            label_en: "Address".into(),
            disclose: vec![vec![vec!["a.b.c.d".into()]]],
            sign: None,
        }];
        let page = |lang| {
            calls(
                lang,
                &PageAgent {
                    username: "agent",
                    name: "Jan",
                    tenant_name: "Gemeente Demodam",
                    csrf: "tok",
                    supervisor: false,
                    extra_requests: &requests,
                },
            )
            .into_string()
        };
        assert!(page(Lang::Nl).contains(
            r#"data-requests="[{&quot;id&quot;:&quot;adres&quot;,&quot;label&quot;:&quot;Adres &lt;nu&gt;&quot;}]""#
        ));
        assert!(page(Lang::En).contains("&quot;label&quot;:&quot;Address&quot;"));
        assert!(page(Lang::Nl).contains("&quot;menu&quot;:&quot;Vraag gegevens&quot;"));
    }
}
