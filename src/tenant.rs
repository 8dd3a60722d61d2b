//! Tenants (municipalities) and agents as types. One install serves several municipalities, chosen by
//! the called number; each has its own disclosure request, attribute allow-list, agents and links.
//! Today the demo builds one tenant that answers every number; the TOML config fills these later.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Stable identifier of a tenant, e.g. `"nijmegen"`. Appears in URLs and config; not personal data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub String);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Username of a contact-centre agent within a tenant, e.g. `"agent"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub String);

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An attribute the tenant accepts, with the labels agents see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedAttribute {
    /// Full IRMA attribute identifier, e.g. `pbdf.gemeente.personalData.bsn`.
    pub id: String,
    pub label_nl: String,
    pub label_en: String,
}

/// A link to the municipality's own systems shown next to a verified caller. `{attribute-id}`
/// placeholders in `url_template` are filled with that attribute's value (URL-encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentLink {
    pub label: String,
    pub url_template: String,
}

/// IRMA disclosure request in condiscon form: an AND of OR-lists of inner conjunctions of attribute ids.
pub type Condiscon = Vec<Vec<Vec<String>>>;

/// One municipality.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: TenantId,
    pub display_name: String,
    /// E.164 number citizens call, used in the Yivi `tel:` return URL, e.g. `+31243290000`.
    pub phone_number: String,
    /// Called numbers (E.164, or `*` for any) that route to this tenant.
    pub called_numbers: Vec<String>,
    pub disclosure: Condiscon,
    /// Attributes accepted in a disclosure result; anything else makes the result unacceptable.
    pub allowed_attributes: Vec<AllowedAttribute>,
    /// Browser origins allowed to start sessions (CORS), e.g. `https://www.nijmegen.nl`.
    pub website_origins: Vec<String>,
    pub links: Vec<AgentLink>,
    pub agents: BTreeMap<AgentId, Agent>,
    /// What this tenant's callers hear; the built-in signals where `None`.
    pub prompts: Prompts,
    /// This tenant's call timing where it differs from the install's.
    pub timeouts: TimeoutOverrides,
    /// Caller-ID binding: when a disclosure holds this attribute (a mobile number, e.g.
    /// `pbdf.sidn-pbdf.mobilenumber.mobilenumber`), its code only verifies a call from that
    /// number (`caller_mismatch` otherwise). `None`: any calling number.
    pub caller_id_attribute: Option<String>,
    /// The municipality's own exchange, when it answers calls and asks us by API
    /// (`[[tenants.exchange_keys]]`, `tenants.agents[].extension`; [`crate::exchange`]).
    pub exchange: crate::exchange::ExchangeAccess,
    /// Citizens may call from the web page where they disclosed (WebRTC; `webrtc = true`, off by
    /// default): `POST /api/v1/sessions/{token}/call` ([`crate::http::whip`]).
    pub webrtc: bool,
    /// What agents may ask for during a call (`[[tenants.extra_requests]]`; [`crate::extra_requests`]).
    pub extra_requests: Vec<ExtraRequest>,
}

/// An extra disclosure or signature an agent may ask a verified caller for during the call
/// (`[[tenants.extra_requests]]`). Every attribute in it is on the tenant's allow-list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraRequest {
    /// Unique within the tenant; the agents' API names the request by it.
    pub id: String,
    /// What the agent's menu and the citizen's page show, in Dutch and in English.
    pub label_nl: String,
    pub label_en: String,
    /// What the citizen discloses, or signs with.
    pub disclose: Condiscon,
    /// `Some(message)`: a Yivi signature: the citizen signs `message` with the attributes.
    pub sign: Option<String>,
}

/// A tenant's own call timing; `None` keeps the install's (`[calls]`) value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeoutOverrides {
    pub first_digit: Option<std::time::Duration>,
    pub between_digits: Option<std::time::Duration>,
    pub max_wait: Option<std::time::Duration>,
    pub ring: Option<std::time::Duration>,
}

impl TimeoutOverrides {
    /// `install`'s call timing with this tenant's values put in.
    pub fn apply(
        &self,
        install: &crate::call::machine::CallConfig,
    ) -> crate::call::machine::CallConfig {
        let mut call = install.clone();
        if let Some(t) = self.first_digit {
            call.collect.first_digit_timeout = t;
        }
        if let Some(t) = self.between_digits {
            call.collect.inter_digit_timeout = t;
        }
        if let Some(t) = self.max_wait {
            call.max_wait = t;
        }
        if let Some(t) = self.ring {
            call.agent_ring_timeout = t;
        }
        call
    }
}

