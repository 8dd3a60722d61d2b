//! Tenants (municipalities) and agents as types. One install serves several municipalities, chosen by
//! the called number; each has its own disclosure request, attribute allow-list, agents and links.
//! Today the demo builds one tenant that answers every number; the TOML config fills these later.

use std::collections::BTreeMap;
use std::fmt;

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
}

/// A contact-centre agent: who may log in and which softphone registration (SIP username) they use.
#[derive(Clone, Debug)]
pub struct Agent {
    pub id: AgentId,
    pub display_name: String,
    /// SIP digest username the agent's softphone registers with.
    pub sip_username: String,
}

impl Tenant {
    /// Whether a call to `called` (a user part or E.164 number) belongs to this tenant.
    pub fn answers(&self, called: &str) -> bool {
        self.called_numbers.iter().any(|n| n == "*" || n == called)
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
        }
    }
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

    /// The tenant a call to `called` belongs to: an exact number match wins over a `*` tenant.
    pub fn for_called(&self, called: &str) -> Option<&Tenant> {
        self.tenants
            .iter()
            .find(|t| t.called_numbers.iter().any(|n| n == called))
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
}
