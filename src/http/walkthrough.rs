//! `GET /` in `demo`: the walk-through a newcomer starts from. It links the three sides of a call
//! in the order a citizen meets them — the municipality's website with the button, the Yivi app
//! (the simulator stands in for it, with **Bel nu**), the agents' portal — in the words those pages
//! use. Dutch, English with `?lang=en` or a browser preferring English.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse};
use serde::Deserialize;

use super::html::escape;
use super::portal::i18n::Lang;
use super::PublicState;

#[derive(Deserialize)]
pub(super) struct PageQuery {
    lang: Option<String>,
}

impl PageQuery {
    pub(super) fn lang(&self) -> Option<&str> {
        self.lang.as_deref()
    }
}

struct Words {
    title: &'static str,
    lead: &'static str,
    steps: [(&'static str, &'static str, &'static str, &'static str); 3],
    after: &'static str,
    developers: &'static str,
    developers_text: &'static str,
    other_lang: (&'static str, &'static str),
}

const NL: Words = Words {
    title: "Veilig bellen — demo",
    lead: "Een inwoner laat met Yivi zien wie hij is en belt daarna de gemeente. De medewerker ziet \
           wie er belt, met bewijs. Deze demo draait alles op uw computer; doorloop de drie stappen, \
           elk in een eigen tabblad.",
    steps: [
        (
            "/button-demo",
            "1. De website van de gemeente",
            "Website openen",
            "Klik op <b>Veilig bellen met {tenant}</b>. Er verschijnt een Yivi-QR-code; die hoeft u \
             niet te scannen.",
        ),
        (
            "/irma-sim",
            "2. De Yivi-app (nagebootst)",
            "Yivi-app openen",
            "De nagebootste app toont de sessie van stap 1. Klik op <b>Scan en deel</b> en daarna \
             op <b>Bel nu</b>: de demo belt de gemeente en toetst de code in, zoals de Yivi-app op \
             een telefoon doet.",
        ),
        (
            "/portal",
            "3. Het portaal van de medewerker",
            "Portaal openen",
            "Log in als <b>agent</b> met het wachtwoord dat in de terminal staat. De oproep staat er \
             als <b>geverifieerd</b>, met naam en BSN. Klik op <b>Opnemen</b>: de telefoon van de \
             medewerker neemt op en u bent verbonden.",
        ),
    ],
    after: "Ophangen kan in de app (<b>Ophangen</b>) of in het portaal. Na afloop zijn de gegevens \
            van de beller verwijderd.",
    developers: "Voor ontwikkelaars",
    developers_text: "Een echte softphone of SIP-trunk kan de demo ook bellen; de adressen staan in \
                      de terminal. Zonder softphone: <code>veilig-bellen call sip:{number}@{sip} \
                      --code CODE</code>.",
    other_lang: ("en", "English"),
};

const EN: Words = Words {
    title: "Veilig bellen — demo",
    lead: "A citizen proves who they are with Yivi and then calls the municipality. The agent sees \
           who is calling, with proof. This demo runs everything on your computer; go through the \
           three steps, each in its own tab.",
    steps: [
        (
            "/button-demo",
            "1. The municipality's website",
            "Open the website",
            "Click <b>Veilig bellen met {tenant}</b> (\"call safely\"). A Yivi QR code appears; \
             you do not need to scan it.",
        ),
        (
            "/irma-sim",
            "2. The Yivi app (simulated)",
            "Open the Yivi app",
            "The simulated app shows the session of step 1. Click <b>Scan and disclose</b>, then \
             <b>Call now</b>: the demo calls the municipality and keys in the code, as the Yivi app \
             does on a phone.",
        ),
        (
            "/portal",
            "3. The agents' portal",
            "Open the portal",
            "Log in as <b>agent</b> with the password shown in the terminal. The call is listed as \
             <b>verified</b>, with name and BSN. Click <b>Answer</b>: the agent's phone picks up \
             and you are connected.",
        ),
    ],
    after: "Hang up in the app (<b>Hang up</b>) or in the portal. Afterwards the caller's data is \
            deleted.",
    developers: "For developers",
    developers_text: "A real softphone or SIP trunk can call the demo too; the addresses are shown \
                      in the terminal. Without a softphone: <code>veilig-bellen call \
                      sip:{number}@{sip} --code CODE</code>.",
    other_lang: ("nl", "Nederlands"),
};

