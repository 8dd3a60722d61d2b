//! The registrar (RFC 3261 §10.3): bindings from an address-of-record (one of our agents) to the
//! contacts where that agent's softphones can be reached, with expiry, q-values, Path (RFC 3327)
//! and the packet source for NAT traversal (RFC 3581). Sans-IO: `now` comes with every call.
//!
//! Authentication is not done here: the transaction user checks digest credentials
//! ([`crate::auth`]) and that the authenticated user owns the AOR before calling
//! [`Registrar::handle_register`].
//!
//! What we store and why:
//! * the Contact exactly as sent — URI with its url-parameters and escaped `?headers` kept verbatim
//!   (RFC 4475 cparam02, regescrt), contact-parameters separately (cparam01: `sip:x;p` without
//!   brackets is a contact-param `p`, not a url-param);
//! * the **source address and transport** of the REGISTER (what `received`/`rport` describe): a
//!   later INVITE to this contact is sent there. We never resolve a host name taken from a Contact;
//! * the Path header values, to become the Route set of requests to this contact (RFC 3327 §5.3);
//! * Call-ID and CSeq, for the ordering rule of §10.3 step 7.
//!
//! [`Registrar::has_binding_from`] says whether an address holds a live binding (one hash lookup
//! for one that does not), so the driver can answer an agent phone's OPTIONS keep-alive and drop a
//! stranger's.
//!
//! Polling: after `handle_register`/`handle_timeout`, drain [`Registrar::poll_event`]; sleep until
//! [`Registrar::poll_timeout`] (the next binding expiry) and then call `handle_timeout(now)`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::message::{Contact, NameAddr, Uri};
use crate::transaction::Transport;

/// Why a REGISTER was refused. [`status`](Self::status) is the response code to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The request is malformed for a registrar (400, with this reason phrase).
    #[error("{0}")]
    BadRequest(&'static str),
    /// An expiry shorter than our minimum: 423 Interval Too Brief with `Min-Expires`.
    #[error("Interval Too Brief")]
    IntervalTooBrief {
        /// The `Min-Expires` value to send.
        min_expires: u32,
    },
    /// More contacts than one AOR may have (403).
    #[error("Too Many Contacts")]
    TooManyContacts,
}

impl RegisterError {
    /// The SIP status code of the response.
    pub fn status(&self) -> u16 {
        match self {
            RegisterError::BadRequest(_) => 400,
            RegisterError::IntervalTooBrief { .. } => 423,
            RegisterError::TooManyContacts => 403,
        }
    }
}

/// Limits of a [`Registrar`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shorter (non-zero) expiries get 423 with this `Min-Expires`.
    pub min_expires: u32,
    /// Longer expiries are shortened to this.
    pub max_expires: u32,
    /// Expiry when the request gives none.
    pub default_expires: u32,
    /// Most contacts per AOR.
    pub max_contacts: usize,
}

impl Default for RegistrarConfig {
    /// 60 s minimum, 3600 s maximum and default, 10 contacts per AOR.
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

/// A REGISTER as the registrar needs it, read from a request by the transaction user.
#[derive(Debug, Clone)]
pub struct RegisterRequest {
    /// The AOR key: the user part of the To URI, %-escapes resolved (an agent's username).
    pub aor: String,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// Contact values in order (`*` or addresses).
    pub contacts: Vec<Contact>,
    /// The `Expires` header, if any.
    pub expires: Option<u32>,
    /// `Path` header values in order (RFC 3327).
    pub path: Vec<String>,
    /// Where the REGISTER came from (the `received`/`rport` of RFC 3581).
    pub source: SocketAddr,
    /// The transport it came on.
    pub transport: Transport,
}

impl RegisterRequest {
    /// The AOR key for a To URI: 400 unless it is a `sip:`/`sips:` URI with a user part
    /// (RFC 3261 §10.3 step 5; RFC 4475 unksm2).
    pub fn aor_of(to: &Uri) -> Result<String, RegisterError> {
        if !to.is_sip() {
            return Err(RegisterError::BadRequest("AOR must be a SIP or SIPS URI"));
        }
        let user = to
            .user()
            .ok_or(RegisterError::BadRequest("AOR has no user part"))?;
        Ok(String::from_utf8_lossy(&crate::message::unescape(user)).into_owned())
    }
}

/// One binding of an AOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact: URI verbatim, contact-parameters without `expires`.
    pub contact: NameAddr,
    /// q-value in thousandths (`None`: not given).
    pub q: Option<u16>,
    /// When the binding lapses.
    pub expires_at: Instant,
    /// Call-ID of the REGISTER that made or last refreshed it.
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// Path values to use as Route set towards this contact.
    pub path: Vec<String>,
    /// Where to send requests for this contact: the REGISTER's source address.
    pub target: SocketAddr,
    /// The transport the REGISTER came on.
    pub transport: Transport,
}

