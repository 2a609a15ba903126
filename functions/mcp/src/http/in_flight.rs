//! A per-caller cap on requests in flight on this instance, answers and streams included.
//!
//! The rate limit bounds how often a caller may start requests, not how many it keeps open:
//! a client that never reads its answers pinned them all in memory (40 unread pages of
//! `state_list` grew a server from 120 MB to 971 MB). A request holds its caller's slot until
//! its answer's body has been sent or dropped, so at most `limit` answers per caller are held
//! at once, each bounded in size (pages end at `store::MAX_PAGE_BYTES`); over it, 429.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::Response,
};

use super::jsonrpc_error;
use super::state::{Refusal, RequestState};
use crate::{codes::RATE_LIMITED, principal::Principal};

/// The callers' requests in flight on this instance.
pub struct InFlight {
    limit: usize,
    counts: Mutex<HashMap<Principal, usize>>,
}

/// A response's hold on its request's slot. It travels in the response's extensions too, so a
/// layer that buffers the body and builds a new one (the request log's) keeps the slot with it.
#[derive(Clone)]
pub struct Held(Arc<Slot>);

impl Held {
    /// `body`, holding the slot until it has been sent or dropped.
    pub fn body(&self, body: Body) -> Body {
        super::held_until_sent(body, self.0.clone())
    }
}

/// One request's place, given back when dropped.
struct Slot {
    in_flight: Arc<InFlight>,
    principal: Principal,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .in_flight
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.principal);
            }
        }
    }
}

impl InFlight {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::default(),
        })
    }

    fn take(self: &Arc<Self>, principal: &Principal) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(principal.clone()).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            in_flight: self.clone(),
            principal: principal.clone(),
        })
    }

    /// The caller's requests in flight now.
    pub fn count(&self, principal: &Principal) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(principal).copied().unwrap_or(0)
    }
}

/// Takes one of `principal`'s slots for this request, or answers 429 when the caller already
/// has `limit` requests in flight here.
pub fn enter(
    in_flight: &Arc<InFlight>,
    principal: &Principal,
    state: &RequestState,
) -> Result<Held, Box<Response>> {
    let Some(slot) = in_flight.take(principal) else {
        tracing::info!(%principal, limit = in_flight.limit, "request refused: too many in flight");
        state.refused(Refusal::RateLimited);
        let message = format!(
            "Too many requests in flight: at most {} at once per caller (open streams included); \
             retry once one has finished",
            in_flight.limit
        );
        let mut response = jsonrpc_error(StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED, &message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(Box::new(response));
    };
    Ok(Held(Arc::new(slot)))
}

impl Held {
    /// `response` holding the slot until its body has been sent or dropped.
    pub fn keep_with(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self.clone());
        response.map(|body| self.body(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_caller_and_given_back_on_drop() {
        let in_flight = InFlight::new(2);
        let alice = Principal::new("alice").expect("principal");
        let bob = Principal::new("bob").expect("principal");
        let first = in_flight.take(&alice).expect("first");
        let second = in_flight.take(&alice).expect("second");
        assert!(in_flight.take(&alice).is_none());
        assert!(in_flight.take(&bob).is_some(), "bob has his own slots");
        drop(first);
        assert_eq!(in_flight.count(&alice), 1);
        assert!(in_flight.take(&alice).is_some());
        drop(second);
    }
}
