"""Creates the AWS resources the Lambda function expects, in an emulator (moto).

The same shapes the SAM template creates in AWS: one DynamoDB table keyed by
pk/sk with TTL on `ttl`, one S3 bucket, one Secrets Manager secret holding the
signing-key list. Used by scripts/test.sh before it starts `cargo lambda watch`.

    python aws_fixtures.py --endpoint http://127.0.0.1:5000 \
        --table mcp-e2e --bucket mcp-e2e-files --secret mcp/e2e/keys
"""

import argparse
import json
import secrets

import boto3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--table", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument(
        "--signing-key",
        default=None,
        help="the key stored as kid e2e-1 (random when omitted); tests mint tokens with it",
    )
    args = parser.parse_args()

    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=args.region
    )
    dynamodb = session.client("dynamodb", endpoint_url=args.endpoint)
    dynamodb.create_table(
        TableName=args.table,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=args.table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"},
    )

    session.client("s3", endpoint_url=args.endpoint).create_bucket(Bucket=args.bucket)

    signing_key = args.signing_key or secrets.token_urlsafe(48)
    keys = {"keys": [{"kid": "e2e-1", "secret": signing_key}]}
    session.client("secretsmanager", endpoint_url=args.endpoint).create_secret(
        Name=args.secret, SecretString=json.dumps(keys)
    )


if __name__ == "__main__":
    main()
