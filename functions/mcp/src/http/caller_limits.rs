//! The per-caller limits as one layer: the request rate ([`rate_limit`]), then the requests in
//! flight ([`in_flight`]). One layer rather than two because axum clones the rest of the stack
//! for every request at every `from_fn` layer.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};

use super::{
    in_flight::{self, InFlight},
    rate_limit::{self, RateLimiter},
};
use crate::principal::Principal;

/// The limits one service applies; each is off when `None`.
#[derive(Clone)]
pub struct CallerLimits {
    pub rate: Option<Arc<RateLimiter>>,
    pub in_flight: Option<Arc<InFlight>>,
}

impl CallerLimits {
    pub fn is_off(&self) -> bool {
        self.rate.is_none() && self.in_flight.is_none()
    }
}

/// Answers 429 when the caller's bucket is empty or it has its most requests in flight here.
pub async fn limit(State(limits): State<CallerLimits>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return next.run(request).await;
    };
    if let Some(limiter) = &limits.rate
        && let Err(refusal) = rate_limit::check(limiter, &principal, request.extensions()).await
    {
        return *refusal;
    }
    let held = match &limits.in_flight {
        Some(in_flight) => match in_flight::enter(in_flight, &principal, request.extensions()) {
            Ok(held) => Some(held),
            Err(refusal) => return *refusal,
        },
        None => None,
    };
    let response = next.run(request).await;
    match held {
        Some(held) => held.keep_with(response),
        None => response,
    }
}
