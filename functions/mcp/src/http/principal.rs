//! Decides which [`Principal`] a request acts for and stores it in the request's extensions.
//!
//! Without bearer-token auth every request is [`Principal::anonymous`]; the
//! auth layer replaces this one and everything downstream (session binding,
//! the state tools) already keys on whatever principal it inserts.

use axum::{extract::Request, middleware::Next, response::Response};

use crate::principal::Principal;

/// Marks the request as the anonymous principal's.
pub async fn anonymous(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Principal::anonymous());
    next.run(request).await
}
