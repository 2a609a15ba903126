//! The per-caller limits: the request rate ([`rate_limit`]), then the requests in flight
//! ([`in_flight`]). [`super::auth::authenticate`] runs them as soon as the caller is known.

use std::sync::Arc;

use axum::{extract::Request, response::Response};

use super::{
    in_flight::{self, InFlight},
    rate_limit::{self, RateLimiter},
    state::RequestState,
};

/// The limits one service applies; each is off when `None`.
#[derive(Clone, Default)]
pub struct CallerLimits {
    pub rate: Option<Arc<RateLimiter>>,
    pub in_flight: Option<Arc<InFlight>>,
}

impl CallerLimits {
    /// Runs `next` for the request's caller, or answers 429 when its bucket is empty or it has
    /// its most requests in flight here. A request whose caller is not known is refused.
    pub async fn within<N, F>(&self, state: &RequestState, request: Request, next: N) -> Response
    where
        N: FnOnce(Request) -> F,
        F: Future<Output = Response>,
    {
        let Some(principal) = state.principal() else {
            return super::out_of_order("a principal");
        };
        if let Some(limiter) = &self.rate
            && let Err(refusal) = rate_limit::check(limiter, principal, state).await
        {
            return *refusal;
        }
        let held = match &self.in_flight {
            Some(in_flight) => match in_flight::enter(in_flight, principal, state) {
                Ok(held) => Some(held),
                Err(refusal) => return *refusal,
            },
            None => None,
        };
        let response = next(request).await;
        match held {
            Some(held) => held.keep_with(response),
            None => response,
        }
    }
}
