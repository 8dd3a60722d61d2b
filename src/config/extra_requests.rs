//! `[[tenants.extra_requests]]`: what an agent may ask a verified caller for during the call
//! ([`crate::extra_requests`]): a disclosure, or with `sign` a signature on a message.
//!
//! ```toml
//! [[tenants.extra_requests]]
//! id = "adres"                      # how the agents' API names it; unique within the tenant
//! label = "Adres"                   # the agent's menu and the citizen's page (Dutch)
//! label_en = "Address"              # optional; the Dutch label when absent
//! disclose = [[["pbdf.gemeente.address.street", "pbdf.gemeente.address.city"]]]
//!
//! [[tenants.extra_requests]]
//! id = "akkoord"
//! label = "Akkoord ondertekenen"
//! sign = "Ik ga akkoord met de afspraken uit dit gesprek."
//! disclose = [[["pbdf.gemeente.personalData.fullname"]]]   # signed with these
//! ```
//!
//! Every attribute must be one of the tenant's `[[tenants.attributes]]`: that list is the one
//! allow-list of what the tenant's agents may see (with its labels), for the disclosure at the
//! start and for everything asked during a call alike.

use std::collections::HashSet;
use std::ops::Range;

use toml::Spanned;

use super::file::{RawCondiscon, RawExtraRequest};
use super::validate::Checker;
use crate::tenant::{Condiscon, ExtraRequest};

/// Longest message a citizen is asked to sign (the Yivi app shows it whole).
const MAX_MESSAGE: usize = 2000;
/// Longest label (a menu item).
const MAX_LABEL: usize = 80;
/// Most extra requests per tenant (a menu, not a catalogue).
const MAX_REQUESTS: usize = 20;

impl Checker<'_, '_> {
    /// The tenant's extra requests; `known` is its allow-list.
    pub(super) fn extra_requests(
        &mut self,
        raw: Option<Vec<Spanned<RawExtraRequest>>>,
        prefix: &str,
        known: &HashSet<String>,
    ) -> Option<Vec<ExtraRequest>> {
        let raw = raw.unwrap_or_default();
        let mut ok = true;
        if raw.len() > MAX_REQUESTS {
            let span = raw.get(MAX_REQUESTS).map_or(0..0, Spanned::span);
            self.invalid(
                &span,
                &format!("{prefix}.extra_requests"),
                format!("at most {MAX_REQUESTS} extra requests per tenant"),
            );
            ok = false;
        }
        let mut ids = HashSet::new();
        let mut requests = Vec::with_capacity(raw.len());
        for (j, request) in raw.into_iter().enumerate() {
            let k = format!("{prefix}.extra_requests[{j}]");
            match self.extra_request(request, &k, known, &mut ids) {
                Some(r) => requests.push(r),
                None => ok = false,
            }
        }
        ok.then_some(requests)
    }

    fn extra_request(
        &mut self,
        raw: Spanned<RawExtraRequest>,
        k: &str,
        known: &HashSet<String>,
        ids: &mut HashSet<String>,
    ) -> Option<ExtraRequest> {
        let span = raw.span();
        let raw = raw.into_inner();
        let id = self
            .required(&raw.id, &span, &format!("{k}.id"))
            .cloned()
            .and_then(|id| {
                let parsed = self.parse(&id, &format!("{k}.id"), request_id)?;
                if ids.insert(parsed.clone()) {
                    Some(parsed)
                } else {
                    self.invalid(
                        &id.span(),
                        &format!("{k}.id"),
                        format!("extra request `{parsed}` is defined twice for this tenant"),
                    );
                    None
                }
            });
        let label = self
            .text(&raw.label, &span, &format!("{k}.label"))
            .and_then(|l| self.short(&raw.label, &format!("{k}.label"), l));
        let label_en = match &raw.label_en {
            None => label.clone(),
            Some(_) => self
                .text(&raw.label_en, &span, &format!("{k}.label_en"))
                .and_then(|l| self.short(&raw.label_en, &format!("{k}.label_en"), l)),
        };
        let disclose = self
            .required(&raw.disclose, &span, &format!("{k}.disclose"))
            .and_then(|d| self.condiscon(d, &format!("{k}.disclose"), known));
        let sign = match &raw.sign {
            None => Some(None),
            Some(message) => self
                .parse(message, &format!("{k}.sign"), |s| {
                    if s.trim().is_empty() {
                        Err("the message to sign must not be empty".to_owned())
                    } else if s.chars().count() > MAX_MESSAGE {
                        Err(format!("at most {MAX_MESSAGE} characters"))
                    } else if s.chars().any(|c| c.is_control() && c != '\n') {
                        Err("no control characters other than line breaks".to_owned())
                    } else {
                        Ok(s.to_owned())
                    }
                })
                .map(Some),
        };
        Some(ExtraRequest {
            id: id?,
            label_nl: label?,
            label_en: label_en?,
            disclose: disclose?,
            sign: sign?,
        })
    }

    /// `text` when it fits a menu item.
    fn short(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        text: String,
    ) -> Option<String> {
        if text.chars().count() <= MAX_LABEL {
            return Some(text);
        }
        let span = value.as_ref().map_or(0..0, Spanned::span);
        self.invalid(&span, key, format!("at most {MAX_LABEL} characters"));
        None
    }

