//! Per-client token buckets for the public API, in bounded memory.
//!
//! Each client key (an IPv4 address, or the /64 of an IPv6 address, since one subscriber usually
//! holds a whole /64) gets `burst` tokens that refill at `per_second`. At most `max_clients` buckets
//! are kept: when full, buckets that have refilled completely (idle clients) are dropped, and if
//! none can be dropped every new client shares one overflow bucket. So memory stays bounded under
//! a flood of source addresses, and such a flood only throttles itself.
//!
//! The limiter is per process; behind several processes each enforces its own share.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::error::ApiError;

/// Limits of the public API per client.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// Requests a client may make at once.
    pub burst: u32,
    /// Tokens regained per second.
    pub per_second: f64,
    /// Most clients tracked at once.
    pub max_clients: usize,
}

impl Default for RateLimit {
    /// 20 requests at once, then one every 2 s; 10 000 clients.
    fn default() -> Self {
        RateLimit {
            burst: 20,
            per_second: 0.5,
            max_clients: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by client.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Key of the bucket shared by clients that arrive while the table is full.
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// The bucket key for an address: IPv4 as is, IPv6 by /64 (IPv4-mapped IPv6 as IPv4).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token for `ip` at `now`, or say how long until one is available.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let limit = &self.limit;
        let burst = f64::from(limit.burst.max(1));
        let refill = |b: &Bucket| {
            (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * limit.per_second)
                .min(burst)
        };
        // Bucket updates are plain arithmetic; a poisoned lock still holds valid buckets.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = client_key(ip);
        if !buckets.contains_key(&key) && buckets.len() >= limit.max_clients {
            buckets.retain(|k, b| *k == OVERFLOW || refill(b) < burst);
            if buckets.len() >= limit.max_clients {
                key = OVERFLOW;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = refill(bucket);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            let wait = if limit.per_second > 0.0 {
                (1.0 - tokens) / limit.per_second
            } else {
                3600.0
            };
            Err(Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
        }
    }

    /// Number of buckets held (tests check the memory bound with it).
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The client address of a request: the peer of the TCP connection, as given by
/// `into_make_service_with_connect_info::<SocketAddr>()` (or a test's `MockConnectInfo`). Without it
/// (a server built without connect info) every request counts as one client, `0.0.0.0`.
pub fn client_ip(request: &Request) -> IpAddr {
    let extensions = request.extensions();
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(addr)| addr.ip())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// axum middleware: refuse with 429 when the client's bucket is empty.
pub async fn limit(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    match limiter.check(client_ip(&request), Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => ApiError::RateLimited { retry_after }.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, per_second: f64, max_clients: usize) -> RateLimiter {
        RateLimiter::new(RateLimit {
            burst,
            per_second,
            max_clients,
        })
    }

    #[test]
    fn burst_then_refill() {
        let l = limiter(3, 1.0, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.check(ip, t0).is_ok()));
        let wait = l.check(ip, t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(
            l.check("192.0.2.2".parse().unwrap(), t0).is_ok(),
            "another client is not affected"
        );
        assert!(l.check(ip, t0 + Duration::from_millis(1100)).is_ok());
        assert!(l.check(ip, t0 + Duration::from_millis(1100)).is_err());
    }

    #[test]
    fn ipv6_clients_are_limited_per_slash_64() {
        let l = limiter(1, 0.0, 10);
        let t0 = Instant::now();
        assert!(l.check("2001:db8:1:2::1".parse().unwrap(), t0).is_ok());
        assert!(l
            .check("2001:db8:1:2:ffff::9".parse().unwrap(), t0)
            .is_err());
        assert!(l.check("2001:db8:1:3::1".parse().unwrap(), t0).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let l = limiter(2, 0.001, 100);
        let t0 = Instant::now();
        for i in 0..5000u32 {
            let _ = l.check(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), t0);
        }
        assert!(l.tracked() <= 101, "tracked {}", l.tracked());
        // Newcomers now share the overflow bucket, which the flood has emptied.
        assert!(l.check("198.51.100.7".parse().unwrap(), t0).is_err());
    }
}
