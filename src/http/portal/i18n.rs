//! The portal's two languages: Dutch by default, English with `?lang=en` or when the browser's
//! `Accept-Language` prefers English over Dutch. Every word the page and its script show is here;
//! the script gets its share as JSON ([`Texts`] serialised into the page).

use serde::Serialize;

/// A language of the portal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    #[default]
    Nl,
    En,
}

impl Lang {
    /// `?lang=` wins when it names a language we have; else `Accept-Language` (English only when
    /// it ranks English above Dutch); else Dutch.
    pub fn negotiate(query: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(lang) = query.and_then(Lang::parse) {
            return lang;
        }
        let Some(header) = accept_language else {
            return Lang::Nl;
        };
        let (mut nl, mut en) = (0.0f32, 0.0f32);
        for item in header.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match tag.split('-').next() {
                Some("nl") => nl = nl.max(q),
                Some("en") => en = en.max(q),
                _ => {}
            }
        }
        if en > nl {
            Lang::En
        } else {
            Lang::Nl
        }
    }

    /// `nl` or `en`.
    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nl" => Some(Lang::Nl),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The `lang` attribute and query value.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }

    /// The other language (the switch on the page).
    pub fn other(self) -> Lang {
        match self {
            Lang::Nl => Lang::En,
            Lang::En => Lang::Nl,
        }
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Nl => &NL,
            Lang::En => &EN,
        }
    }
}

/// Every text of the portal in one language. `{name}` marks a value the script fills in.
#[derive(Debug, Serialize)]
pub struct Texts {
    pub language_name: &'static str,
    pub title: &'static str,
    pub login_heading: &'static str,
    pub login_intro: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub log_in: &'static str,
    pub log_out: &'static str,
    pub login_failed: &'static str,
    /// `{wait}`: [`Texts::seconds`], [`Texts::one_second`] or [`Texts::minutes`].
    pub locked: &'static str,
    pub seconds: &'static str,
    pub one_second: &'static str,
    pub minutes: &'static str,
    pub login_error: &'static str,
    /// `{name}`, `{tenant}`.
    pub logged_in_as: &'static str,
    pub calls_heading: &'static str,
    pub no_calls: &'static str,
    pub offline: &'static str,
    pub sound: &'static str,
    pub new_call: &'static str,
    pub state_collecting: &'static str,
    pub state_waiting: &'static str,
    pub state_ringing: &'static str,
    pub state_connected: &'static str,
    pub state_ended: &'static str,
    pub verified: &'static str,
    pub unverified: &'static str,
    pub reason_no_code: &'static str,
    pub reason_incomplete_code: &'static str,
    pub reason_unknown_code: &'static str,
    pub reason_expired_code: &'static str,
    pub reason_used_code: &'static str,
    pub reason_irma_error: &'static str,
    pub reason_too_many_wrong_codes: &'static str,
    pub reason_caller_mismatch: &'static str,
    /// The `code_reused` warning on a call whose code a later call presented again.
    pub warning_code_reused: &'static str,
    /// Why the logged-in agent's own phone did not take the call (`agent_leg.reason`), as the
    /// script looks them up: `agent_leg_<reason>`. `{status}`: the phone's SIP status.
    pub agent_leg_not_acceptable: &'static str,
    pub agent_leg_busy: &'static str,
    pub agent_leg_declined: &'static str,
    pub agent_leg_no_answer: &'static str,
    pub agent_leg_unreachable: &'static str,
    pub agent_leg_refused: &'static str,
    pub agent_leg_bad_answer: &'static str,
    pub agent_leg_server_error: &'static str,
    /// Another agent's phone, as a supervisor sees it. `{name}`: that agent's username; `{why}`:
    /// `agent_leg_why_<reason>`.
    pub agent_leg_other: &'static str,
    pub agent_leg_why_not_acceptable: &'static str,
    pub agent_leg_why_busy: &'static str,
    pub agent_leg_why_declined: &'static str,
    pub agent_leg_why_no_answer: &'static str,
    pub agent_leg_why_unreachable: &'static str,
    pub agent_leg_why_refused: &'static str,
    pub agent_leg_why_bad_answer: &'static str,
    pub agent_leg_why_server_error: &'static str,
    pub answer: &'static str,
    pub hang_up: &'static str,
    /// `{name}`.
    pub taken_by: &'static str,
    pub taken_by_you: &'static str,
    pub waiting_time: &'static str,
    pub in_call: &'static str,
    pub on_hold: &'static str,
    pub transferred: &'static str,
    /// The call came in through the municipality's own exchange (`via: "exchange"`).
    pub via_exchange: &'static str,
    /// The citizen calls from the web page where they disclosed (WebRTC, `via: "browser"`).
    pub via_browser: &'static str,
    /// The exchange's forwarding number, `{number}`.
    pub forward_to: &'static str,
    pub anonymous: &'static str,
    pub ended_call: &'static str,
    pub links: &'static str,
    pub error_agent_unavailable: &'static str,
    pub error_already_taken: &'static str,
    pub error_call_ended: &'static str,
    pub error_not_waiting: &'static str,
    pub error_other: &'static str,
    /// The card's **Vraag gegevens** menu and the extra requests' outcomes
    /// ([`crate::extra_requests`]).
    pub requests: RequestTexts,
}

