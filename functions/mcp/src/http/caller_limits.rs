//! The per-caller limits: the request rate ([`rate_limit`]), then the requests in flight
//! ([`in_flight`]). They run inside [`super::auth::authenticate`], as soon as the caller is
//! known, not as a layer of their own: axum clones the whole inner stack (rmcp's service and its
//! settings included) for every request at every `from_fn` layer, which made a separate limits
//! layer cost 3 % of a request.

use std::sync::Arc;

use axum::{extract::Request, middleware::Next, response::Response};

use super::{
    in_flight::{self, InFlight},
    rate_limit::{self, RateLimiter},
};
use crate::principal::Principal;

/// The limits one service applies; each is off when `None`.
#[derive(Clone, Default)]
pub struct CallerLimits {
    pub rate: Option<Arc<RateLimiter>>,
    pub in_flight: Option<Arc<InFlight>>,
}

impl CallerLimits {
    /// Runs `next` for the request's caller, or answers 429 when its bucket is empty or it has
    /// its most requests in flight here.
    pub async fn within(&self, request: Request, next: Next) -> Response {
        let Some(principal) = request.extensions().get::<Principal>().cloned() else {
            return next.run(request).await;
        };
        if let Some(limiter) = &self.rate
            && let Err(refusal) = rate_limit::check(limiter, &principal, request.extensions()).await
        {
            return *refusal;
        }
        let held = match &self.in_flight {
            Some(in_flight) => {
                match in_flight::enter(in_flight, &principal, request.extensions()) {
                    Ok(held) => Some(held),
                    Err(refusal) => return *refusal,
                }
            }
            None => None,
        };
        let response = next.run(request).await;
        match held {
            Some(held) => held.keep_with(response),
            None => response,
        }
    }
}
