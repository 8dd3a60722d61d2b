//! The simulator's demo page (`GET /irma-sim/`): lists sessions waiting for the app and lets a
//! person pick attribute values and "scan" — i.e. post to the app stand-in — or decline. Plain HTML
//! with a few lines of script; every value from a session request is HTML-escaped.

use std::fmt::Write;

use super::Simulator;
use crate::http::html::escape;
use crate::http::portal::i18n::Lang;

/// Every word of the page, in one language. The vocabulary is the demo's: the municipality's button
/// says **Veilig bellen met …**, the app **Scan en deel** and **Bel nu**, the portal **Opnemen**.
struct Words {
    title: &'static str,
    banner: &'static str,
    heading: &'static str,
    intro: &'static str,
    intro_call: &'static str,
    none_waiting: &'static str,
    website: &'static str,
    refresh: &'static str,
    walkthrough: &'static str,
    other_lang: (&'static str, &'static str),
    session: &'static str,
    seconds_old: &'static str,
    requested: &'static str,
    /// Before a signature session's message.
    to_sign: &'static str,
    any_option: &'static str,
    scan: &'static str,
    decline: &'static str,
    /// Texts the script shows, as a JSON object.
    script: &'static str,
}

const NL: Words = Words {
    title: "Yivi-app (nagebootst) — GEEN IRMA-server",
    banner: "Nabootsing voor demo's en tests: dit is GEEN IRMA-server en GEEN Yivi-app \
             (NOT an IRMA server). Er wordt niets gecontroleerd.",
    heading: "Yivi-app (nagebootst)",
    intro:
        "Elk formulier hieronder is een sessie die wacht op de Yivi-app. Pas de waarden aan als u \
            wilt en klik op <em>Scan en deel</em>: dat doet wat de app doet. Maak een veld leeg om \
            het weg te laten.",
    intro_call: " Daarna belt <em>Bel nu</em> de gemeente en toetst de code in, zoals de Yivi-app \
                 op een telefoon doet. De code zelf ziet u niet: alleen de app kent hem.",
    none_waiting: "Er wacht geen sessie. Klik op de website van de gemeente op <em>Veilig bellen \
                   met …</em> en daarna hier op <em>Vernieuwen</em>.",
    website: "Website van de gemeente",
    refresh: "Vernieuwen",
    walkthrough: "Uitleg van de demo",
    other_lang: ("en", "English"),
    session: "Sessie",
    seconds_old: "s oud",
    requested: "Gevraagd",
    to_sign: "Te ondertekenen",
    any_option: "Eén van deze mogelijkheden; de velden van één mogelijkheid zijn genoeg.",
    scan: "Scan en deel",
    decline: "Weigeren",
    script: r#"{"shared":"Gedeeld. De Yivi-app belt nu {number} en toetst de code in.","shared_plain":"Gedeeld met de gemeente.","shared_no_call":"Gedeeld. De Yivi-app zou nu {number} bellen en de code intoetsen.","declined":"Geweigerd: er is niets gedeeld.","call":"Bel nu","tones":"Code als tonen in het geluid (in plaats van RFC 4733)","hang_up":"Ophangen","portal":"Kijk nu in het portaal van de medewerker: de oproep staat er als geverifieerd. Klik daar op Opnemen.","portal_link":"Naar het portaal","dialling":"Bellen…","ringing":"Gaat over…","answered":"Opgenomen door de gemeente.","code_sent":"Code ingetoetst ({digits} cijfers, {method}).","audio_heard":"U hoort de gemeente: u wacht op een medewerker.","ended_caller":"Opgehangen.","ended_server":"De gemeente heeft opgehangen.","failed":"Bellen is niet gelukt: {why}","error":"Er ging iets mis: {why}"}"#,
};