/// A tenant's recorded prompts, 8 kHz mono samples shared by all its calls.
#[derive(Clone, Default)]
pub struct Prompts {
    /// Played once when we answer, while the code comes in (default: silence).
    pub greeting: Option<Arc<[i16]>>,
    /// Looped while the caller waits for an agent (default: the install's comfort signal).
    pub waiting: Option<Arc<[i16]>>,
    /// Played before we hang up on a caller nobody took (default: the busy tone).
    pub goodbye: Option<Arc<[i16]>>,
}

impl fmt::Debug for Prompts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |p: &Option<Arc<[i16]>>| p.as_ref().map(|s| s.len() as f64 / 8000.0);
        f.debug_struct("Prompts")
            .field("greeting_s", &secs(&self.greeting))
            .field("waiting_s", &secs(&self.waiting))
            .field("goodbye_s", &secs(&self.goodbye))
            .finish()
    }
}

/// A contact-centre agent: who may log in and which softphone registration (SIP username) they use.
/// Usernames are unique across all tenants (the portal login names no tenant).
#[derive(Clone, Debug)]
pub struct Agent {
    pub id: AgentId,
    pub display_name: String,
    /// SIP digest username the agent's softphone registers with.
    pub sip_username: String,
    /// The agent's portal password; `None`: this agent cannot log in to the portal.
    pub password_hash: Option<PasswordHash>,
    /// May read the tenant's audit log (`GET /api/v1/audit`).
    pub supervisor: bool,
    /// Whether the call to this agent's phone is encrypted (SRTP).
    pub srtp: SrtpPolicy,
}

/// Encrypted media (SRTP with SDES keys, RFC 4568) on the leg to an agent's phone. The keys travel
/// in the SDP, so SRTP is only offered to phones that registered over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// SRTP to phones registered over TLS, plain RTP to the others (and to all of an agent's
    /// phones when only some are on TLS: one offer goes to every phone that rings).
    #[default]
    Offer,
    /// Always SRTP: only the agent's phones registered over TLS are rung.
    Required,
    /// Always plain RTP (a phone on TLS that cannot do SRTP).
    Off,
}

impl SrtpPolicy {
    /// The name in the configuration (`offer`, `required`, `off`).
    pub fn parse(text: &str) -> Option<SrtpPolicy> {
        match text {
            "offer" => Some(SrtpPolicy::Offer),
            "required" => Some(SrtpPolicy::Required),
            "off" => Some(SrtpPolicy::Off),
            _ => None,
        }
    }

    /// Which of an agent's `bindings` to ring and whether the offer is SRTP.
    pub fn plan(
        self,
        bindings: Vec<sip::registrar::Binding>,
    ) -> (Vec<sip::registrar::Binding>, bool) {
        let tls = |b: &sip::registrar::Binding| b.transport == sip::transaction::Transport::Tls;
        match self {
            SrtpPolicy::Off => (bindings, false),
            SrtpPolicy::Required => (bindings.into_iter().filter(tls).collect(), true),
            SrtpPolicy::Offer => {
                let all_tls = !bindings.is_empty() && bindings.iter().all(tls);
                (bindings, all_tls)
            }
        }
    }
}

/// An agent's portal password as an argon2id PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`, what `agent hash-password` prints). Parsed, so
/// a held value always names argon2id with usable parameters. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

/// Why a string is not an argon2id PHC string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordHashError {
    #[error("not an argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash): {0}")]
    Syntax(String),
    #[error("algorithm {0} is not argon2id")]
    Algorithm(String),
    #[error("argon2id parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hashing(String),
}

impl PasswordHash {
    /// Reads a PHC string; only argon2id with parameters argon2 accepts.
    pub fn parse(phc: &str) -> Result<PasswordHash, PasswordHashError> {
        let hash =
            argon2::PasswordHash::new(phc).map_err(|e| PasswordHashError::Syntax(e.to_string()))?;
        if hash.algorithm.as_str() != "argon2id" {
            return Err(PasswordHashError::Algorithm(
                hash.algorithm.as_str().to_owned(),
            ));
        }
        argon2::Params::try_from(&hash).map_err(|e| PasswordHashError::Params(e.to_string()))?;
        if hash.salt.is_none() || hash.hash.is_none() {
            return Err(PasswordHashError::Syntax("no salt or no hash".into()));
        }
        Ok(PasswordHash(phc.to_owned()))
    }

    /// Hashes `password` with argon2id, the crate's default parameters and a random salt (the demo
    /// hashes its `--agent-password` so at startup).
    pub fn hash(password: &str) -> Result<PasswordHash, PasswordHashError> {
        use argon2::PasswordHasher;
        let phc = argon2::Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| PasswordHashError::Hashing(e.to_string()))?
            .to_string();
        PasswordHash::parse(&phc)
    }

    /// Whether `password` is the one hashed here (constant time in the hash comparison; the cost is
    /// the hash's argon2 parameters, so run it on a blocking thread).
    pub fn verify(&self, password: &str) -> bool {
        use argon2::PasswordVerifier;
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), self.0.as_str())
            .is_ok()
    }

    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