/// Words of the agent's extra requests during a call. The script looks states and reasons up as
/// `state_<state>` and `reason_<reason>`, refusals of `POST …/requests` as `error_<error>`.
#[derive(Debug, Serialize)]
pub struct RequestTexts {
    /// The menu's button.
    pub menu: &'static str,
    /// Above the list of requests on a card.
    pub heading: &'static str,
    /// Marks the attributes a request added during the call.
    pub added: &'static str,
    /// `{message}`: what the caller signed.
    pub signed: &'static str,
    pub state_sent: &'static str,
    pub state_shown: &'static str,
    pub state_unreachable: &'static str,
    pub state_done: &'static str,
    pub state_cancelled: &'static str,
    pub state_expired: &'static str,
    pub state_refused: &'static str,
    pub reason_page_closed: &'static str,
    pub reason_no_page: &'static str,
    pub reason_declined: &'static str,
    pub reason_replaced: &'static str,
    pub reason_call_ended: &'static str,
    pub reason_invalid_proof: &'static str,
    pub reason_credential_expired: &'static str,
    pub reason_missing_attributes: &'static str,
    pub reason_unmatched_request: &'static str,
    pub reason_not_allowed: &'static str,
    pub reason_irma_error: &'static str,
    pub error_call_not_verified: &'static str,
    pub error_unknown_request: &'static str,
    pub error_irma_unavailable: &'static str,
    pub error_request_limit: &'static str,
}