const EN: Words = Words {
    title: "Yivi app (simulated) — NOT an IRMA server",
    banner: "Simulator for demos and tests: this is NOT an IRMA server and NOT the Yivi app. It \
             checks nothing.",
    heading: "Yivi app (simulated)",
    intro:
        "Each form below is a session waiting for the Yivi app. Change the values if you like and \
            click <em>Scan and disclose</em>: it does what the app does. Empty a field to leave it \
            out.",
    intro_call: " Then <em>Call now</em> calls the municipality and keys in the code, as the Yivi \
                 app does on a phone. You never see the code itself: only the app knows it.",
    none_waiting: "No session is waiting. On the municipality's website, click <em>Veilig bellen \
                   met …</em>, then <em>Refresh</em> here.",
    website: "The municipality's website",
    refresh: "Refresh",
    walkthrough: "How the demo works",
    other_lang: ("nl", "Nederlands"),
    session: "Session",
    seconds_old: "s old",
    requested: "Requested",
    to_sign: "To sign",
    any_option: "Any one of these options; the fields of one option suffice.",
    scan: "Scan and disclose",
    decline: "Decline",
    script: r#"{"shared":"Disclosed. The Yivi app now calls {number} and keys in the code.","shared_plain":"Shared with the municipality.","shared_no_call":"Disclosed. The Yivi app would now call {number} and key in the code.","declined":"Declined: nothing was disclosed.","call":"Call now","tones":"Code as tones in the audio (instead of RFC 4733)","hang_up":"Hang up","portal":"Now look in the agents' portal: the call is listed as verified. Click Answer there.","portal_link":"To the portal","dialling":"Dialling…","ringing":"Ringing…","answered":"Answered by the municipality.","code_sent":"Code keyed in ({digits} digits, {method}).","audio_heard":"You hear the municipality: you are waiting for an agent.","ended_caller":"Hung up.","ended_server":"The municipality hung up.","failed":"The call did not go through: {why}","error":"Something went wrong: {why}"}"#,
};

