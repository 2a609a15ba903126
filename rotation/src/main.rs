//! `rotation`: the Lambda function Secrets Manager invokes to rotate the signing keys (see the
//! `rotation` library).

use aws_config::BehaviorVersion;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use rotation::Rotator;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    authorizer::lambda::init_logs();
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let rotator = &Rotator::new(aws_sdk_secretsmanager::Client::new(&config));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        rotator.handle_event(event.payload).await
    }))
    .await
}
