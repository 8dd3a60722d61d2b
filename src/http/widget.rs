//! `GET /widget.js` (the municipality's button, built from `assets/widget/` and embedded in the
//! binary: nothing is loaded from a CDN at run time) and, when enabled, `GET /button-demo`, a page
//! with one button per tenant for the demo and the browser test.
//!
//! Rebuild the bundle with `npm ci && npm run build` in `assets/widget/`; `npm run check` verifies
//! that the committed `dist/widget.js` matches its sources.

use axum::http::header;
use axum::response::IntoResponse;
#[cfg(feature = "demo")]
use axum::{extract::State, response::Html};

#[cfg(feature = "demo")]
use super::html::escape;
#[cfg(feature = "demo")]
use super::PublicState;

/// The built widget bundle (yivi-frontend included).
pub const WIDGET_JS: &str = include_str!("../../assets/widget/dist/widget.js");

pub(super) async fn widget_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        WIDGET_JS,
    )
}

/// `GET /button-demo`: a stand-in for the municipality's page: Dutch, as the municipalities' sites
/// are (English with `?lang=en`, which the walk-through passes on; the widget follows the page's
/// `lang`). The button keeps its Dutch name, as on the municipalities' sites.
#[cfg(feature = "demo")]
pub(super) async fn button_demo(
    State(state): State<PublicState>,
    axum::extract::Query(query): axum::extract::Query<super::walkthrough::PageQuery>,
) -> impl IntoResponse {
    use super::portal::i18n::Lang;
    let lang = Lang::negotiate(query.lang(), None);
    let (intro, next, back) = match lang {
        Lang::Nl => (
            "Zo ziet de knop eruit op de website van een gemeente. Klik erop: er verschijnt een \
             Yivi-QR-code.",
            "Ga daarna naar de <a href=\"/irma-sim?lang=nl\" target=\"_blank\">Yivi-app \
             (nagebootst)</a> en klik daar op <b>Scan en deel</b>.",
            "Uitleg van de demo",
        ),
        Lang::En => (
            "This is how the button looks on a municipality's website. Click it: a Yivi QR code \
             appears.",
            "Then go to the <a href=\"/irma-sim?lang=en\" target=\"_blank\">Yivi app \
             (simulated)</a> and click <b>Scan and disclose</b> there.",
            "How the demo works",
        ),
    };
    let code = lang.code();
    let buttons: String = state
        .links
        .tenants()
        .iter()
        .map(|t| {
            format!(
                "    <p><button type=\"button\" data-veilig-bellen data-tenant=\"{}\">Veilig bellen met {}</button></p>\n",
                escape(&t.id.0),
                escape(&t.display_name)
            )
        })
        .collect();
    Html(format!(
        "<!doctype html>\n<html lang=\"{code}\">\n<head>\n  <meta charset=\"utf-8\">\n  \
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n  \
         <title>Veilig bellen — demo</title>\n  <script src=\"widget.js\" defer></script>\n</head>\n<body>\n  \
         <p><a href=\"/?lang={code}\">{back}</a></p>\n  \
         <h1>Veilig bellen — demo</h1>\n  <p>{intro}</p>\n{buttons}  <p class=\"next\">{next}</p>\n</body>\n</html>\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_contains_yivi_frontend_and_our_button_hook() {
        assert!(WIDGET_JS.len() > 100_000, "bundle suspiciously small");
        assert!(WIDGET_JS.contains("data-veilig-bellen"));
        assert!(
            WIDGET_JS.contains("statusevents"),
            "yivi-client not bundled"
        );
        assert!(!WIDGET_JS.contains("cdn.jsdelivr") && !WIDGET_JS.contains("unpkg.com"));
    }
}
