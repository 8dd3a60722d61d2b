//! DNS for SIP next hops (RFC 3263): the queries a [`NextHop`] with a host name needs, made with
//! `hickory-resolver` (system resolver configuration and `/etc/hosts`).
//!
//! Only trunk dialogs route by name: a trunk or its SBC may name itself in Record-Route or Contact
//! (`sip:sbc.gemeente.nl;lr`). Hosts named by an agent phone's Contact are never looked up — phones
//! are reached on the flow they registered from. What to query and in which order the answers are
//! tried is decided by [`sip::routing`] ([`NextHop::lookup_plan`], [`order_naptr`], [`order_srv`]);
//! this file only asks the resolver.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use sip::endpoint::Target;
use sip::routing::{default_port, order_naptr, order_srv, LookupPlan, Naptr, NextHop, Srv};
use sip::transaction::Transport;
use tokio::sync::OnceCell;

/// Why a next hop could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no DNS resolver configured: {0}")]
    NoResolver(String),
    #[error("{name}: {error}")]
    Lookup { name: String, error: String },
    #[error("{0} has no address")]
    NoAddress(String),
}

/// A lazily built resolver shared by all calls (hickory caches answers by their TTL).
#[derive(Default)]
pub struct Resolver {
    inner: OnceCell<Result<TokioResolver, String>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    /// The [`Target`] for a host-name hop, per RFC 3263 (§4.1 transport, §4.2 port and address).
    /// `family` is the address family to prefer (the flow's), when a name has both.
    pub async fn resolve(&self, hop: &NextHop, family: IpAddr) -> Result<Target, ResolveError> {
        let Some(plan) = hop.lookup_plan() else {
            // An IP literal needs no DNS; the caller uses `literal_target`.
            return hop
                .literal_target(None)
                .ok_or_else(|| ResolveError::NoAddress(format!("{:?}", hop.host)));
        };
        let dns = self.dns().await?;
        match plan {
            LookupPlan::Address {
                name,
                port,
                transport,
            } => address(dns, &name, port, transport, family).await,
            LookupPlan::Srv {
                name,
                srv,
                transport,
            } => match via_srv(dns, &srv, transport, family).await {
                Some(t) => Ok(t),
                None => address(dns, &name, default_port(transport), transport, family).await,
            },
            LookupPlan::Naptr {
                name,
                srv,
                fallback,
            } => {
                let naptr = naptr(dns, &name).await;
                let services = order_naptr(&naptr, hop.secure);
                let candidates = if services.is_empty() { srv } else { services };
                for (srv_name, transport) in candidates {
                    if let Some(t) = via_srv(dns, &srv_name, transport, family).await {
                        return Ok(t);
                    }
                }
                address(dns, &name, default_port(fallback), fallback, family).await
            }
        }
    }

    async fn dns(&self) -> Result<&TokioResolver, ResolveError> {
        let built = self
            .inner
            .get_or_init(|| async {
                TokioResolver::builder_tokio()
                    .and_then(|mut b| {
                        // A BYE waits for this: fail over quickly rather than after 3 × 5 s.
                        b.options_mut().timeout = std::time::Duration::from_secs(2);
                        b.options_mut().attempts = 1;
                        b.build()
                    })
                    .map_err(|e| e.to_string())
            })
            .await;
        built
            .as_ref()
            .map_err(|e| ResolveError::NoResolver(e.clone()))
    }
}

/// A/AAAA for `name`, preferring `family`'s kind of address.
async fn address(
    dns: &TokioResolver,
    name: &str,
    port: u16,
    transport: Transport,
    family: IpAddr,
) -> Result<Target, ResolveError> {
    let found = dns
        .lookup_ip(name)
        .await
        .map_err(|e| ResolveError::Lookup {
            name: name.to_owned(),
            error: e.to_string(),
        })?;
    let ips: Vec<IpAddr> = found.iter().collect();
    let ip = ips
        .iter()
        .find(|ip| ip.is_ipv4() == family.is_ipv4())
        .or(ips.first())
        .copied()
        .ok_or_else(|| ResolveError::NoAddress(name.to_owned()))?;
    Ok(Target {
        transport,
        addr: SocketAddr::new(ip, port),
    })
}

/// The first SRV target of `srv` (RFC 2782 order) that has an address; `None` when the name has no
/// SRV records or none resolves.
async fn via_srv(
    dns: &TokioResolver,
    srv: &str,
    transport: Transport,
    family: IpAddr,
) -> Option<Target> {
    let lookup = dns.srv_lookup(srv).await.ok()?;
    let records: Vec<Srv> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(Srv {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target: s.target.to_utf8(),
            }),
            _ => None,
        })
        .collect();
    for record in order_srv(records, rand::random()) {
        if let Ok(t) = address(dns, &record.target, record.port, transport, family).await {
            return Some(t);
        }
    }
    None
}

/// The NAPTR records of `name` (none when the lookup fails: RFC 3263 goes on with SRV).
async fn naptr(dns: &TokioResolver, name: &str) -> Vec<Naptr> {
    let Ok(lookup) = dns.lookup(name, RecordType::NAPTR).await else {
        return Vec::new();
    };
    lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::NAPTR(n) => Some(Naptr {
                order: n.order,
                preference: n.preference,
                flags: String::from_utf8_lossy(&n.flags).into_owned(),
                services: String::from_utf8_lossy(&n.services).into_owned(),
                replacement: n.replacement.to_utf8(),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip::message::Uri;

    fn hop(uri: &str) -> NextHop {
        NextHop::from_uri(&Uri::parse(uri.to_owned()).expect("uri")).expect("hop")
    }

    /// `localhost` comes from `/etc/hosts`, which every machine has: a host name in a route set is
    /// resolved, on the port and transport the URI names.
    #[tokio::test]
    async fn a_named_hop_with_a_port_resolves_through_the_hosts_file() {
        let resolver = Resolver::default();
        let v4: IpAddr = "127.0.0.1".parse().expect("ip");
        let t = resolver
            .resolve(&hop("sip:localhost:5071;transport=tcp;lr"), v4)
            .await
            .expect("localhost resolves");
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.addr.port(), 5071);
        assert!(t.addr.ip().is_loopback(), "{t:?}");
    }
}