static NL: Texts = Texts {
    language_name: "Nederlands",
    title: "Veilig bellen — oproepen",
    login_heading: "Inloggen",
    login_intro: "Voor medewerkers van het klantcontactcentrum.",
    username: "Gebruikersnaam",
    password: "Wachtwoord",
    log_in: "Inloggen",
    log_out: "Uitloggen",
    login_failed: "Gebruikersnaam of wachtwoord onjuist.",
    locked: "Te veel mislukte pogingen. Probeer het over {wait} opnieuw.",
    seconds: "{n} seconden",
    one_second: "1 seconde",
    minutes: "{n} minuten",
    login_error: "Inloggen lukt nu niet. Probeer het later opnieuw.",
    logged_in_as: "Ingelogd als {name} ({tenant})",
    calls_heading: "Oproepen",
    no_calls: "Er zijn nu geen oproepen.",
    offline: "Geen verbinding met de server. Opnieuw verbinden…",
    sound: "Geluid bij een nieuwe oproep",
    new_call: "Nieuwe oproep",
    state_collecting: "code wordt gelezen",
    state_waiting: "wachtend",
    state_ringing: "gaat over",
    state_connected: "verbonden",
    state_ended: "beëindigd",
    verified: "Geverifieerd",
    unverified: "Niet geverifieerd",
    reason_no_code: "De beller heeft geen code ingetoetst.",
    reason_incomplete_code: "De beller heeft een onvolledige code ingetoetst.",
    reason_unknown_code: "De ingetoetste code is onbekend.",
    reason_expired_code: "De code was verlopen.",
    reason_used_code: "De code was al gebruikt.",
    reason_irma_error: "De Yivi-server (IRMA) was niet bereikbaar.",
    reason_too_many_wrong_codes: "Vanaf dit nummer zijn te vaak verkeerde codes ingetoetst; de code is niet gecontroleerd.",
    reason_caller_mismatch: "De code hoort bij een ander mobiel nummer dan het nummer dat belt.",
    warning_code_reused: "Let op: iemand anders heeft later met de code van deze beller gebeld. Een ander kent deze code.",
    agent_leg_not_acceptable: "Uw telefoon weigerde het gesprek (geen gedeelde codec of versleuteling)",
    agent_leg_busy: "Uw telefoon gaf in gesprek (bezet)",
    agent_leg_declined: "Uw telefoon wees het gesprek af",
    agent_leg_no_answer: "Uw telefoon ging over, maar er werd niet opgenomen",
    agent_leg_unreachable:
        "Uw telefoon was niet bereikbaar (staat de softphone aan en is hij verbonden?)",
    agent_leg_refused: "Uw telefoon weigerde het gesprek (SIP {status})",
    agent_leg_bad_answer: "Uw telefoon nam op, maar met een antwoord dat wij niet konden gebruiken",
    agent_leg_server_error:
        "Uw telefoon kon niet gebeld worden door een storing bij ons; probeer het opnieuw",
    agent_leg_other: "De telefoon van {name} nam het gesprek niet aan: {why}",
    agent_leg_why_not_acceptable: "geen gedeelde codec of versleuteling",
    agent_leg_why_busy: "bezet",
    agent_leg_why_declined: "afgewezen",
    agent_leg_why_no_answer: "niet opgenomen",
    agent_leg_why_unreachable: "niet bereikbaar",
    agent_leg_why_refused: "geweigerd (SIP {status})",
    agent_leg_why_bad_answer: "onbruikbaar antwoord",
    agent_leg_why_server_error: "storing bij ons",
    answer: "Opnemen",
    hang_up: "Ophangen",
    taken_by: "Opgenomen door {name}",
    taken_by_you: "Opgenomen door u",
    waiting_time: "Wachttijd",
    in_call: "In gesprek",
    on_hold: "In de wacht",
    transferred: "Doorverbonden",
    via_exchange: "Via de eigen telefooncentrale",
    via_browser: "Belt via de browser",
    forward_to: "Doorschakelnummer {number}",
    anonymous: "Anoniem nummer",
    ended_call: "Oproep {id}",
    links: "Koppelingen",
    error_agent_unavailable:
        "Uw telefoon is niet aangemeld. Zet uw softphone aan en probeer het opnieuw.",
    error_already_taken: "Een collega heeft deze oproep al opgenomen.",
    error_call_ended: "Deze oproep is al beëindigd.",
    error_not_waiting: "De code van deze beller wordt nog gelezen. Probeer het zo opnieuw.",
    error_other: "Dat lukte niet. Probeer het opnieuw.",
    requests: RequestTexts {
        menu: "Vraag gegevens",
        heading: "Gevraagd tijdens het gesprek",
        added: "toegevoegd tijdens het gesprek",
        signed: "Ondertekend: “{message}”",
        state_sent: "verstuurd naar de pagina van de beller",
        state_shown: "staat op het scherm van de beller",
        state_unreachable: "komt niet aan",
        state_done: "ontvangen",
        state_cancelled: "gestopt",
        state_expired: "niet op tijd beantwoord",
        state_refused: "niet geaccepteerd",
        reason_page_closed: "De pagina van de beller is gesloten.",
        reason_no_page: "Deze beller heeft geen pagina open waarop het verzoek kan verschijnen.",
        reason_declined: "De beller heeft het geweigerd.",
        reason_replaced: "Vervangen door een nieuw verzoek.",
        reason_call_ended: "Het gesprek was al afgelopen.",
        reason_invalid_proof: "Het bewijs klopt niet.",
        reason_credential_expired: "Een gedeeld gegeven is verlopen.",
        reason_missing_attributes: "Niet alles wat gevraagd is, is gedeeld.",
        reason_unmatched_request: "Het antwoord hoort niet bij dit verzoek.",
        reason_not_allowed: "Er zat een gegeven bij dat de gemeente niet accepteert.",
        reason_irma_error: "De Yivi-server gaf geen bruikbaar antwoord.",
        error_call_not_verified: "Deze beller is niet geverifieerd: er is geen pagina om iets te vragen.",
        error_unknown_request: "Dit verzoek bestaat niet (meer).",
        error_irma_unavailable: "De Yivi-server is nu niet bereikbaar. Probeer het zo opnieuw.",
        error_request_limit: "Tijdens dit gesprek is al zo vaak iets gevraagd als mag.",
    },
};

