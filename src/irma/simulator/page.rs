//! The simulator's demo page (`GET /irma-sim/`): lists sessions waiting for the app and lets a
//! person pick attribute values and "scan" — i.e. post to the app stand-in — or decline. Plain HTML
//! with a few lines of script; every value from a session request is HTML-escaped.

use std::fmt::Write;

use super::Simulator;

/// The page for the current state.
pub(super) fn render(sim: &Simulator) -> String {
    let base_path = path_of(&sim.config().public_url);
    let mut sessions = String::new();
    let pending = sim.pending();
    if pending.is_empty() {
        sessions.push_str("<p>No session is waiting. Click a <em>Bel via Yivi</em> button on the demo site, then refresh.</p>");
    }
    for p in &pending {
        let ct = escape(&p.client_token);
        let _ = write!(
            sessions,
            "<form class=\"session\" data-client=\"{ct}\"><h2>Session {short}… <small>{status}, {age} s old</small></h2>",
            short = escape(p.client_token.get(..6).unwrap_or(&p.client_token)),
            status = p.status,
            age = p.age.as_secs(),
        );
        for (i, discon) in p.disclose.iter().enumerate() {
            let _ = write!(sessions, "<fieldset><legend>Requested #{}</legend>", i + 1);
            if discon.len() > 1 {
                sessions.push_str(
                    "<p class=\"hint\">Any one of these options; fields of one option suffice.</p>",
                );
            }
            for con in discon {
                for id in con {
                    let _ = write!(
                        sessions,
                        "<label>{id}<input name=\"{id}\" value=\"{value}\"></label>",
                        id = escape(id),
                        value = escape(Simulator::demo_value(id)),
                    );
                }
            }
            sessions.push_str("</fieldset>");
        }
        sessions.push_str(
            "<button type=\"submit\" name=\"scan\">Scan and disclose</button> \
             <button type=\"button\" class=\"cancel\">Decline</button><output></output></form>",
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>IRMA simulator — NOT an IRMA server</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 48rem; margin: 1rem auto; padding: 0 1rem; }}
.banner {{ background: #b00020; color: #fff; padding: .5rem 1rem; font-weight: bold; }}
form.session {{ border: 1px solid #999; padding: .5rem 1rem; margin: 1rem 0; }}
label {{ display: block; margin: .25rem 0; font-family: monospace; }}
label input {{ margin-left: .5rem; }}
.hint {{ color: #555; margin: 0; }}
output {{ display: block; margin-top: .5rem; }}
</style></head><body>
<p class="banner">Simulator for demos and tests. This is NOT an IRMA server and NOT the Yivi app: it checks no proofs.</p>
<h1>IRMA simulator</h1>
<p>Each form below is a session waiting for the Yivi app. Edit values, then <em>Scan and disclose</em> does what the
app would do; the answer shows the <code>tel:</code> link the app would dial. Empty a field to leave it out.
<a href="{refresh}">Refresh</a></p>
{sessions}
<script>
for (const form of document.querySelectorAll('form.session')) {{
  const url = {base_js} + '/session/' + encodeURIComponent(form.dataset.client) + '/disclose';
  const out = form.querySelector('output');
  const send = async (body) => {{
    const r = await fetch(url, {{ method: 'POST', headers: {{ 'Content-Type': 'application/json' }}, body: JSON.stringify(body) }});
    const answer = await r.json();
    out.textContent = '';
    if (answer.clientReturnUrl) {{
      const a = document.createElement('a');
      a.href = answer.clientReturnUrl;
      a.textContent = 'Call: ' + answer.clientReturnUrl;
      out.append(answer.status + ' / ' + answer.proofStatus + ' — ', a);
    }} else {{
      out.textContent = JSON.stringify(answer);
    }}
  }};
  form.addEventListener('submit', (e) => {{
    e.preventDefault();
    const attributes = {{}};
    for (const input of form.querySelectorAll('input')) if (input.value !== '') attributes[input.name] = input.value;
    send({{ attributes }});
  }});
  form.querySelector('.cancel').addEventListener('click', () => send({{ cancel: true }}));
}}
</script></body></html>"#,
        base_js = serde_json::to_string(&base_path)
            .unwrap_or_default()
            .replace('<', "\\u003c"),
        refresh = if base_path.is_empty() {
            "/".to_owned()
        } else {
            escape(&base_path)
        },
    )
}

/// The path part of the public URL (`http://h:8080/irma-sim` → `/irma-sim`), so the page works
/// whichever host name the browser used.
fn path_of(url: &str) -> String {
    let path = match url.find("://") {
        Some(i) => url
            .get(i + 3..)
            .and_then(|rest| rest.find('/').map(|j| &rest[j..]))
            .unwrap_or(""),
        None => url,
    };
    path.trim_end_matches('/').to_owned()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irma::simulator::SimulatorConfig;

    #[test]
    fn page_lists_pending_session_with_demo_values() {
        let sim = Simulator::new(SimulatorConfig::new("http://127.0.0.1:8080/irma-sim"));
        let new = sim
            .start(
                vec![vec![vec!["irma-demo.gemeente.personalData.bsn".into()]]],
                Some("tel:+31,1".into()),
                false,
            )
            .unwrap();
        let html = render(&sim);
        assert!(html.contains("NOT an IRMA server"));
        assert!(html.contains(&new.client_token));
        assert!(html.contains("value=\"999993653\""));
        assert!(html.contains("\"/irma-sim\" + '/session/'"));
        assert!(
            !html.contains(&new.requestor_token),
            "the page must not show the requestor token"
        );
        assert!(
            !html.contains("tel:+31,1"),
            "the page must not show the return URL before a scan"
        );
    }

    #[test]
    fn escapes_and_paths() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(path_of("http://h:1/irma-sim/"), "/irma-sim");
        assert_eq!(path_of("http://h:1"), "");
    }
}