impl Binding {
    /// Seconds left at `now` (rounded up, so a live binding never shows 0).
    pub fn remaining(&self, now: Instant) -> u32 {
        let left = self.expires_at.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// The Contact header value for a 200 OK: `<uri>;params;expires=N`.
    pub fn contact_value(&self, now: Instant) -> String {
        let mut c = self.contact.clone();
        c.params = c
            .params
            .with("expires", Some(&self.remaining(now).to_string()));
        c.to_string()
    }
}

/// Something the application may want to know (e.g. to show an agent as reachable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// The set of bindings of `aor` changed; it now has `bindings` contacts.
    BindingsChanged {
        /// The AOR key.
        aor: String,
        /// Number of live bindings.
        bindings: usize,
    },
}

/// The binding store. See the module docs.
#[derive(Debug)]
pub struct Registrar {
    config: RegistrarConfig,
    aors: HashMap<String, Vec<Binding>>,
    /// How many stored bindings each source IP (canonical: IPv4-mapped as IPv4) holds; kept in step
    /// with `aors` by `store` and `expire`, the only places that change it.
    sources: HashMap<IpAddr, usize>,
    events: VecDeque<RegistrarEvent>,
}

impl Registrar {
    /// An empty registrar.
    pub fn new(config: RegistrarConfig) -> Self {
        Registrar {
            config,
            aors: HashMap::new(),
            sources: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    /// Applies an (authenticated, authorised) REGISTER (RFC 3261 §10.3 steps 6–8). On success
    /// returns every current binding of the AOR, highest q first, for the 200 OK. A refused request
    /// changes nothing.
    pub fn handle_register(
        &mut self,
        now: Instant,
        req: &RegisterRequest,
    ) -> Result<Vec<Binding>, RegisterError> {
        self.expire(now, Some(&req.aor));
        let star = req.contacts.iter().any(|c| matches!(c, Contact::Star));
        if star {
            if req.contacts.len() != 1 {
                return Err(RegisterError::BadRequest(
                    "'*' Contact mixed with other contacts",
                ));
            }
            if req.expires != Some(0) {
                return Err(RegisterError::BadRequest("'*' Contact requires Expires: 0"));
            }
            let current = self.aors.get(&req.aor).cloned().unwrap_or_default();
            // §10.3 step 6/7: each binding goes only if this request is newer for it.
            let kept: Vec<Binding> = current
                .into_iter()
                .filter(|b| b.call_id == req.call_id && req.cseq <= b.cseq)
                .collect();
            return Ok(self.store(&req.aor, kept));
        }

        // Work on a copy; commit only if every contact passes.
        let mut bindings = self.aors.get(&req.aor).cloned().unwrap_or_default();
        for c in &req.contacts {
            let Contact::Addr(addr) = c else { continue };
            let expires = match c.expires() {
                Some(Ok(e)) => e,
                Some(Err(())) => return Err(RegisterError::BadRequest("Bad Contact expires")),
                None => req.expires.unwrap_or(self.config.default_expires),
            };
            if expires != 0 && expires < self.config.min_expires {
                return Err(RegisterError::IntervalTooBrief {
                    min_expires: self.config.min_expires,
                });
            }
            let q = match c.q() {
                Some(Ok(q)) => Some(q),
                Some(Err(())) => return Err(RegisterError::BadRequest("Bad Contact q-value")),
                None => None,
            };
            let existing = bindings
                .iter()
                .position(|b| b.contact.uri.equivalent(&addr.uri));
            if let Some(i) = existing {
                let b = &bindings[i];
                if b.call_id == req.call_id && req.cseq <= b.cseq {
                    return Err(RegisterError::BadRequest("CSeq out of order for binding"));
                }
            }
            if expires == 0 {
                if let Some(i) = existing {
                    bindings.remove(i);
                }
                continue;
            }
            let secs = expires.min(self.config.max_expires);
            let mut contact = addr.clone();
            contact.params = contact.params.without("expires");
            let binding = Binding {
                contact,
                q,
                expires_at: now + Duration::from_secs(u64::from(secs)),
                call_id: req.call_id.clone(),
                cseq: req.cseq,
                path: req.path.clone(),
                target: req.source,
                transport: req.transport,
            };
            match existing {
                Some(i) => bindings[i] = binding,
                None => bindings.push(binding),
            }
        }
        if bindings.len() > self.config.max_contacts {
            return Err(RegisterError::TooManyContacts);
        }
        Ok(self.store(&req.aor, bindings))
    }

    /// The live bindings of `aor` (an agent's username), highest q first: the contacts to INVITE
    /// in parallel.
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .aors
            .get(aor)
            .map(|bs| bs.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        v.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
        v
    }

    /// Whether some live binding was registered from `ip` (an IPv4-mapped address counts as its
    /// IPv4 address). For an address without one this is a single hash lookup, cheap enough to ask
    /// for every packet a stranger sends.
    pub fn has_binding_from(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = ip.to_canonical();
        if !self.sources.contains_key(&ip) {
            return false;
        }
        // A binding past its expiry stays stored until `handle_timeout`; it no longer counts.
        self.aors
            .values()
            .flatten()
            .any(|b| b.target.ip().to_canonical() == ip && b.expires_at > now)
    }

    /// Drops lapsed bindings.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now, None);
    }

    /// The next binding expiry, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.aors.values().flatten().map(|b| b.expires_at).min()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<RegistrarEvent> {
        self.events.pop_front()
    }

