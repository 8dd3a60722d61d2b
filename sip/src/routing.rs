//! Where a request goes next (RFC 3261 §8.1.2, §12.2.1.1, §18.1.1; RFC 3263 §4).
//!
//! A request is sent to the URI of its first Route entry when the route set is not empty — for a
//! loose router (`;lr`) that is the Route header, for a strict router the Request-URI, the same
//! URI either way — and to the Request-URI (in a dialog: the remote target) otherwise.
//! [`NextHop::from_uri`] reads host, port and transport from that URI; [`Dialog::next_hop`]
//! (crate::dialog::Dialog::next_hop) picks the URI for in-dialog requests.
//!
//! An IP literal becomes a [`Target`] at once with [`NextHop::literal_target`]. A host name needs
//! DNS, which this crate never does: [`NextHop::lookup_plan`] says which RFC 3263 queries to make
//! (NAPTR, then SRV, then A/AAAA), and [`order_naptr`] / [`order_srv`] put the answers in the order
//! to try. The application's driver makes the queries.
//!
//! Transport choice (RFC 3263 §4.1): the URI's `transport` parameter when present; otherwise TLS for
//! a `sips:` URI and UDP for a `sip:` URI. One exception keeps a working flow: a hop with no
//! `transport` parameter whose address is exactly the address the dialog was set up with goes back
//! over that same transport (a TCP peer that left `;transport=tcp` out of its Contact is still
//! reached on its connection). A connection is only ever reused to the same address (RFC 5923 §4);
//! anything else opens a new one.

use std::net::{IpAddr, SocketAddr};

use crate::endpoint::Target;
use crate::message::{NameAddr, Request, Scheme, Uri};
use crate::transaction::Transport;

/// The host of a next hop: an address to use as is, or a name to resolve (RFC 3263).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopHost {
    Ip(IpAddr),
    Name(String),
}

/// The next hop of a request, as read from the URI that decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: HopHost,
    /// The URI's port, if it names one.
    pub port: Option<u16>,
    /// The URI's `transport` parameter, if it names one we speak.
    pub transport: Option<Transport>,
    /// A `sips:` URI: only TLS will do.
    pub secure: bool,
}

/// Why a URI cannot be a next hop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("the next hop is not a sip: or sips: URI")]
    NotSip,
    #[error("the next hop URI has no host")]
    NoHost,
    #[error("the next hop asks for transport {0:?}, which we do not speak")]
    UnknownTransport(String),
}

/// What DNS queries find a host name's transport, address and port (RFC 3263 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupPlan {
    /// A port was given: A/AAAA for `name`, on `port` over `transport` (§4.2).
    Address {
        name: String,
        port: u16,
        transport: Transport,
    },
    /// A transport but no port: SRV `srv` first, else A/AAAA on the transport's default port.
    Srv {
        name: String,
        srv: String,
        transport: Transport,
    },
    /// Neither: NAPTR for `name` (keep the services [`order_naptr`] returns); without usable NAPTR
    /// records the SRV names in `srv` in order; without those A/AAAA with `fallback` on its
    /// default port.
    Naptr {
        name: String,
        srv: Vec<(String, Transport)>,
        fallback: Transport,
    },
}

/// One NAPTR record (RFC 3403), as the resolver returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub replacement: String,
}

/// One SRV record (RFC 2782), as the resolver returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

impl NextHop {
    /// The next hop a request to `uri` goes to.
    pub fn from_uri(uri: &Uri) -> Result<NextHop, RouteError> {
        let secure = match uri.scheme() {
            Scheme::Sip => false,
            Scheme::Sips => true,
            _ => return Err(RouteError::NotSip),
        };
        // `maddr` overrides the host (RFC 3261 §19.1.1); rarely used, but honoured.
        let params = uri.params();
        let raw_host = params
            .value("maddr")
            .map(str::to_owned)
            .unwrap_or_else(|| uri.host().to_owned());
        if raw_host.is_empty() {
            return Err(RouteError::NoHost);
        }
        let bare = raw_host.trim_start_matches('[').trim_end_matches(']');
        let host = match bare.parse::<IpAddr>() {
            Ok(ip) => HopHost::Ip(ip),
            Err(_) => HopHost::Name(bare.to_ascii_lowercase()),
        };
        let transport = match params.value("transport") {
            None => None,
            Some(t) if t.eq_ignore_ascii_case("udp") => Some(Transport::Udp),
            Some(t) if t.eq_ignore_ascii_case("tcp") => Some(Transport::Tcp),
            Some(t) if t.eq_ignore_ascii_case("tls") => Some(Transport::Tls),
            Some(t) => return Err(RouteError::UnknownTransport(t.to_owned())),
        };
        Ok(NextHop {
            host,
            port: uri.port(),
            transport,
            secure,
        })
    }