/// `GET /`.
pub(super) async fn page(
    State(state): State<PublicState>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let lang = Lang::negotiate(
        query.lang.as_deref(),
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let tenant = state.links.tenants().iter().next();
    let tenant_name = tenant.map(|t| t.display_name.as_str()).unwrap_or("");
    let number = tenant.map(|t| t.phone_number.as_str()).unwrap_or("");
    let sip = state
        .sip_address
        .map(|a| a.to_string())
        .unwrap_or_else(|| "HOST:PORT".into());
    Html(render(lang, tenant_name, number, &sip))
}

fn render(lang: Lang, tenant: &str, number: &str, sip: &str) -> String {
    let words = match lang {
        Lang::Nl => &NL,
        Lang::En => &EN,
    };
    let code = lang.code();
    let steps: String = words
        .steps
        .iter()
        .map(|(path, heading, action, text)| {
            let text = text.replace("{tenant}", &escape(tenant));
            format!(
                "<li><h2>{heading}</h2><p>{text}</p>\
                 <p><a class=\"step\" href=\"{path}?lang={code}\" target=\"_blank\">{action}</a></p></li>\n"
            )
        })
        .collect();
    let developers = words
        .developers_text
        .replace("{number}", &escape(number))
        .replace("{sip}", &escape(sip));
    let (other_code, other_name) = words.other_lang;
    format!(
        r#"<!doctype html>
<html lang="{code}"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 1rem auto; padding: 0 1rem; line-height: 1.45; }}
ol.walkthrough {{ list-style: none; padding: 0; }}
ol.walkthrough li {{ border-left: .3rem solid #0b5394; padding: .25rem 1rem; margin: 1rem 0; }}
ol.walkthrough h2 {{ margin: .25rem 0; font-size: 1.2rem; }}
a.step {{ display: inline-block; background: #0b5394; color: #fff; padding: .4rem .9rem; border-radius: .3rem; text-decoration: none; }}
.lang {{ float: right; }}
</style></head><body>
<a class="lang" href="/?lang={other_code}" lang="{other_code}">{other_name}</a>
<h1>{title}</h1>
<p>{lead}</p>
<ol class="walkthrough">
{steps}</ol>
<p>{after}</p>
<h2>{developers_heading}</h2>
<p>{developers}</p>
</body></html>
"#,
        title = words.title,
        lead = words.lead,
        after = words.after,
        developers_heading = words.developers,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_sides_come_in_the_order_a_citizen_meets_them() {
        let html = render(
            Lang::Nl,
            "Gemeente Demodam",
            "+31850000000",
            "127.0.0.1:5060",
        );
        let at = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("{needle}"));
        assert!(at("href=\"/button-demo?lang=nl\"") < at("href=\"/irma-sim?lang=nl\""));
        assert!(at("href=\"/irma-sim?lang=nl\"") < at("href=\"/portal?lang=nl\""));
        // The words of the pages it points to.
        for words in [
            "Veilig bellen met Gemeente Demodam",
            "Scan en deel",
            "Bel nu",
            "Opnemen",
        ] {
            assert!(html.contains(words), "{words}");
        }
        assert!(html.contains("sip:+31850000000@127.0.0.1:5060"));
    }

    #[test]
    fn english_uses_the_english_words_and_links_back_to_dutch() {
        let html = render(
            Lang::En,
            "Gemeente Demodam",
            "+31850000000",
            "127.0.0.1:5060",
        );
        for words in [
            "Scan and disclose",
            "Call now",
            "Answer",
            "href=\"/?lang=nl\"",
        ] {
            assert!(html.contains(words), "{words}");
        }
        assert!(html.contains("<html lang=\"en\">"));
    }

    #[test]
    fn tenant_names_are_escaped() {
        let html = render(Lang::Nl, "<script>x</script>", "+31", "h:1");
        assert!(!html.contains("<script>x"));
    }
}