    /// A condiscon (an AND of OR-lists of attribute sets, none empty) of attributes in `known`.
    pub(super) fn condiscon(
        &mut self,
        raw: &Spanned<RawCondiscon>,
        key: &str,
        known: &HashSet<String>,
    ) -> Option<Condiscon> {
        let outer = raw.get_ref();
        let shape_ok = !outer.is_empty()
            && outer.iter().all(|disjunction| {
                !disjunction.is_empty() && disjunction.iter().all(|c| !c.is_empty())
            });
        if !shape_ok {
            self.invalid(
                &raw.span(),
                key,
                "each of the [[[…]]] lists must be non-empty (AND of OR-lists of attribute sets)",
            );
            return None;
        }
        let mut ok = true;
        let condiscon = outer
            .iter()
            .map(|disjunction| {
                disjunction
                    .iter()
                    .map(|conjunction| {
                        conjunction
                            .iter()
                            .map(|id| {
                                if !known.contains(id.get_ref()) {
                                    self.unknown_attribute(&id.span(), key, id.get_ref());
                                    ok = false;
                                }
                                id.get_ref().clone()
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        ok.then_some(condiscon)
    }

    fn unknown_attribute(&mut self, span: &Range<usize>, key: &str, id: &str) {
        self.invalid(
            span,
            key,
            format!("{id} is not one of this tenant's attributes"),
        );
    }
}

/// Lowercase letters, digits and `-`, at most 64: it appears in URLs and the audit log.
fn request_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?}: use lowercase letters, digits and `-` (it appears in URLs)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::load_str;
    use super::super::validate::tests::MINIMAL;
    use std::path::Path;

    const ADDRESS: &str = r#"
[[tenants.attributes]]
id = "pbdf.gemeente.address.street"
label_nl = "Straat"
label_en = "Street"
[[tenants.extra_requests]]
id = "adres"
label = "Adres"
label_en = "Address"
disclose = [[["pbdf.gemeente.address.street"]]]
[[tenants.extra_requests]]
id = "akkoord"
label = "Akkoord ondertekenen"
sign = "Ik ga akkoord."
disclose = [[["pbdf.gemeente.personalData.bsn"]]]
"#;

    fn load(extra: &str) -> Result<super::super::Config, Vec<String>> {
        // The tenant's tables go after the agent, still inside `[[tenants]]`.
        let text = format!("{MINIMAL}{extra}");
        load_str(&text, Path::new("vb.toml"), Vec::new())
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    fn line_in(extra: &str, needle: &str) -> usize {
        let text = format!("{MINIMAL}{extra}");
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn disclosures_and_signatures_load_with_their_labels() {
        let config = load(ADDRESS).unwrap();
        let tenant = config.tenants.iter().next().unwrap();
        assert_eq!(tenant.extra_requests.len(), 2);
        let adres = tenant.extra_request("adres").unwrap();
        assert_eq!(
            (adres.label_nl.as_str(), adres.label_en.as_str()),
            ("Adres", "Address")
        );
        assert_eq!(
            adres.disclose,
            vec![vec![vec!["pbdf.gemeente.address.street".to_owned()]]]
        );
        assert_eq!(adres.sign, None);
        let akkoord = tenant.extra_request("akkoord").unwrap();
        assert_eq!(
            akkoord.label_en, "Akkoord ondertekenen",
            "the Dutch label stands in"
        );
        assert_eq!(akkoord.sign.as_deref(), Some("Ik ga akkoord."));
        // Without any, a tenant has none.
        let plain = load("").unwrap();
        assert!(plain
            .tenants
            .iter()
            .next()
            .unwrap()
            .extra_requests
            .is_empty());
    }

    #[test]
    fn an_attribute_off_the_allow_list_is_refused_at_its_line() {
        let extra = r#"
[[tenants.extra_requests]]
id = "mail"
label = "E-mail"
disclose = [[["pbdf.pbdf.email.email"]]]
"#;
        let errors = load(extra).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let line = line_in(extra, "pbdf.pbdf.email.email");
        assert!(
            errors[0].starts_with(&format!("vb.toml:{line}:")),
            "{errors:?}"
        );
        assert!(
            errors[0].contains("`tenants[0].extra_requests[0].disclose`")
                && errors[0]
                    .contains("pbdf.pbdf.email.email is not one of this tenant's attributes"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_mistake_is_named() {
        let extra = r#"
[[tenants.extra_requests]]
id = "Adres!"
label = ""
disclose = []
sign = "  "
[[tenants.extra_requests]]
label = "Zonder id"
[[tenants.extra_requests]]
id = "dubbel"
label = "Een"
disclose = [[["pbdf.gemeente.personalData.bsn"]]]
[[tenants.extra_requests]]
id = "dubbel"
label = "Twee"
disclose = [[["pbdf.gemeente.personalData.bsn"]]]
"#;
        let errors = load(extra).unwrap_err();
        let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
        assert!(
            has("`tenants[0].extra_requests[0].id`: \"Adres!\""),
            "{errors:?}"
        );
        assert!(
            has("`tenants[0].extra_requests[0].label`: must not be empty"),
            "{errors:?}"
        );
        assert!(
            has("`tenants[0].extra_requests[0].disclose`: each of the"),
            "{errors:?}"
        );
        assert!(
            has("`tenants[0].extra_requests[0].sign`: the message to sign must not be empty"),
            "{errors:?}"
        );
        assert!(has("`tenants[0].extra_requests[1].id`"), "{errors:?}");
        assert!(has("`tenants[0].extra_requests[1].disclose`"), "{errors:?}");
        assert!(
            has("`tenants[0].extra_requests[3].id`: extra request `dubbel` is defined twice"),
            "{errors:?}"
        );
        assert!(
            errors.iter().all(|e| e.starts_with("vb.toml:")),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let extra = r#"
[[tenants.extra_requests]]
id = "x"
label = "X"
disclose = [[["pbdf.gemeente.personalData.bsn"]]]
allowed_attributes = ["pbdf.gemeente.personalData.bsn"]
"#;
        let errors = load(extra).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains("allowed_attributes")),
            "{errors:?}"
        );
    }
}