    /// How many AORs have at least one binding.
    pub fn len(&self) -> usize {
        self.aors.len()
    }

    /// Whether no AOR has a binding.
    pub fn is_empty(&self) -> bool {
        self.aors.is_empty()
    }

    /// Replaces the bindings of `aor`, reporting a change in their number.
    fn store(&mut self, aor: &str, mut bindings: Vec<Binding>) -> Vec<Binding> {
        let old = self.aors.get(aor).map(Vec::as_slice).unwrap_or_default();
        let before = old.len();
        count_sources(&mut self.sources, old, false);
        count_sources(&mut self.sources, &bindings, true);
        if before != bindings.len() {
            self.events.push_back(RegistrarEvent::BindingsChanged {
                aor: aor.to_string(),
                bindings: bindings.len(),
            });
        }
        if bindings.is_empty() {
            self.aors.remove(aor);
            return Vec::new();
        }
        bindings.sort_by_key(|b| std::cmp::Reverse(b.q.unwrap_or(1000)));
        self.aors.insert(aor.to_string(), bindings.clone());
        bindings
    }

    fn expire(&mut self, now: Instant, only: Option<&str>) {
        let mut changed = Vec::new();
        for (aor, bs) in self.aors.iter_mut() {
            if only.is_some_and(|o| o != aor) {
                continue;
            }
            let (live, lapsed): (Vec<Binding>, Vec<Binding>) = std::mem::take(bs)
                .into_iter()
                .partition(|b| b.expires_at > now);
            *bs = live;
            if !lapsed.is_empty() {
                count_sources(&mut self.sources, &lapsed, false);
                changed.push((aor.clone(), bs.len()));
            }
        }
        for (aor, bindings) in changed {
            if bindings == 0 {
                self.aors.remove(&aor);
            }
            self.events
                .push_back(RegistrarEvent::BindingsChanged { aor, bindings });
        }
    }
}