static EN: Texts = Texts {
    language_name: "English",
    title: "Veilig bellen — calls",
    login_heading: "Log in",
    login_intro: "For contact-centre agents.",
    username: "Username",
    password: "Password",
    log_in: "Log in",
    log_out: "Log out",
    login_failed: "Wrong username or password.",
    locked: "Too many failed attempts. Try again in {wait}.",
    seconds: "{n} seconds",
    one_second: "1 second",
    minutes: "{n} minutes",
    login_error: "Logging in does not work right now. Try again later.",
    logged_in_as: "Logged in as {name} ({tenant})",
    calls_heading: "Calls",
    no_calls: "There are no calls right now.",
    offline: "No connection to the server. Reconnecting…",
    sound: "Sound for a new call",
    new_call: "New call",
    state_collecting: "reading code",
    state_waiting: "waiting",
    state_ringing: "ringing",
    state_connected: "connected",
    state_ended: "ended",
    verified: "Verified",
    unverified: "Not verified",
    reason_no_code: "The caller entered no code.",
    reason_incomplete_code: "The caller entered an incomplete code.",
    reason_unknown_code: "The code entered is unknown.",
    reason_expired_code: "The code had expired.",
    reason_used_code: "The code was already used.",
    reason_irma_error: "The Yivi server (IRMA) was unreachable.",
    reason_too_many_wrong_codes:
        "Too many wrong codes came from this number; the code was not checked.",
    reason_caller_mismatch: "The code belongs to a different mobile number than the one calling.",
    warning_code_reused:
        "Caution: someone else later called with this caller's code — another person knows it.",
    agent_leg_not_acceptable: "Your phone refused the call (no common codec or encryption)",
    agent_leg_busy: "Your phone was busy",
    agent_leg_declined: "Your phone declined the call",
    agent_leg_no_answer: "Your phone rang, but nobody answered",
    agent_leg_unreachable: "Your phone could not be reached (is the softphone on and connected?)",
    agent_leg_refused: "Your phone refused the call (SIP {status})",
    agent_leg_bad_answer: "Your phone answered, but with a response we could not use",
    agent_leg_server_error:
        "We could not call your phone because of a fault on our side; try again",
    agent_leg_other: "{name}'s phone did not take the call: {why}",
    agent_leg_why_not_acceptable: "no common codec or encryption",
    agent_leg_why_busy: "busy",
    agent_leg_why_declined: "declined",
    agent_leg_why_no_answer: "not answered",
    agent_leg_why_unreachable: "unreachable",
    agent_leg_why_refused: "refused (SIP {status})",
    agent_leg_why_bad_answer: "unusable answer",
    agent_leg_why_server_error: "a fault on our side",
    answer: "Answer",
    hang_up: "Hang up",
    taken_by: "Taken by {name}",
    taken_by_you: "Taken by you",
    waiting_time: "Waiting time",
    in_call: "In call",
    on_hold: "On hold",
    transferred: "Transferred",
    via_exchange: "Through the municipality's own exchange",
    via_browser: "Calling from the browser",
    forward_to: "Forwarding number {number}",
    anonymous: "Anonymous number",
    ended_call: "Call {id}",
    links: "Links",
    error_agent_unavailable:
        "Your phone is not registered. Switch on your softphone and try again.",
    error_already_taken: "A colleague already took this call.",
    error_call_ended: "This call has already ended.",
    error_not_waiting: "The caller's code is still being read. Try again in a moment.",
    error_other: "That did not work. Try again.",
    requests: RequestTexts {
        menu: "Request details",
        heading: "Asked during the call",
        added: "added during the call",
        signed: "Signed: “{message}”",
        state_sent: "sent to the caller's page",
        state_shown: "on the caller's screen",
        state_unreachable: "cannot reach the caller",
        state_done: "received",
        state_cancelled: "stopped",
        state_expired: "not answered in time",
        state_refused: "not accepted",
        reason_page_closed: "The caller's page is closed.",
        reason_no_page: "This caller has no page open where the request could appear.",
        reason_declined: "The caller declined.",
        reason_replaced: "Replaced by a newer request.",
        reason_call_ended: "The call had ended.",
        reason_invalid_proof: "The proof is not valid.",
        reason_credential_expired: "A shared credential has expired.",
        reason_missing_attributes: "Not everything asked for was shared.",
        reason_unmatched_request: "The answer does not belong to this request.",
        reason_not_allowed: "It held an attribute the municipality does not accept.",
        reason_irma_error: "The Yivi server gave no usable answer.",
        error_call_not_verified: "This caller is not verified: there is no page to ask.",
        error_unknown_request: "This request does not exist (any more).",
        error_irma_unavailable: "The Yivi server cannot be reached now. Try again shortly.",
        error_request_limit: "This call has had as many requests as a call may have.",
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dutch_unless_asked_for_english() {
        assert_eq!(Lang::negotiate(None, None), Lang::Nl);
        assert_eq!(Lang::negotiate(Some("en"), None), Lang::En);
        assert_eq!(Lang::negotiate(Some("nl"), Some("en-US")), Lang::Nl);
        assert_eq!(
            Lang::negotiate(Some("fr"), Some("en-GB,en;q=0.9")),
            Lang::En
        );
        assert_eq!(
            Lang::negotiate(None, Some("en-US,en;q=0.9,nl;q=0.8")),
            Lang::En
        );
        assert_eq!(
            Lang::negotiate(None, Some("nl-NL,nl;q=0.9,en;q=0.8")),
            Lang::Nl
        );
        assert_eq!(Lang::negotiate(None, Some("de-DE,de;q=0.9")), Lang::Nl);
        assert_eq!(Lang::negotiate(None, Some("en;q=0.5,nl;q=0.5")), Lang::Nl);
        assert_eq!(Lang::negotiate(None, Some("garbage;;q=x,,")), Lang::Nl);
    }

    /// Every reason a call can be unverified with has words in both languages (the script looks
    /// them up as `reason_<reason>`), and so has the `code_reused` warning.
    #[test]
    fn every_reason_and_warning_has_words() {
        use crate::call::UnverifiedReason as R;
        let reasons = [
            R::NoCode,
            R::IncompleteCode,
            R::UnknownCode,
            R::ExpiredCode,
            R::UsedCode,
            R::IrmaError,
            R::TooManyWrongCodes,
            R::CallerMismatch,
        ];
        for lang in [Lang::Nl, Lang::En] {
            let texts: serde_json::Value = serde_json::to_value(lang.texts()).unwrap();
            for reason in reasons {
                let key = format!("reason_{}", reason.as_str());
                let text = texts[&key].as_str().unwrap_or_default();
                assert!(text.len() > 10, "{lang:?} has no words for {key}");
            }
            assert!(texts["warning_code_reused"]
                .as_str()
                .is_some_and(|t| t.len() > 10));
        }
    }

    /// Every reason an agent leg can fail with has words for the agent and for a supervisor, in
    /// both languages (the script looks them up as `agent_leg_<reason>` and
    /// `agent_leg_why_<reason>`).
    #[test]
    fn every_agent_leg_reason_has_words() {
        let reasons = crate::call::agent_outcome::AgentLegReason::ALL;
        for lang in [Lang::Nl, Lang::En] {
            let texts: serde_json::Value = serde_json::to_value(lang.texts()).unwrap();
            for reason in reasons {
                for key in [
                    format!("agent_leg_{}", reason.as_str()),
                    format!("agent_leg_why_{}", reason.as_str()),
                ] {
                    let text = texts[&key].as_str().unwrap_or_default();
                    assert!(text.len() > 3, "{lang:?} has no words for {key}");
                }
            }
            let other = texts["agent_leg_other"].as_str().unwrap_or_default();
            assert!(
                other.contains("{name}") && other.contains("{why}"),
                "{other}"
            );
        }
        assert_eq!(
            Lang::Nl.texts().agent_leg_not_acceptable,
            "Uw telefoon weigerde het gesprek (geen gedeelde codec of versleuteling)"
        );
    }

    #[test]
    fn the_pinned_words_are_there() {
        let (nl, en) = (Lang::Nl.texts(), Lang::En.texts());
        assert_eq!(
            [nl.username, nl.password, nl.log_in, nl.answer, nl.hang_up],
            [
                "Gebruikersnaam",
                "Wachtwoord",
                "Inloggen",
                "Opnemen",
                "Ophangen"
            ]
        );
        assert_eq!(
            [en.username, en.password, en.log_in, en.answer, en.hang_up],
            ["Username", "Password", "Log in", "Answer", "Hang up"]
        );
        assert_eq!(
            [nl.verified, nl.unverified],
            ["Geverifieerd", "Niet geverifieerd"]
        );
        assert_eq!([en.verified, en.unverified], ["Verified", "Not verified"]);
        assert_eq!(
            [
                nl.state_waiting,
                nl.state_ringing,
                nl.state_connected,
                nl.state_ended
            ],
            ["wachtend", "gaat over", "verbonden", "beëindigd"]
        );
        assert_eq!(
            [
                en.state_waiting,
                en.state_ringing,
                en.state_connected,
                en.state_ended
            ],
            ["waiting", "ringing", "connected", "ended"]
        );
    }

    /// Every state and reason of an extra request, and every refusal of asking for one, has words
    /// in both languages under the name the script looks up.
    #[test]
    fn every_extra_request_state_and_reason_has_words() {
        use crate::extra_requests::{RequestReason as R, RequestState as S};
        let states = [
            S::Sent,
            S::Shown,
            S::Unreachable,
            S::Done,
            S::Cancelled,
            S::Expired,
            S::Refused,
        ];
        let reasons = [
            R::PageClosed,
            R::NoPage,
            R::Declined,
            R::Replaced,
            R::CallEnded,
            R::InvalidProof,
            R::CredentialExpired,
            R::MissingAttributes,
            R::UnmatchedRequest,
            R::NotAllowed,
            R::IrmaError,
        ];
        for lang in [Lang::Nl, Lang::En] {
            let json = serde_json::to_value(&lang.texts().requests).unwrap();
            let names = states
                .iter()
                .map(|s| format!("state_{}", s.as_str()))
                .chain(reasons.iter().map(|r| format!("reason_{}", r.as_str())))
                .chain(
                    [
                        "error_call_not_verified",
                        "error_unknown_request",
                        "error_irma_unavailable",
                        "error_request_limit",
                    ]
                    .map(String::from),
                );
            for name in names {
                let words = json[&name].as_str().unwrap_or("");
                assert!(!words.is_empty(), "{lang:?} lacks {name}");
            }
        }
        assert_eq!(Lang::Nl.texts().requests.menu, "Vraag gegevens");
        assert_eq!(Lang::En.texts().requests.menu, "Request details");
    }
}
