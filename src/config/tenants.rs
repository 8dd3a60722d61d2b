//! The `[[tenants]]` of the config file: each municipality with its numbers, website origins,
//! disclosure request, attribute allow-list, agent links and agents. Ids, called numbers and
//! agents' usernames are unique across the whole install.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use toml::Spanned;

use super::file::{
    Flag, RawAgent, RawAttribute, RawCondiscon, RawLink, RawPrompts, RawTenant, RawTenantCalls,
};
use super::validate::{Checker, MIN_SIP_PASSWORD_LEN};
use super::values::{
    argon2id, attribute_id, duration, e164, origin, tenant_id, url_template, username,
};
use super::AgentLogin;
use crate::tenant::{
    Agent, AgentId, AgentLink, AllowedAttribute, Prompts, Tenant, TenantId, Tenants,
    TimeoutOverrides,
};
use std::time::Duration;

/// What earlier tenants already claimed: ids, called numbers and SIP usernames are unique across
/// the whole install.
#[derive(Default)]
pub(super) struct Seen {
    ids: HashSet<TenantId>,
    numbers: HashSet<String>,
    usernames: HashSet<String>,
    /// Exchange keys' hashes (`sha256:…`): a key decides its tenant.
    key_hashes: HashSet<String>,
}

impl Checker<'_, '_> {
    pub(super) fn tenants(
        &mut self,
        raw: Vec<Spanned<RawTenant>>,
    ) -> (Option<Tenants>, Vec<AgentLogin>) {
        if raw.is_empty() {
            self.missing(&(0..0), "tenants", "at least one `[[tenants]]`");
            return (None, Vec::new());
        }
        let mut tenants = Vec::new();
        let mut agents = Vec::new();
        let mut ok = true;
        let mut seen = Seen::default();
        for (i, tenant) in raw.into_iter().enumerate() {
            let span = tenant.span();
            let prefix = format!("tenants[{i}]");
            match self.tenant(tenant.into_inner(), &span, &prefix, &mut seen) {
                Some((tenant, logins)) => {
                    tenants.push(tenant);
                    agents.extend(logins);
                }
                None => ok = false,
            }
        }
        (ok.then(|| Tenants::new(tenants)), agents)
    }