/// Adds (`add`) or removes the source IPs of `bindings` to or from the per-IP counts.
fn count_sources(sources: &mut HashMap<IpAddr, usize>, bindings: &[Binding], add: bool) {
    for b in bindings {
        let ip = b.target.ip().to_canonical();
        if add {
            *sources.entry(ip).or_default() += 1;
        } else if let Some(n) = sources.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                sources.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(s: &str) -> Contact {
        if s == "*" {
            Contact::Star
        } else {
            Contact::Addr(NameAddr::parse(s.to_string()).unwrap())
        }
    }

    fn req(contacts: &[&str], expires: Option<u32>, call_id: &str, cseq: u32) -> RegisterRequest {
        RegisterRequest {
            aor: "agent".into(),
            call_id: call_id.into(),
            cseq,
            contacts: contacts.iter().map(|c| contact(c)).collect(),
            expires,
            path: vec![],
            source: "192.0.2.7:40000".parse().unwrap(),
            transport: Transport::Udp,
        }
    }

    #[test]
    fn binding_gets_default_expiry_and_nat_source_as_target() {
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        let b = r
            .handle_register(t, &req(&["<sip:agent@10.0.0.5:5060>"], None, "c1", 1))
            .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].remaining(t), 3600);
        assert_eq!(b[0].target, "192.0.2.7:40000".parse().unwrap());
        assert_eq!(
            b[0].contact_value(t),
            "<sip:agent@10.0.0.5:5060>;expires=3600"
        );
        assert_eq!(r.lookup("agent", t).len(), 1);
        assert_eq!(
            r.poll_event(),
            Some(RegistrarEvent::BindingsChanged {
                aor: "agent".into(),
                bindings: 1
            })
        );
    }

    #[test]
    fn expires_param_overrides_header_and_is_clamped_to_max() {
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        let b = r
            .handle_register(
                t,
                &req(
                    &[
                        "<sip:a@h1>;expires=120",
                        "<sip:a@h2>;expires=99999",
                        "<sip:a@h3>",
                    ],
                    Some(300),
                    "c1",
                    1,
                ),
            )
            .unwrap();
        let mut secs: Vec<u32> = b.iter().map(|b| b.remaining(t)).collect();
        secs.sort();
        assert_eq!(secs, vec![120, 300, 3600]);
    }

    #[test]
    fn too_brief_interval_gets_423_and_changes_nothing() {
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        let e = r
            .handle_register(
                t,
                &req(&["<sip:a@h1>", "<sip:a@h2>;expires=10"], None, "c", 1),
            )
            .unwrap_err();
        assert_eq!(e, RegisterError::IntervalTooBrief { min_expires: 60 });
        assert_eq!(e.status(), 423);
        assert!(r.lookup("agent", t).is_empty());
    }

    #[test]
    fn bindings_expire_and_timeout_reports_it() {
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        r.handle_register(t, &req(&["<sip:a@h1>"], Some(60), "c", 1))
            .unwrap();
        assert_eq!(r.poll_timeout(), Some(t + Duration::from_secs(60)));
        let _ = r.poll_event();
        r.handle_timeout(t + Duration::from_secs(61));
        assert!(r.lookup("agent", t + Duration::from_secs(61)).is_empty());
        assert_eq!(
            r.poll_event(),
            Some(RegistrarEvent::BindingsChanged {
                aor: "agent".into(),
                bindings: 0
            })
        );
        assert!(r.is_empty());
    }

    #[test]
    fn star_needs_expires_zero_and_removes_all() {
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        r.handle_register(t, &req(&["<sip:a@h1>", "<sip:a@h2>"], None, "c", 1))
            .unwrap();
        let e = r
            .handle_register(t, &req(&["*"], None, "c", 2))
            .unwrap_err();
        assert_eq!(e.status(), 400);
        let e = r
            .handle_register(t, &req(&["*", "<sip:a@h3>"], Some(0), "c", 2))
            .unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(r.lookup("agent", t).len(), 2);
        while r.poll_event().is_some() {}
        let b = r.handle_register(t, &req(&["*"], Some(0), "c", 3)).unwrap();
        assert!(b.is_empty());
        assert!(r.lookup("agent", t).is_empty());
        assert_eq!(
            r.poll_event(),
            Some(RegistrarEvent::BindingsChanged {
                aor: "agent".into(),
                bindings: 0
            }),
            "the application hears that the agent is gone"
        );
    }

    #[test]
    fn an_address_has_a_binding_while_one_registered_from_it_lives() {
        let t = Instant::now();
        let phone: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let stranger: IpAddr = "192.0.2.8".parse().unwrap();
        let mut r = Registrar::new(RegistrarConfig::default());
        assert!(!r.has_binding_from(phone, t));
        r.handle_register(t, &req(&["<sip:a@h1>", "<sip:a@h2>"], Some(60), "c", 1))
            .unwrap();
        assert!(r.has_binding_from(phone, t));
        assert!(
            r.has_binding_from(mapped, t),
            "IPv4-mapped is the same address"
        );
        assert!(!r.has_binding_from(stranger, t));
        // Lapsed but not yet dropped by handle_timeout: no longer live.
        let later = t + Duration::from_secs(61);
        assert!(!r.has_binding_from(phone, later));
        r.handle_timeout(later);
        assert!(r.sources.is_empty(), "{:?}", r.sources);

        // One of two contacts removed: still registered; the other removed by `*`: not.
        r.handle_register(t, &req(&["<sip:a@h1>", "<sip:a@h2>"], None, "d", 1))
            .unwrap();
        r.handle_register(t, &req(&["<sip:a@h1>;expires=0"], None, "d", 2))
            .unwrap();
        assert!(r.has_binding_from(phone, t));
        r.handle_register(t, &req(&["*"], Some(0), "d", 3)).unwrap();
        assert!(!r.has_binding_from(phone, t));
        assert!(r.sources.is_empty(), "{:?}", r.sources);

        // A phone that moved: the new address counts, the old one no longer.
        r.handle_register(t, &req(&["<sip:a@h1>"], None, "e", 1))
            .unwrap();
        let mut moved = req(&["<sip:a@h1>"], None, "e", 2);
        moved.source = "198.51.100.4:5060".parse().unwrap();
        r.handle_register(t, &moved).unwrap();
        assert!(!r.has_binding_from(phone, t));
        assert!(r.has_binding_from("198.51.100.4".parse().unwrap(), t));
        assert_eq!(r.sources.len(), 1);
    }

    #[test]
    fn same_call_id_needs_higher_cseq_other_call_id_replaces() {
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        r.handle_register(t, &req(&["<sip:a@h1>"], Some(600), "c", 5))
            .unwrap();
        let e = r
            .handle_register(t, &req(&["<sip:a@h1>"], Some(900), "c", 5))
            .unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(r.lookup("agent", t)[0].remaining(t), 600);
        // A rebooted phone (new Call-ID, low CSeq) may replace the binding.
        r.handle_register(t, &req(&["<sip:a@h1>"], Some(900), "new", 1))
            .unwrap();
        assert_eq!(r.lookup("agent", t)[0].remaining(t), 900);
        // And remove it with expires=0.
        let b = r
            .handle_register(t, &req(&["<sip:a@h1>;expires=0"], None, "new", 2))
            .unwrap();
        assert!(b.is_empty());
    }

    #[test]
    fn equivalent_uris_refresh_one_binding_and_q_orders_lookup() {
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        r.handle_register(
            t,
            &req(&["<sip:a@H1>;q=0.2", "<sip:a@h2>;q=0.9"], None, "c", 1),
        )
        .unwrap();
        let b = r
            .handle_register(t, &req(&["<sip:a@h1>;q=0.2"], Some(120), "c", 2))
            .unwrap();
        assert_eq!(b.len(), 2);
        let l = r.lookup("agent", t);
        assert_eq!(l[0].contact.uri.as_str(), "sip:a@h2");
        assert_eq!(l[0].q, Some(900));
        assert_eq!(l[1].remaining(t), 120);
    }

    #[test]
    fn contact_params_and_url_params_stay_where_they_were() {
        // RFC 4475 cparam01, cparam02, regescrt.
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        let b = r
            .handle_register(
                t,
                &req(
                    &["sip:+19725552222@gw1.example.net;unknownparam"],
                    None,
                    "c1",
                    1,
                ),
            )
            .unwrap();
        assert_eq!(
            b[0].contact.uri.as_str(),
            "sip:+19725552222@gw1.example.net"
        );
        assert!(b[0].contact.params.has("unknownparam"));
        assert_eq!(
            b[0].contact_value(t),
            "<sip:+19725552222@gw1.example.net>;unknownparam;expires=3600"
        );
        let mut r = Registrar::new(RegistrarConfig::default());
        let b = r
            .handle_register(
                t,
                &req(
                    &["<sip:+19725552222@gw1.example.net;unknownparam>"],
                    None,
                    "c2",
                    1,
                ),
            )
            .unwrap();
        assert_eq!(
            b[0].contact.uri.as_str(),
            "sip:+19725552222@gw1.example.net;unknownparam"
        );
        let mut r = Registrar::new(RegistrarConfig::default());
        let b = r
            .handle_register(
                t,
                &req(
                    &["<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"],
                    None,
                    "c3",
                    1,
                ),
            )
            .unwrap();
        assert_eq!(
            b[0].contact_value(t),
            "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>;expires=3600"
        );
    }

    #[test]
    fn contact_limit_is_enforced() {
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig {
            max_contacts: 2,
            ..RegistrarConfig::default()
        });
        let e = r
            .handle_register(
                t,
                &req(&["<sip:a@h1>", "<sip:a@h2>", "<sip:a@h3>"], None, "c", 1),
            )
            .unwrap_err();
        assert_eq!(e, RegisterError::TooManyContacts);
        assert!(r.is_empty());
    }

    #[test]
    fn aor_must_be_sip_with_user() {
        // RFC 4475 unksm2: `To: isbn:2983792873`.
        assert_eq!(
            RegisterRequest::aor_of(&Uri::parse("isbn:2983792873").unwrap())
                .map_err(|e| e.status()),
            Err(400)
        );
        assert_eq!(
            RegisterRequest::aor_of(&Uri::parse("sip:ag%65nt@example.com").unwrap()),
            Ok("agent".to_string())
        );
    }

    #[test]
    fn path_is_stored_with_the_binding() {
        let t = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        let mut q = req(&["<sip:a@h1>"], None, "c", 1);
        q.path = vec!["<sip:edge.example.net;lr>".into()];
        r.handle_register(t, &q).unwrap();
        assert_eq!(r.lookup("agent", t)[0].path, q.path);
    }
}