/// The page for the current state, in `lang`.
pub(super) fn render(sim: &Simulator, lang: Lang) -> String {
    let words = match lang {
        Lang::Nl => &NL,
        Lang::En => &EN,
    };
    let base_path = path_of(&sim.config().public_url);
    let can_call = sim.can_dial();
    let mut sessions = String::new();
    let pending = sim.pending();
    if pending.is_empty() {
        let _ = write!(sessions, "<p class=\"none\">{}</p>", words.none_waiting);
    }
    for p in &pending {
        let ct = escape(&p.client_token);
        let _ = write!(
            sessions,
            "<form class=\"session\" data-client=\"{ct}\"><h2>{session} {short}… <small>{status}, {age} {old}</small></h2>",
            session = words.session,
            short = escape(p.client_token.get(..6).unwrap_or(&p.client_token)),
            status = p.status,
            age = p.age.as_secs(),
            old = words.seconds_old,
        );
        if let Some(message) = &p.message {
            let _ = write!(
                sessions,
                "<p class=\"to-sign\"><b>{}</b>: “{}”</p>",
                words.to_sign,
                escape(message)
            );
        }
        for (i, discon) in p.disclose.iter().enumerate() {
            let _ = write!(
                sessions,
                "<fieldset><legend>{} #{}</legend>",
                words.requested,
                i + 1
            );
            if discon.len() > 1 {
                let _ = write!(sessions, "<p class=\"hint\">{}</p>", words.any_option);
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
        let _ = write!(
            sessions,
            "<button type=\"submit\" name=\"scan\">{scan}</button> \
             <button type=\"button\" class=\"cancel\">{decline}</button><output></output></form>",
            scan = words.scan,
            decline = words.decline,
        );
    }
    let (other_code, other_name) = words.other_lang;
    let self_path = if base_path.is_empty() {
        "/".to_owned()
    } else {
        escape(&base_path)
    };
    format!(
        r#"<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 48rem; margin: 1rem auto; padding: 0 1rem; }}
.banner {{ background: #b00020; color: #fff; padding: .5rem 1rem; font-weight: bold; }}
nav a {{ margin-right: 1rem; }}
form.session {{ border: 1px solid #999; padding: .5rem 1rem; margin: 1rem 0; }}
label {{ display: block; margin: .25rem 0; font-family: monospace; }}
label input {{ margin-left: .5rem; }}
.hint {{ color: #555; margin: 0; }}
output {{ display: block; margin-top: .5rem; }}
.call {{ margin-top: .5rem; }}
.call label {{ font-family: inherit; }}
.steps {{ margin: .5rem 0; padding-left: 1.25rem; }}
button.dial {{ font-size: 1.1rem; font-weight: bold; }}
</style></head><body>
<p class="banner">{banner}</p>
<nav><a href="/">{walkthrough}</a><a href="/button-demo?lang={lang}">{website}</a><a href="{self_path}?lang={other_code}" lang="{other_code}">{other_name}</a></nav>
<h1>{heading}</h1>
<p>{intro}{intro_call} <a href="{self_path}?lang={lang}">{refresh}</a></p>
{sessions}
<script>
const TEXT = {script};
const CAN_CALL = {can_call};
const fill = (t, v) => t.replace(/\{{(\w+)\}}/g, (_, k) => (k in v ? String(v[k]) : ''));
for (const form of document.querySelectorAll('form.session')) {{
  const session = {base_js} + '/session/' + encodeURIComponent(form.dataset.client);
  const out = form.querySelector('output');
  const say = (text) => {{ const p = document.createElement('p'); p.textContent = text; out.append(p); return p; }};
  const send = async (body) => {{
    const r = await fetch(session + '/disclose', {{ method: 'POST', headers: {{ 'Content-Type': 'application/json' }}, body: JSON.stringify(body) }});
    const answer = await r.json();
    out.textContent = '';
    for (const b of form.querySelectorAll('button')) b.disabled = true;
    if (answer.status === 'DONE') {{
      out.dataset.status = answer.status + ' / ' + answer.proofStatus;
      const shared = !answer.number ? TEXT.shared_plain : CAN_CALL ? TEXT.shared : TEXT.shared_no_call;
      say(fill(shared, {{ number: answer.number || '' }})).className = 'shared';
      if (CAN_CALL && answer.number) offerCall(form, session, out, say);
    }} else if (answer.status === 'CANCELLED') {{
      out.dataset.status = answer.status;
      say(TEXT.declined);
    }} else {{
      say(fill(TEXT.error, {{ why: answer.description || answer.error || r.status }}));
    }}
  }};
  form.addEventListener('submit', (e) => {{
    e.preventDefault();
    const attributes = {{}};
    for (const input of form.querySelectorAll('input[name]')) if (input.value !== '') attributes[input.name] = input.value;
    send({{ attributes, hideCode: true }});
  }});
  form.querySelector('.cancel').addEventListener('click', () => send({{ cancel: true }}));
}}
function offerCall(form, session, out, say) {{
  const box = document.createElement('div');
  box.className = 'call';
  const dial = document.createElement('button');
  dial.type = 'button';
  dial.className = 'dial';
  dial.textContent = TEXT.call;
  const tonesLabel = document.createElement('label');
  const tones = document.createElement('input');
  tones.type = 'checkbox';
  tones.className = 'tones';
  tonesLabel.append(tones, ' ', TEXT.tones);
  box.append(dial, tonesLabel);
  out.append(box);
  dial.addEventListener('click', async () => {{
    dial.disabled = true;
    tones.disabled = true;
    const r = await fetch(session + '/call', {{ method: 'POST', headers: {{ 'Content-Type': 'application/json' }}, body: JSON.stringify({{ tones: tones.checked }}) }});
    if (r.status !== 202) {{
      const e = await r.json().catch(() => ({{}}));
      say(fill(TEXT.error, {{ why: e.description || r.status }}));
      return;
    }}
    const hang = document.createElement('button');
    hang.type = 'button';
    hang.className = 'hang-up';
    hang.textContent = TEXT.hang_up;
    hang.addEventListener('click', () => fetch(session + '/call', {{ method: 'DELETE' }}));
    const steps = document.createElement('ul');
    steps.className = 'steps';
    const portal = document.createElement('p');
    portal.className = 'portal';
    portal.hidden = true;
    const link = document.createElement('a');
    link.href = '/portal?lang={lang}';
    link.target = '_blank';
    link.textContent = TEXT.portal_link;
    portal.append(TEXT.portal + ' ', link);
    box.append(hang, steps, portal);
    let shown = 0;
    for (;;) {{
      const p = await fetch(session + '/call').then((r) => r.json()).catch(() => null);
      if (p && p.steps) {{
        for (; shown < p.steps.length; shown++) {{
          const s = p.steps[shown];
          const li = document.createElement('li');
          li.dataset.step = s.step;
          const key = s.step === 'ended' ? 'ended_' + s.by : s.step;
          li.textContent = fill(TEXT[key] || s.step, s);
          steps.append(li);
          if (s.step === 'code_sent') portal.hidden = false;
        }}
        if (p.done) {{ hang.disabled = true; break; }}
      }}
      await new Promise((ok) => setTimeout(ok, 400));
    }}
  }});
}}
</script></body></html>"#,
        lang = lang.code(),
        title = words.title,
        banner = words.banner,
        walkthrough = words.walkthrough,
        website = words.website,
        heading = words.heading,
        intro = words.intro,
        intro_call = if can_call { words.intro_call } else { "" },
        refresh = words.refresh,
        script = words.script,
        can_call = can_call,
        base_js = serde_json::to_string(&base_path)
            .unwrap_or_default()
            .replace('<', "\\u003c"),
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
        let html = render(&sim, Lang::Nl);
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
        assert_eq!(path_of("http://h:1/irma-sim/"), "/irma-sim");
        assert_eq!(path_of("http://h:1"), "");
    }
}