impl std::str::FromStr for PasswordHash {
    type Err = PasswordHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PasswordHash::parse(s)
    }
}

impl Tenant {
    /// Whether a call to `called` (a user part or E.164 number, in any of the forms
    /// [`normalize_number`] reads) belongs to this tenant.
    pub fn answers(&self, called: &str) -> bool {
        self.called_numbers.iter().any(|n| n == "*") || self.has_number(called)
    }

    /// Whether `called` is one of this tenant's own numbers (not just its `*`).
    fn has_number(&self, called: &str) -> bool {
        let called = normalize_number(called);
        self.called_numbers
            .iter()
            .any(|n| n != "*" && normalize_number(n) == called)
    }

    /// The allow-list entry for an attribute id, if the tenant accepts it.
    pub fn allowed(&self, attribute_id: &str) -> Option<&AllowedAttribute> {
        self.allowed_attributes
            .iter()
            .find(|a| a.id == attribute_id)
    }

    /// The tenant `veilig-bellen demo` runs with: answers every number, asks name and BSN from the
    /// demo (`irma-demo`) scheme, one agent `agent`.
    pub fn demo() -> Tenant {
        let attr = |id: &str, nl: &str, en: &str| AllowedAttribute {
            id: id.to_owned(),
            label_nl: nl.to_owned(),
            label_en: en.to_owned(),
        };
        let allowed_attributes = vec![
            attr("irma-demo.gemeente.personalData.fullname", "Naam", "Name"),
            attr(
                "irma-demo.gemeente.personalData.bsn",
                "BSN",
                "Citizen service number",
            ),
        ];
        let disclosure = allowed_attributes
            .iter()
            .map(|a| vec![vec![a.id.clone()]])
            .collect();
        let agent = Agent {
            id: AgentId("agent".to_owned()),
            display_name: "Demo agent".to_owned(),
            sip_username: "agent".to_owned(),
            // `veilig-bellen demo` hashes its `--agent-password` into this at startup.
            password_hash: None,
            supervisor: true,
            srtp: SrtpPolicy::default(),
        };
        Tenant {
            id: TenantId("demo".to_owned()),
            display_name: "Gemeente Demodam".to_owned(),
            phone_number: "+31850000000".to_owned(),
            called_numbers: vec!["*".to_owned()],
            disclosure,
            allowed_attributes,
            website_origins: vec![
                "http://127.0.0.1:8080".to_owned(),
                "http://localhost:8080".to_owned(),
            ],
            links: vec![AgentLink {
                label: "Zaaksysteem".to_owned(),
                url_template:
                    "https://zaken.demodam.example/burger/{irma-demo.gemeente.personalData.bsn}"
                        .to_owned(),
            }],
            agents: BTreeMap::from([(agent.id.clone(), agent)]),
            prompts: Prompts::default(),
            timeouts: TimeoutOverrides::default(),
            caller_id_attribute: None,
            exchange: Default::default(),
            // The demo shows every way to call, the browser included.
            webrtc: true,
            extra_requests: Vec::new(),
        }
    }

    /// The extra request `id` of this tenant.
    pub fn extra_request(&self, id: &str) -> Option<&ExtraRequest> {
        self.extra_requests.iter().find(|r| r.id == id)
    }
}

/// A called or configured number in one comparable form: E.164 with `+` for Dutch numbers in any
/// form trunks send them (`+31…`, `0031…`, `31…` with 11 digits, national `0…`), international
/// `00…` as `+…`; spaces, dashes, dots and parentheses dropped. Anything else (a name, a short
/// extension) is returned as it is, lowercased.
pub fn normalize_number(raw: &str) -> String {
    let trimmed = raw.trim();
    let plus = trimmed.starts_with('+');
    let digits: String = trimmed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '+'))
        .collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed.to_ascii_lowercase();
    }
    if plus {
        return format!("+{digits}");
    }
    if let Some(international) = digits.strip_prefix("00") {
        return format!("+{international}");
    }
    if let Some(national) = digits.strip_prefix('0') {
        if national.len() == 9 {
            return format!("+31{national}");
        }
    }
    if digits.starts_with("31") && digits.len() == 11 {
        return format!("+{digits}");
    }
    digits
}

/// All tenants of this install; finds the tenant for a called number.
#[derive(Clone, Debug, Default)]
pub struct Tenants {
    tenants: Vec<Tenant>,
}

impl Tenants {
    pub fn new(tenants: Vec<Tenant>) -> Self {
        Tenants { tenants }
    }

    /// The tenant a call to `called` belongs to: a number match (after [`normalize_number`]) wins
    /// over a `*` tenant.
    pub fn for_called(&self, called: &str) -> Option<&Tenant> {
        self.tenants
            .iter()
            .find(|t| t.has_number(called))
            .or_else(|| self.tenants.iter().find(|t| t.answers(called)))
    }

