//! Decides which [`Principal`] a request acts for and stores it in the request's extensions.
//!
//! A host may have set the principal already (the Lambda host takes it from
//! the API Gateway authorizer's context); otherwise, without bearer-token auth,
//! the request is [`Principal::anonymous`]. Everything downstream (session
//! binding, the state tools) keys on whatever principal is here.

use axum::{extract::Request, middleware::Next, response::Response};

use crate::principal::Principal;

/// Marks the request as the anonymous principal's unless its host already named one.
pub async fn anonymous(mut request: Request, next: Next) -> Response {
    if request.extensions().get::<Principal>().is_none() {
        request.extensions_mut().insert(Principal::anonymous());
    }
    next.run(request).await
}
