//! A per-source budget for requests without a valid token, so a flood of bad tokens is refused
//! with 429 before any signature is checked.
//!
//! The per-caller rate limit keys on the verified principal, so it never sees a request that
//! failed authentication: 2,400 forged tokens a second all got a full verification and a 401.
//! Here each source address (an IPv6 /64 counts as one) has a bucket that only failed
//! authentications spend. Once it is empty, the source's requests with a token this instance
//! has not already verified get 429 at once; a token verified lately still passes, so a
//! well-behaved client behind the same address is not shut out, and the caller a forged
//! token names keeps its own budget untouched. The buckets are this instance's memory: a
//! failed authentication costs no store round-trip.

use std::{collections::HashMap, net::IpAddr, sync::Mutex};

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::Response,
};

use super::jsonrpc_error;
use crate::codes::RATE_LIMITED;
use crate::{
    config::UnauthenticatedSettings,
    store::{Admission, Gcra},
};

/// Buckets kept beyond this many are swept of the full ones.
const SWEEP_ABOVE: usize = 10_000;
/// Buckets kept at most: past it (every one still in use) the memory starts over, failing open.
const KEEP_AT_MOST: usize = 100_000;

/// The failed-authentication buckets of one instance.
pub struct FailureBudget {
    gcra: Gcra,
    settings: UnauthenticatedSettings,
    buckets: Mutex<HashMap<IpAddr, i64>>,
}

impl FailureBudget {
    pub fn new(settings: UnauthenticatedSettings) -> Self {
        let interval_us = (1_000_000 / i64::from(settings.per_second.max(1))).max(1);
        Self {
            gcra: Gcra {
                interval_us,
                tolerance_us: interval_us * i64::from(settings.burst),
            },
            settings,
            buckets: Mutex::default(),
        }
    }

    /// Seconds until `source` may try an unverified token again, or `None` while it may now.
    pub fn exhausted(&self, source: IpAddr) -> Option<u64> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now_us = chrono::Utc::now().timestamp_micros();
        match self
            .gcra
            .step(buckets.get(&bucket_of(source)).copied(), now_us)
        {
            (Admission::Admitted, _) => None,
            (Admission::Refused { retry_after_us }, _) => Some(
                u64::try_from((retry_after_us + 999_999) / 1_000_000).map_or(1, |secs| secs.max(1)),
            ),
        }
    }

    /// Spends one failed authentication of `source`'s budget.
    pub fn spend(&self, source: IpAddr) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now_us = chrono::Utc::now().timestamp_micros();
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, tat| *tat > now_us);
            if buckets.len() > KEEP_AT_MOST {
                buckets.clear();
            }
        }
        let bucket = bucket_of(source);
        if let (_, Some(next)) = self.gcra.step(buckets.get(&bucket).copied(), now_us) {
            buckets.insert(bucket, next);
        }
    }

    /// The 429 for a source that has spent its budget.
    pub fn refusal(&self, retry_after_secs: u64) -> Response {
        let message = format!(
            "Too many requests without a valid token from this address: at most {} per second \
             (bursts of {}); retry after {retry_after_secs} s",
            self.settings.per_second, self.settings.burst
        );
        let mut response = jsonrpc_error(StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED, &message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        response
    }
}

/// The bucket an address spends from: an IPv4 address (also when written IPv4-mapped), or the
/// /64 of an IPv6 one, which one subscriber usually holds whole.
fn bucket_of(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_second: u32, burst: u32) -> FailureBudget {
        FailureBudget::new(UnauthenticatedSettings { per_second, burst })
    }

    #[test]
    fn a_source_is_refused_once_its_failures_spend_the_burst() {
        let budget = budget(1, 3);
        let source: IpAddr = "203.0.113.7".parse().expect("address");
        for _ in 0..3 {
            assert_eq!(budget.exhausted(source), None);
            budget.spend(source);
        }
        assert_eq!(budget.exhausted(source), Some(1));
        let other: IpAddr = "203.0.113.8".parse().expect("address");
        assert_eq!(budget.exhausted(other), None, "another address has its own");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source_and_mapped_ipv4_is_its_ipv4() {
        let budget = budget(1, 1);
        budget.spend("2001:db8:1:2::1".parse().expect("address"));
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("address");
        assert!(budget.exhausted(same_64).is_some());
        let next_64: IpAddr = "2001:db8:1:3::1".parse().expect("address");
        assert_eq!(budget.exhausted(next_64), None);
        budget.spend("192.0.2.1".parse().expect("address"));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("address");
        assert!(budget.exhausted(mapped).is_some());
    }
}