    pub fn by_id(&self, id: &TenantId) -> Option<&Tenant> {
        self.tenants.iter().find(|t| &t.id == id)
    }

    /// The only tenant, when there is exactly one (requests may then omit the tenant).
    pub fn single(&self) -> Option<&Tenant> {
        match self.tenants.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.iter()
    }

    /// The agent with portal username `username` and their tenant (usernames are unique across
    /// tenants; should a hand-built list repeat one, the first tenant's agent wins).
    pub fn agent(&self, username: &str) -> Option<(&Tenant, &Agent)> {
        self.tenants
            .iter()
            .find_map(|t| t.agents.get(&AgentId(username.to_owned())).map(|a| (t, a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_number_beats_wildcard_tenant() {
        let mut nijmegen = Tenant::demo();
        nijmegen.id = TenantId("nijmegen".into());
        nijmegen.called_numbers = vec!["+31243290000".into()];
        let tenants = Tenants::new(vec![Tenant::demo(), nijmegen]);
        assert_eq!(
            tenants.for_called("+31243290000").map(|t| t.id.0.as_str()),
            Some("nijmegen")
        );
        assert_eq!(
            tenants.for_called("+31201234567").map(|t| t.id.0.as_str()),
            Some("demo")
        );
        assert!(tenants.single().is_none());
    }

    /// A cheap hash for tests (m=64 KiB, t=1): the same code path as a real one.
    const CHEAP: &str = "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$";

    #[test]
    fn a_password_hash_is_argon2id_and_verifies_only_its_password() {
        let hash = PasswordHash::hash("correct horse").unwrap();
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$"),
            "{:?}",
            hash.as_str()
        );
        assert!(hash.verify("correct horse"));
        assert!(!hash.verify("correct hors"));
        assert_eq!(format!("{hash:?}"), "PasswordHash([redacted])");
        assert_eq!(PasswordHash::parse(hash.as_str()), Ok(hash));
    }

    #[test]
    fn only_argon2id_phc_strings_are_password_hashes() {
        assert!(matches!(
            PasswordHash::parse("$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo"),
            Err(PasswordHashError::Algorithm(_))
        ));
        assert!(matches!(
            PasswordHash::parse("plain-text-password"),
            Err(PasswordHashError::Syntax(_))
        ));
        assert!(PasswordHash::parse(CHEAP).is_err(), "no hash part");
    }

    #[test]
    fn agents_are_found_by_username_across_tenants() {
        let mut arnhem = Tenant::demo();
        arnhem.id = TenantId("arnhem".into());
        arnhem.agents = BTreeMap::from([(
            AgentId("jan".into()),
            Agent {
                id: AgentId("jan".into()),
                display_name: "Jan".into(),
                sip_username: "jan".into(),
                password_hash: None,
                supervisor: false,
                srtp: SrtpPolicy::default(),
            },
        )]);
        let tenants = Tenants::new(vec![Tenant::demo(), arnhem]);
        assert_eq!(
            tenants.agent("jan").map(|(t, _)| t.id.0.as_str()),
            Some("arnhem")
        );
        assert_eq!(
            tenants.agent("agent").map(|(t, _)| t.id.0.as_str()),
            Some("demo")
        );
        assert!(tenants.agent("nobody").is_none());
    }

    #[test]
    fn a_number_is_recognised_in_every_form_a_trunk_sends() {
        for form in [
            "+31263770000",
            "0031263770000",
            "31263770000",
            "0263770000",
            "026-377 00 00",
        ] {
            assert_eq!(normalize_number(form), "+31263770000", "{form}");
        }
        assert_eq!(normalize_number("004930123456"), "+4930123456");
        assert_eq!(
            normalize_number("1234"),
            "1234",
            "an extension stays as it is"
        );
        assert_eq!(normalize_number("Agent"), "agent");
    }

    #[test]
    fn two_tenants_are_told_apart_by_number_in_national_form() {
        let mut arnhem = Tenant::demo();
        arnhem.id = TenantId("arnhem".into());
        arnhem.called_numbers = vec!["+31263770000".into()];
        let mut nijmegen = Tenant::demo();
        nijmegen.id = TenantId("nijmegen".into());
        nijmegen.called_numbers = vec!["+31243290000".into()];
        let tenants = Tenants::new(vec![arnhem, nijmegen]);
        let id = |n: &str| tenants.for_called(n).map(|t| t.id.0.clone());
        assert_eq!(id("0243290000").as_deref(), Some("nijmegen"));
        assert_eq!(id("0031263770000").as_deref(), Some("arnhem"));
        assert_eq!(id("+31201234567"), None, "no tenant and no `*`: 404");
    }
}