    /// The next hop of a request whose route set is `route` and whose remote target (or
    /// Request-URI) is `target`: the first route, else the target (§8.1.2, §12.2.1.1).
    pub fn for_route(route: &[NameAddr], target: &Uri) -> Result<NextHop, RouteError> {
        NextHop::from_uri(route.first().map_or(target, |r| &r.uri))
    }

    /// The next hop of `request` as it stands: its first Route header, else its Request-URI.
    pub fn for_request(request: &Request) -> Result<NextHop, RouteError> {
        let first_route = request
            .headers
            .routes(&crate::message::HeaderName::Route)
            .next()
            .and_then(Result::ok);
        match first_route {
            Some(r) => NextHop::from_uri(&r.uri),
            None => NextHop::from_uri(&request.uri),
        }
    }

    /// The transport named or implied by the URI alone: its parameter, else TLS for `sips:`, else
    /// UDP (RFC 3263 §4.1).
    pub fn uri_transport(&self) -> Transport {
        match (self.transport, self.secure) {
            (Some(t), _) => t,
            (None, true) => Transport::Tls,
            (None, false) => Transport::Udp,
        }
    }

    /// A hop whose host is an IP address, as a [`Target`]; `None` for a host name (see
    /// [`lookup_plan`](Self::lookup_plan)). `flow` is the transport address the dialog was set up
    /// with: a hop without a `transport` parameter to exactly that address keeps its transport.
    pub fn literal_target(&self, flow: Option<Target>) -> Option<Target> {
        let HopHost::Ip(ip) = self.host else {
            return None;
        };
        let transport = self.uri_transport();
        let addr = SocketAddr::new(ip, self.port.unwrap_or(default_port(transport)));
        if self.transport.is_none() && !self.secure {
            if let Some(flow) = flow {
                let flow_default =
                    SocketAddr::new(ip, self.port.unwrap_or(default_port(flow.transport)));
                if flow.addr == flow_default {
                    return Some(flow);
                }
            }
        }
        Some(Target { transport, addr })
    }

    /// The DNS queries for a host-name hop (RFC 3263 §4.1, §4.2); `None` for an IP literal.
    pub fn lookup_plan(&self) -> Option<LookupPlan> {
        let HopHost::Name(name) = &self.host else {
            return None;
        };
        let name = name.clone();
        if let Some(port) = self.port {
            return Some(LookupPlan::Address {
                name,
                port,
                transport: self.uri_transport(),
            });
        }
        if let Some(transport) = self.transport {
            let srv = srv_name(&name, transport, self.secure);
            return Some(LookupPlan::Srv {
                name,
                srv,
                transport,
            });
        }
        let transports: &[Transport] = if self.secure {
            &[Transport::Tls]
        } else {
            &[Transport::Udp, Transport::Tcp, Transport::Tls]
        };
        let srv = transports
            .iter()
            .map(|&t| (srv_name(&name, t, self.secure || t == Transport::Tls), t))
            .collect();
        Some(LookupPlan::Naptr {
            name,
            srv,
            fallback: self.uri_transport(),
        })
    }
}

/// The default port of a transport: 5061 for TLS, 5060 otherwise (RFC 3261 §19.1.2).
pub fn default_port(transport: Transport) -> u16 {
    match transport {
        Transport::Tls => 5061,
        Transport::Udp | Transport::Tcp => 5060,
    }
}

/// `_sip._udp.name`, `_sip._tcp.name` or `_sips._tcp.name` (RFC 3263 §4.1).
fn srv_name(name: &str, transport: Transport, secure: bool) -> String {
    let name = name.trim_end_matches('.');
    match (transport, secure) {
        (Transport::Tls, _) | (Transport::Tcp, true) => format!("_sips._tcp.{name}."),
        (Transport::Tcp, false) => format!("_sip._tcp.{name}."),
        (Transport::Udp, _) => format!("_sip._udp.{name}."),
    }
}

