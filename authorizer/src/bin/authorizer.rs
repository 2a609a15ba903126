//! `authorizer`: the API Gateway Lambda authorizer (see `authorizer::lambda`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::lambda_runtime::Error> {
    authorizer::lambda::run().await
}