    fn tenant(
        &mut self,
        raw: RawTenant,
        span: &Range<usize>,
        prefix: &str,
        seen: &mut Seen,
    ) -> Option<(Tenant, Vec<AgentLogin>)> {
        let key = |k: &str| format!("{prefix}.{k}");
        let id = self
            .required(&raw.id, span, &key("id"))
            .cloned()
            .and_then(|id| {
                let parsed = self.parse(&id, &key("id"), tenant_id)?;
                if seen.ids.insert(parsed.clone()) {
                    Some(parsed)
                } else {
                    self.invalid(
                        &id.span(),
                        &key("id"),
                        format!("tenant `{parsed}` is defined twice"),
                    );
                    None
                }
            });
        let name = self.text(&raw.name, span, &key("name"));

        let mut numbers = Vec::new();
        let mut numbers_ok = true;
        match &raw.numbers {
            None => {
                self.missing(span, &key("numbers"), "the numbers that reach this tenant");
                numbers_ok = false;
            }
            Some(list) if list.is_empty() => {
                self.invalid(span, &key("numbers"), "name at least one number");
                numbers_ok = false;
            }
            Some(list) => {
                for (j, n) in list.iter().enumerate() {
                    let k = format!("{prefix}.numbers[{j}]");
                    match self.parse(n, &k, |s| if s == "*" { Ok(s.to_owned()) } else { e164(s) }) {
                        Some(n) if !seen.numbers.insert(n.clone()) => {
                            self.invalid(
                                &n_span(list, j),
                                &k,
                                format!("{n} already routes to a tenant"),
                            );
                            numbers_ok = false;
                        }
                        Some(n) => numbers.push(n),
                        None => numbers_ok = false,
                    }
                }
            }
        }
        let callback = match &raw.callback_number {
            Some(n) => self.parse(n, &key("callback_number"), e164),
            None => {
                let first = numbers.iter().find(|n| *n != "*").cloned();
                if first.is_none() && numbers_ok {
                    self.missing(span, &key("callback_number"), "the numbers are all `*`");
                }
                first
            }
        };
        let origins: Vec<Option<String>> = raw
            .website_origins
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, o)| self.parse(o, &format!("{prefix}.website_origins[{j}]"), origin))
            .collect();

        let attributes = self.attributes(raw.attributes.unwrap_or_default(), span, prefix);
        let known: HashSet<String> = attributes.iter().flatten().map(|a| a.id.clone()).collect();
        let disclosure = self.disclosure(&raw.disclosure, span, prefix, &known);
        let caller_id_attribute = match &raw.caller_id_attribute {
            None => Some(None),
            Some(value) => {
                let k = key("caller_id_attribute");
                self.parse(value, &k, |s| {
                    let id = attribute_id(s)?;
                    if known.contains(&id) {
                        Ok(Some(id))
                    } else {
                        Err(format!(
                            "{id} is not one of this tenant's attributes (list it in `[[tenants.attributes]]` and ask for it in `disclosure`)"
                        ))
                    }
                })
            }
        };
        let links: Vec<Option<AgentLink>> = raw
            .links
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(j, link)| self.link(link, &format!("{prefix}.links[{j}]"), &known))
            .collect();
        let extra_requests = self.extra_requests(raw.extra_requests, prefix, &known);
        let tenant_id = id.clone();
        let tenant_srtp = self.srtp_policy(&raw.srtp, &format!("{prefix}.srtp"));
        let exchange = self.exchange(
            raw.exchange_keys,
            raw.agents.as_deref().unwrap_or_default(),
            prefix,
            &mut seen.key_hashes,
        );
        let logins: Vec<Option<(Agent, AgentLogin)>> = raw
            .agents
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(j, agent)| {
                let k = format!("{prefix}.agents[{j}]");
                let srtp = match &agent.get_ref().srtp {
                    None => tenant_srtp,
                    Some(own) => self.srtp_policy(&Some(own.clone()), &format!("{k}.srtp")),
                };
                let (mut agent, login) =
                    self.agent(agent, &k, tenant_id.as_ref(), &mut seen.usernames)?;
                agent.srtp = srtp?;
                Some((agent, login))
            })
            .collect();

        let webrtc = self.flag(&raw.webrtc, &format!("{prefix}.webrtc"));
        let prompts = self.prompts(raw.prompts, prefix);
        let timeouts = self.tenant_timeouts(raw.calls, prefix);
        let logins: Vec<(Agent, AgentLogin)> = logins.into_iter().collect::<Option<_>>()?;
        let tenant = Tenant {
            id: id?,
            display_name: name?,
            phone_number: callback?,
            called_numbers: if numbers_ok { numbers } else { return None },
            disclosure: disclosure?,
            allowed_attributes: attributes.into_iter().collect::<Option<_>>()?,
            website_origins: origins.into_iter().collect::<Option<_>>()?,
            links: links.into_iter().collect::<Option<_>>()?,
            agents: logins
                .iter()
                .map(|(agent, _)| (agent.id.clone(), agent.clone()))
                .collect::<BTreeMap<_, _>>(),
            prompts: prompts?,
            timeouts: timeouts?,
            caller_id_attribute: caller_id_attribute?,
            exchange: exchange?,
            webrtc: webrtc?,
            extra_requests: extra_requests?,
        };
        Some((tenant, logins.into_iter().map(|(_, login)| login).collect()))
    }

    /// A yes/no key: `false` when absent; an error naming `key` unless `true` or `false`.
    fn flag(&mut self, raw: &Option<Spanned<Flag>>, key: &str) -> Option<bool> {
        let Some(flag) = raw else {
            return Some(false);
        };
        match flag.get_ref() {
            Flag::Bool(b) => Some(*b),
            Flag::Text(t) if t == "true" => Some(true),
            Flag::Text(t) if t == "false" => Some(false),
            Flag::Text(_) => {
                self.invalid(&flag.span(), key, "must be true or false");
                None
            }
        }
    }

    /// `[tenants.prompts]`: each file read and checked now (8 kHz mono WAV, 0.1 s to 10 min), so a
    /// bad recording stops the start instead of a call.
    fn prompts(&mut self, raw: Option<Spanned<RawPrompts>>, prefix: &str) -> Option<Prompts> {
        let Some(raw) = raw.map(Spanned::into_inner) else {
            return Some(Prompts::default());
        };
        let mut ok = true;
        let mut load = |this: &mut Self, value: &Option<Spanned<String>>, name: &str| {
            let value = value.as_ref()?;
            let path = this.path(value);
            match crate::audio_file::read_prompt(&path) {
                Ok(samples) => Some(samples),
                Err(e) => {
                    this.invalid(
                        &value.span(),
                        &format!("{prefix}.prompts.{name}"),
                        format!("{}: {e}", path.display()),
                    );
                    ok = false;
                    None
                }
            }
        };
        let prompts = Prompts {
            greeting: load(self, &raw.greeting, "greeting"),
            waiting: load(self, &raw.waiting, "waiting"),
            goodbye: load(self, &raw.goodbye, "goodbye"),
        };
        ok.then_some(prompts)
    }

    /// `[tenants.calls]`: the tenant's own timeouts.
    fn tenant_timeouts(
        &mut self,
        raw: Option<Spanned<RawTenantCalls>>,
        prefix: &str,
    ) -> Option<TimeoutOverrides> {
        let Some(raw) = raw.map(Spanned::into_inner) else {
            return Some(TimeoutOverrides::default());
        };
        let mut ok = true;
        let mut one = |this: &mut Self, value: &Option<Spanned<String>>, name: &str, max: u64| {
            let value = value.as_ref()?;
            let parsed = this.parse(value, &format!("{prefix}.calls.{name}"), |s| {
                duration(s, Duration::from_secs(1), Duration::from_secs(max))
            });
            ok &= parsed.is_some();
            parsed
        };
        let timeouts = TimeoutOverrides {
            first_digit: one(self, &raw.first_digit_timeout, "first_digit_timeout", 300),
            between_digits: one(self, &raw.digit_timeout, "digit_timeout", 300),
            max_wait: one(self, &raw.max_wait, "max_wait", 24 * 3600),
            ring: one(self, &raw.ring_timeout, "ring_timeout", 600),
        };
        ok.then_some(timeouts)
    }

    fn attributes(
        &mut self,
        raw: Vec<Spanned<RawAttribute>>,
        span: &Range<usize>,
        prefix: &str,
    ) -> Vec<Option<AllowedAttribute>> {
        if raw.is_empty() {
            self.missing(
                span,
                &format!("{prefix}.attributes"),
                "the `[[tenants.attributes]]` agents may see",
            );
            return vec![None];
        }
        let mut seen = HashSet::new();
        raw.into_iter()
            .enumerate()
            .map(|(j, attribute)| {
                let span = attribute.span();
                let attribute = attribute.into_inner();
                let k = format!("{prefix}.attributes[{j}]");
                let id = self
                    .required(&attribute.id, &span, &format!("{k}.id"))
                    .cloned()
                    .and_then(|id| self.parse(&id, &format!("{k}.id"), attribute_id));
                if let Some(id) = &id {
                    if !seen.insert(id.clone()) {
                        self.invalid(&span, &format!("{k}.id"), format!("{id} is listed twice"));
                    }
                }
                let label_nl = self.text(&attribute.label_nl, &span, &format!("{k}.label_nl"));
                let label_en = self.text(&attribute.label_en, &span, &format!("{k}.label_en"));
                Some(AllowedAttribute {
                    id: id?,
                    label_nl: label_nl?,
                    label_en: label_en?,
                })
            })
            .collect()
    }

    fn disclosure(
        &mut self,
        raw: &Option<Spanned<RawCondiscon>>,
        span: &Range<usize>,
        prefix: &str,
        known: &HashSet<String>,
    ) -> Option<Vec<Vec<Vec<String>>>> {
        let key = format!("{prefix}.disclosure");
        let raw = self.required(raw, span, &key)?;
        self.condiscon(raw, &key, known)
    }

    fn link(
        &mut self,
        raw: Spanned<RawLink>,
        k: &str,
        known: &HashSet<String>,
    ) -> Option<AgentLink> {
        let span = raw.span();
        let raw = raw.into_inner();
        let label = self.text(&raw.label, &span, &format!("{k}.label"));
        let url = self
            .required(&raw.url, &span, &format!("{k}.url"))
            .cloned()
            .and_then(|url| self.parse(&url, &format!("{k}.url"), |s| url_template(s, known)));
        Some(AgentLink {
            label: label?,
            url_template: url?,
        })
    }

    fn agent(
        &mut self,
        raw: Spanned<RawAgent>,
        k: &str,
        tenant: Option<&TenantId>,
        usernames: &mut HashSet<String>,
    ) -> Option<(Agent, AgentLogin)> {
        let span = raw.span();
        let raw = raw.into_inner();
        let username = self
            .required(&raw.username, &span, &format!("{k}.username"))
            .cloned()
            .and_then(|u| {
                let name = self.parse(&u, &format!("{k}.username"), username)?;
                if usernames.insert(name.clone()) {
                    Some(name)
                } else {
                    self.invalid(&u.span(), &format!("{k}.username"), format!("agent {name} is defined twice (SIP usernames are shared by all tenants)"));
                    None
                }
            });
        let name = self.text(&raw.name, &span, &format!("{k}.name"));
        let hash = self
            .required(&raw.password_hash, &span, &format!("{k}.password_hash"))
            .cloned()
            .and_then(|h| self.parse(&h, &format!("{k}.password_hash"), argon2id));
        let sip_password = self.secret(
            &raw.sip_password,
            &raw.sip_password_file,
            &format!("{k}."),
            "sip_password",
            &span,
            MIN_SIP_PASSWORD_LEN,
        );
        let supervisor = self.flag(&raw.supervisor, &format!("{k}.supervisor"));
        let username = username?;
        let hash = hash?;
        let agent = Agent {
            id: AgentId(username.clone()),
            display_name: name?,
            sip_username: username.clone(),
            password_hash: Some(hash.clone()),
            supervisor: supervisor?,
            srtp: crate::tenant::SrtpPolicy::default(),
        };
        let login = AgentLogin {
            tenant: tenant?.clone(),
            username,
            password_hash: hash,
            sip_password: sip_password?,
        };
        Some((agent, login))
    }
}

impl Checker<'_, '_> {
    /// `srtp = "offer" | "required" | "off"` (default `offer`).
    fn srtp_policy(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
    ) -> Option<crate::tenant::SrtpPolicy> {
        match value {
            None => Some(crate::tenant::SrtpPolicy::default()),
            Some(v) => self.parse(v, key, |s| {
                crate::tenant::SrtpPolicy::parse(s)
                    .ok_or_else(|| format!("{s:?} is not `offer`, `required` or `off`"))
            }),
        }
    }
}

fn n_span(list: &[Spanned<String>], j: usize) -> Range<usize> {
    list.get(j).map_or(0..0, Spanned::span)
}
