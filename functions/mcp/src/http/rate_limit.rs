//! Per-principal request rate: a GCRA token bucket per caller, 429 with `Retry-After` over it.
//!
//! The buckets live in this process's memory (one server) or in the store
//! ([`crate::store::RateBuckets`]: one conditional update per request, seen by every
//! instance, which is what Lambda needs). If the store cannot answer, the request is let
//! through and the failure logged: the limiter guards against abuse, it must not turn a store
//! hiccup into an outage.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::Response,
};

use super::{
    jsonrpc_error,
    state::{Refusal, RequestState},
};
use crate::{
    codes::RATE_LIMITED,
    config::RateLimitSettings,
    principal::Principal,
    store::{Admission, Gcra, Store},
};

/// Buckets in memory beyond this many are swept of the full (idle) ones.
const SWEEP_ABOVE: usize = 10_000;

/// Where the buckets are kept.
enum Buckets {
    Memory(Mutex<HashMap<Principal, i64>>),
    Shared(Arc<dyn Store>),
}

/// The limiter one service shares.
pub struct RateLimiter {
    gcra: Gcra,
    settings: RateLimitSettings,
    buckets: Buckets,
}

impl RateLimiter {
    pub fn new(settings: RateLimitSettings, store: Arc<dyn Store>) -> Self {
        let interval_us = (1_000_000 / i64::from(settings.per_second)).max(1);
        let gcra = Gcra {
            interval_us,
            tolerance_us: interval_us * i64::from(settings.burst),
        };
        let buckets = if settings.shared {
            Buckets::Shared(store)
        } else {
            Buckets::Memory(Mutex::default())
        };
        Self {
            gcra,
            settings,
            buckets,
        }
    }

    /// Admits one request of `principal` now.
    pub async fn admit(&self, principal: &Principal) -> Admission {
        let now_us = chrono::Utc::now().timestamp_micros();
        match &self.buckets {
            Buckets::Memory(buckets) => {
                let mut buckets = buckets.lock().unwrap_or_else(|p| p.into_inner());
                if buckets.len() > SWEEP_ABOVE {
                    buckets.retain(|_, tat| *tat > now_us);
                }
                let (admission, next) = self.gcra.step(buckets.get(principal).copied(), now_us);
                if let Some(next) = next {
                    buckets.insert(principal.clone(), next);
                }
                admission
            }
            Buckets::Shared(store) => match store.admit(principal, self.gcra, now_us).await {
                Ok(admission) => admission,
                Err(error) => {
                    tracing::warn!(%error, "rate limit store failed; admitting the request");
                    Admission::Admitted
                }
            },
        }
    }
}

/// Spends one request of `principal`'s bucket, or answers 429 when it is empty.
pub async fn check(
    limiter: &RateLimiter,
    principal: &Principal,
    state: &RequestState,
) -> Result<(), Box<Response>> {
    match limiter.admit(principal).await {
        Admission::Admitted => Ok(()),
        Admission::Refused { retry_after_us } => {
            let retry_after_secs = (retry_after_us + 999_999) / 1_000_000;
            tracing::info!(%principal, retry_after_secs, "request refused: rate limit");
            state.refused(Refusal::RateLimited);
            let settings = limiter.settings;
            let message = format!(
                "Rate limit exceeded: at most {} requests per second (bursts of {}) per caller; retry after {retry_after_secs} s",
                settings.per_second, settings.burst
            );
            let mut response = jsonrpc_error(StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED, &message);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Err(Box::new(response))
        }
    }
}