/// The NAPTR records a SIP client may follow, best first (RFC 3263 §4.1): flag `s`, a service we
/// speak (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`; only the last for a `sips:` URI), ordered by order,
/// then preference. Returns the SRV name to query and its transport.
pub fn order_naptr(records: &[Naptr], secure: bool) -> Vec<(String, Transport)> {
    let mut usable: Vec<&Naptr> = records
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter(|r| naptr_transport(&r.services, secure).is_some())
        .collect();
    usable.sort_by_key(|r| (r.order, r.preference));
    usable
        .into_iter()
        .filter_map(|r| Some((r.replacement.clone(), naptr_transport(&r.services, secure)?)))
        .collect()
}

fn naptr_transport(services: &str, secure: bool) -> Option<Transport> {
    match services.to_ascii_uppercase().as_str() {
        "SIPS+D2T" => Some(Transport::Tls),
        "SIP+D2T" if !secure => Some(Transport::Tcp),
        "SIP+D2U" if !secure => Some(Transport::Udp),
        _ => None,
    }
}

/// SRV records in the order to try them (RFC 2782): lowest priority first; within one priority a
/// weighted random pick, drawn from `random` (any random number), so load spreads as the zone asks.
/// A lone `.` target means "not offered here" and is dropped.
pub fn order_srv(mut records: Vec<Srv>, mut random: u64) -> Vec<Srv> {
    records.retain(|r| r.target != "." && !r.target.is_empty());
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .position(|r| r.priority != priority)
            .unwrap_or(records.len());
        let mut group: Vec<Srv> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let index = if total == 0 {
                0
            } else {
                let mut pick = random % (total + 1);
                group
                    .iter()
                    .position(|r| {
                        let w = u64::from(r.weight);
                        if pick <= w && (w > 0 || pick == 0) {
                            true
                        } else {
                            pick = pick.saturating_sub(w);
                            false
                        }
                    })
                    .unwrap_or(group.len() - 1)
            };
            // Next draw from the same number, shifted (splitmix-style) so picks differ.
            random = random.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
            out.push(group.remove(index));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(uri: &str) -> NextHop {
        NextHop::from_uri(&Uri::parse(uri.to_owned()).unwrap()).unwrap()
    }

    fn target(transport: Transport, addr: &str) -> Target {
        Target {
            transport,
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn a_record_route_with_tcp_opens_tcp_to_the_proxy() {
        let flow = target(Transport::Tcp, "192.0.2.1:40312");
        let t = hop("sip:192.0.2.1:5060;transport=tcp;lr").literal_target(Some(flow));
        assert_eq!(t, Some(target(Transport::Tcp, "192.0.2.1:5060")));
    }

    #[test]
    fn a_uri_without_transport_is_udp_unless_it_is_the_flow_itself() {
        let flow = target(Transport::Tcp, "192.0.2.1:5070");
        assert_eq!(
            hop("sip:trunk@192.0.2.1:5070").literal_target(Some(flow)),
            Some(flow),
            "same address: the flow's connection"
        );
        assert_eq!(
            hop("sip:trunk@192.0.2.1:5080").literal_target(Some(flow)),
            Some(target(Transport::Udp, "192.0.2.1:5080"))
        );
        assert_eq!(
            hop("sip:trunk@192.0.2.1").literal_target(None),
            Some(target(Transport::Udp, "192.0.2.1:5060"))
        );
        assert_eq!(
            hop("sips:trunk@192.0.2.1").literal_target(None),
            Some(target(Transport::Tls, "192.0.2.1:5061"))
        );
        assert_eq!(
            hop("sip:[2001:db8::1]:5062;transport=udp").literal_target(None),
            Some(target(Transport::Udp, "[2001:db8::1]:5062"))
        );
    }

    #[test]
    fn the_first_route_wins_over_the_remote_target() {
        let route = vec![NameAddr::parse("<sip:198.51.100.7;lr;transport=tcp>").unwrap()];
        let remote: Uri = Uri::parse("sip:trunk@203.0.113.9:5060").unwrap();
        let h = NextHop::for_route(&route, &remote).unwrap();
        assert_eq!(h.host, HopHost::Ip("198.51.100.7".parse().unwrap()));
        assert_eq!(h.transport, Some(Transport::Tcp));
        let h = NextHop::for_route(&[], &remote).unwrap();
        assert_eq!(h.host, HopHost::Ip("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn host_names_get_an_rfc_3263_plan() {
        assert_eq!(hop("sip:sbc.example.nl:5070").literal_target(None), None);
        assert_eq!(
            hop("sip:sbc.example.nl:5070").lookup_plan(),
            Some(LookupPlan::Address {
                name: "sbc.example.nl".into(),
                port: 5070,
                transport: Transport::Udp
            })
        );
        assert_eq!(
            hop("sip:SBC.example.nl;transport=tcp;lr").lookup_plan(),
            Some(LookupPlan::Srv {
                name: "sbc.example.nl".into(),
                srv: "_sip._tcp.sbc.example.nl.".into(),
                transport: Transport::Tcp
            })
        );
        let Some(LookupPlan::Naptr { srv, fallback, .. }) = hop("sip:sbc.example.nl").lookup_plan()
        else {
            panic!("a bare name starts with NAPTR");
        };
        assert_eq!(fallback, Transport::Udp);
        assert_eq!(srv[0], ("_sip._udp.sbc.example.nl.".into(), Transport::Udp));
        assert_eq!(srv[1], ("_sip._tcp.sbc.example.nl.".into(), Transport::Tcp));
        assert_eq!(
            srv[2],
            ("_sips._tcp.sbc.example.nl.".into(), Transport::Tls)
        );
        let Some(LookupPlan::Naptr { srv, fallback, .. }) =
            hop("sips:sbc.example.nl").lookup_plan()
        else {
            panic!("a bare name starts with NAPTR");
        };
        assert_eq!(fallback, Transport::Tls);
        assert_eq!(
            srv,
            vec![("_sips._tcp.sbc.example.nl.".into(), Transport::Tls)]
        );
        assert_eq!(hop("sip:10.0.0.1").lookup_plan(), None);
    }

    #[test]
    fn unusable_uris_are_errors_not_guesses() {
        let tel = Uri::parse("tel:+31201234567").unwrap();
        assert_eq!(NextHop::from_uri(&tel), Err(RouteError::NotSip));
        let sctp = Uri::parse("sip:a@192.0.2.1;transport=sctp").unwrap();
        assert!(matches!(
            NextHop::from_uri(&sctp),
            Err(RouteError::UnknownTransport(_))
        ));
        let maddr = hop("sip:a@sbc.example.nl;maddr=192.0.2.44");
        assert_eq!(maddr.host, HopHost::Ip("192.0.2.44".parse().unwrap()));
    }

    #[test]
    fn naptr_keeps_sip_services_in_order_and_preference() {
        let n = |order, preference, services: &str, replacement: &str| Naptr {
            order,
            preference,
            flags: "s".into(),
            services: services.into(),
            replacement: replacement.into(),
        };
        let records = vec![
            n(20, 10, "SIP+D2U", "_sip._udp.x."),
            n(10, 20, "SIP+D2T", "_sip._tcp.x."),
            n(10, 10, "SIPS+D2T", "_sips._tcp.x."),
            n(5, 10, "E2U+sip", "ignored."),
        ];
        assert_eq!(
            order_naptr(&records, false),
            vec![
                ("_sips._tcp.x.".into(), Transport::Tls),
                ("_sip._tcp.x.".into(), Transport::Tcp),
                ("_sip._udp.x.".into(), Transport::Udp),
            ]
        );
        assert_eq!(
            order_naptr(&records, true),
            vec![("_sips._tcp.x.".into(), Transport::Tls)]
        );
    }

    #[test]
    fn srv_goes_by_priority_and_spreads_by_weight() {
        let s = |priority, weight, target: &str| Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        };
        let records = vec![
            s(20, 0, "backup."),
            s(10, 60, "a."),
            s(10, 40, "b."),
            s(5, 0, "."),
        ];
        let mut first_a = 0;
        for random in 0..1000u64 {
            let ordered = order_srv(records.clone(), random.wrapping_mul(0x2545_f491_4f6c_dd1d));
            assert_eq!(ordered.len(), 3, "the '.' record is dropped");
            assert_eq!(ordered[2].target, "backup.");
            if ordered[0].target == "a." {
                first_a += 1;
            }
        }
        assert!(
            (450..750).contains(&first_a),
            "a. first {first_a}/1000 times, weight 60 of 100"
        );
    }
}
