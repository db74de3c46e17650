//! The rate limiters: a budget per verified principal (user, API key, else client IP), and a
//! stricter one per client IP for sign-in, registration and refresh. Counters live in this
//! instance's memory (GCRA via `governor`), so behind a load balancer each instance enforces
//! its own share. `http::rate_limit` applies them to requests.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::Config;

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

struct Budget {
    limiter: KeyedLimiter,
    per_minute: u32,
}

impl Budget {
    fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            per_minute,
        }
    }

    /// Spends one request of `key`'s budget; the headers describe what is left either way.
    fn spend(&self, key: &str) -> Decision {
        let refill = Duration::from_secs(60) / self.per_minute;
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.per_minute.saturating_sub(remaining);
                Decision {
                    allowed: true,
                    limit: self.per_minute,
                    remaining,
                    reset_secs: (refill * used).as_secs_f64().ceil() as u64,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Decision {
                    allowed: false,
                    limit: self.per_minute,
                    remaining: 0,
                    reset_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            }
        }
    }
}

/// One request's spend: whether it may go on, and what the rate-limit headers say.
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
}

pub struct RateLimits {
    general: Budget,
    auth: Budget,
    trusted_proxies: Vec<IpNet>,
}

impl RateLimits {
    pub fn new(config: &Config) -> Self {
        let trusted_proxies = config
            .trusted_proxies
            .iter()
            .filter_map(|entry| {
                entry
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
            })
            .collect();
        Self {
            general: Budget::new(config.rate_limit_per_minute),
            auth: Budget::new(config.auth_rate_limit_per_minute),
            trusted_proxies,
        }
    }

    fn trusted(&self, ip: &IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }

    /// The socket peer, unless it is a trusted proxy: then the right-most `X-Forwarded-For`
    /// entry that is not one. Entries left of that are the client's own claims and are never
    /// believed, so sending `X-Forwarded-For` cannot buy a fresh budget.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        // A proxy on a dual-stack socket shows up as `::ffff:10.0.0.1`; the configured
        // `10.0.0.0/8` must still match it.
        let peer = peer.to_canonical();
        if !self.trusted(&peer) {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        // Walk from the proxy outwards. An entry that does not parse ends the walk: skipping it
        // would make the client's own claim on its left the "client IP".
        for entry in entries.into_iter().rev() {
            match forwarded_ip(entry) {
                Some(ip) if self.trusted(&ip) => continue,
                Some(ip) => return ip,
                None => return peer,
            }
        }
        peer
    }

    /// Spends one request of the general budget of `key` (a principal or an IP).
    pub fn spend_general(&self, key: &str) -> Decision {
        self.general.spend(key)
    }

    /// Spends one request of the stricter sign-in budget of `key` (an IP).
    pub fn spend_auth(&self, key: &str) -> Decision {
        self.auth.spend(key)
    }

    /// Forgets idle keys; run now and then so memory follows active clients only.
    pub fn prune(&self) {
        self.general.limiter.retain_recent();
        self.auth.limiter.retain_recent();
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })?;
    Some(ip.to_canonical())
}

/// The budget an anonymous client spends: its IPv4 address, or its IPv6 /64, since whoever
/// holds one IPv6 address usually holds the 2^64 around it and could rotate through them.
pub fn ip_budget_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_entries_parse_with_or_without_ports_and_garbage_does_not() {
        let v4: IpAddr = [198, 51, 100, 7].into();
        let v6: IpAddr = "2001:db8::7".parse().expect("literal");

        assert_eq!(forwarded_ip(" 198.51.100.7 "), Some(v4));
        assert_eq!(forwarded_ip("198.51.100.7:5678"), Some(v4));
        assert_eq!(forwarded_ip("::ffff:198.51.100.7"), Some(v4));
        assert_eq!(forwarded_ip("2001:db8::7"), Some(v6));
        assert_eq!(forwarded_ip("[2001:db8::7]"), Some(v6));
        assert_eq!(forwarded_ip("[2001:db8::7]:443"), Some(v6));
        assert_eq!(forwarded_ip("unknown"), None);
        assert_eq!(forwarded_ip(""), None);
    }

    #[test]
    fn ipv6_clients_share_one_budget_per_64_and_ipv4_clients_have_their_own() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("literal");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("literal");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("literal");

        assert_eq!(ip_budget_key(a), ip_budget_key(b));
        assert_ne!(ip_budget_key(a), ip_budget_key(c));
        assert_eq!(ip_budget_key([10, 0, 0, 1].into()), "ip:10.0.0.1");
    }
}
