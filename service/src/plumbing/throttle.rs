//! Login throttling: rate limits with reservations (GCRA), keyed per network, per account and
//! per account and network.
//!
//! A limit of `per_minute` after a `burst` admits `burst` attempts at once, then one every
//! `60 / per_minute` seconds. An attempt *reserves* the next free slot; a successful login
//! gives its slot back, so only failed attempts (and attempts still running) count.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The network a client address is counted in: an IPv4 address on its own (people behind one
/// NAT share it anyway), an IPv6 address's /64 (one subscriber's usual allocation).
pub fn network_of(ip: IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new(v4, 32).unwrap_or_default().trunc()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpNet::V4(Ipv4Net::new(v4, 32).unwrap_or_default().trunc()),
            None => IpNet::V6(Ipv6Net::new(v6, 64).unwrap_or_default().trunc()),
        },
    }
}

/// One limit: `burst` at once, then `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Attempts replenished per minute.
    pub per_minute: NonZeroU32,
    /// Attempts allowed at once.
    pub burst: NonZeroU32,
}

impl Quota {
    /// `burst` at once, then `per_minute`.
    pub fn new(per_minute: NonZeroU32, burst: NonZeroU32) -> Self {
        Self { per_minute, burst }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.get()
    }

    fn tolerance(&self) -> Duration {
        self.interval() * (self.burst.get() - 1)
    }
}

/// What a reservation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Reserved; the attempt may run after this wait (zero within the burst).
    After(Duration),
    /// Not reserved: the wait would be longer than allowed; try again in this long.
    Refused(Duration),
}

/// Keyed GCRA limits with reservations. Keys idle for longer than their burst's worth are
/// forgotten when the table grows large.
#[derive(Debug)]
pub struct Limiter<K> {
    quota: Quota,
    /// Per key, the theoretical arrival time of the next attempt.
    table: Mutex<HashMap<K, Instant>>,
}

/// Entries beyond which stale keys are swept.
const SWEEP_AT: usize = 100_000;

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter with `quota` per key.
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves `key`'s next slot if it comes within `max_wait`.
    pub fn reserve(&self, key: &K, now: Instant, max_wait: Duration) -> Slot {
        let mut table = match self.table.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        if table.len() > SWEEP_AT {
            table.retain(|_, tat| *tat > now);
        }
        let tat = table.get(key).copied().unwrap_or(now).max(now);
        let wait = tat
            .saturating_duration_since(now)
            .saturating_sub(self.quota.tolerance());
        if wait > max_wait {
            return Slot::Refused(wait);
        }
        table.insert(key.clone(), tat + self.quota.interval());
        Slot::After(wait)
    }

    /// Gives a reserved slot back (the attempt succeeded).
    pub fn release(&self, key: &K) {
        let mut table = match self.table.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(tat) = table.get_mut(key) {
            *tat = tat
                .checked_sub(self.quota.interval())
                .unwrap_or_else(Instant::now);
        }
    }
}

/// Whole seconds for a `Retry-After` header: at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(per_minute: u32, burst: u32) -> Quota {
        Quota::new(
            NonZeroU32::new(per_minute).unwrap(),
            NonZeroU32::new(burst).unwrap(),
        )
    }

    #[test]
    fn a_burst_then_one_per_interval_waiting_or_refused() {
        let limiter = Limiter::new(quota(60, 2));
        let now = Instant::now();
        assert_eq!(
            limiter.reserve(&1, now, Duration::ZERO),
            Slot::After(Duration::ZERO)
        );
        assert_eq!(
            limiter.reserve(&1, now, Duration::ZERO),
            Slot::After(Duration::ZERO)
        );
        assert_eq!(
            limiter.reserve(&1, now, Duration::ZERO),
            Slot::Refused(Duration::from_secs(1))
        );
        assert_eq!(
            limiter.reserve(&1, now, Duration::from_secs(5)),
            Slot::After(Duration::from_secs(1))
        );
        assert_eq!(
            limiter.reserve(&1, now, Duration::from_secs(5)),
            Slot::After(Duration::from_secs(2))
        );
        // Another key is untouched; a release gives one slot back.
        assert_eq!(
            limiter.reserve(&2, now, Duration::ZERO),
            Slot::After(Duration::ZERO)
        );
        limiter.release(&1);
        assert_eq!(
            limiter.reserve(&1, now, Duration::from_secs(5)),
            Slot::After(Duration::from_secs(2))
        );
    }

    #[test]
    fn networks_are_ipv4_addresses_and_ipv6_64s() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(c));
        let d: IpAddr = "203.0.113.9".parse().unwrap();
        let e: IpAddr = "203.0.113.10".parse().unwrap();
        assert_ne!(network_of(d), network_of(e));
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(network_of(mapped), network_of(d));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(200)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }
}
