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

#[cfg(feature = "demo")]
fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(feature = "demo")]
pub(super) async fn button_demo(State(state): State<PublicState>) -> impl IntoResponse {
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
        "<!doctype html>\n<html lang=\"nl\">\n<head>\n  <meta charset=\"utf-8\">\n  \
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n  \
         <title>Veilig bellen — demo</title>\n  <script src=\"widget.js\" defer></script>\n</head>\n<body>\n  \
         <h1>Veilig bellen — demo</h1>\n  <p>Zo ziet de knop eruit op de website van een gemeente.</p>\n{buttons}</body>\n</html>\n"
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

    #[test]
    fn demo_page_escapes_tenant_names() {
        assert_eq!(escape("<b>\"x\"&'"), "&lt;b&gt;&quot;x&quot;&amp;&#39;");
    }
}
