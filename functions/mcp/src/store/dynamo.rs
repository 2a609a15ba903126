//! [`StateStore`] and [`SessionRecords`] over one DynamoDB table, for the Lambda host.
//!
//! The table has string keys `pk` and `sk` and holds both kinds of record:
//!
//! | record   | `pk`                 | `sk`         | attributes |
//! |----------|----------------------|--------------|------------|
//! | document | `STATE#<principal>`  | `DOC#<key>`  | `value` (JSON text), `version`, `updated_at`, `expires_at`?, `ttl`? |
//! | session  | `SESSION#<id>`       | `SESSION`    | `principal`, `init_params` (JSON text), `created_at`, `last_seen_at`, `expires_at`, `ttl`, `subscriptions`? |
//! | session ledger | `SESSIONS#<principal>` | `SESSIONS` | `live` (count), `session_<id>` (each live session's `expires_at`), `expires_at`, `ttl` |
//! | rate bucket | `RATE#<principal>` | `RATE`      | `tat_us`, `ttl` |
//! | change feed | `FEED#<principal>` | `FEED`      | `head`, `log` (JSON text), `expires_at`, `ttl` |
//! | mailbox  | `MAILBOX#<session>`  | `REQUEST#<id>` | `answer`? (JSON text), `expires_at`, `ttl` |
//! | task     | `TASKS#<principal>`  | `TASK#<id>`  | `body` (JSON text), `version`, `expires_at`, `ttl` |
//!
//! Times are epoch milliseconds, except `ttl`, which is epoch *seconds* for
//! DynamoDB's TTL sweeper. The sweeper deletes late (up to days), so every read
//! also filters on `expires_at`: an expired item is invisible the moment it expires.
//!
//! Behaviour matches [`super::sql::SqlStore`] exactly; the shared suite in
//! `tests/store_suite.rs` runs against both. Compare-and-set is a conditional
//! write (`ConditionExpression`), never read-then-write, and a failed condition
//! returns the current item (`ReturnValuesOnConditionCheckFailure::AllOld`), so
//! a conflict names the live version without a second read. A principal's
//! documents share one partition, so a listing is one `Query` in key order.
//! Reads are strongly consistent: a write or a session `DELETE` on one instance
//! is seen by the next request on any instance.
//!
//! Sessions are keyed by id (the gate reads them by id alone), so the cap on a principal's
//! live sessions is kept in a ledger item per principal: its live sessions' expiries and their
//! count, entered by one conditional `UpdateItem` that fails at the cap (see
//! [`SessionRecords::create_session`] below), left on `DELETE`, slid with the session.

use std::{
    collections::{BTreeSet, HashMap},
    str::FromStr,
    time::Duration,
};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    client::Waiters,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    operation::{
        delete_item::DeleteItemError, put_item::PutItemError, update_item::UpdateItemError,
    },
    types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
        ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    },
};
use chrono::{DateTime, Utc};

use super::{
    Admission, Document, Expect, Gcra, MAX_PAGE_SIZE, Page, Put, RateBuckets, SessionRecord,
    SessionRecords, StateStore, StoreError, checked_key, checked_prefix,
    cursor::CursorCodec,
    feed::{FeedLog, FeedRecords},
    mailbox::MailboxRecords,
    now_millis, subscriptions_json, subscriptions_of,
    tasks::{TaskRecord, TaskRecords, checked_body},
    time_of, ttl_millis,
};
use crate::principal::Principal;

/// One DynamoDB item, as the SDK hands it over.
type Item = HashMap<String, AttributeValue>;

const PK: &str = "pk";
const SK: &str = "sk";
const STATE_PREFIX: &str = "STATE#";
const DOC_PREFIX: &str = "DOC#";
const SESSION_PREFIX: &str = "SESSION#";
const SESSION_SK: &str = "SESSION";
const SESSIONS_PREFIX: &str = "SESSIONS#";
const SESSIONS_SK: &str = "SESSIONS";
/// The ledger attribute holding one live session's expiry: `session_<id>`.
const LEDGER_ENTRY_PREFIX: &str = "session_";
const RATE_PREFIX: &str = "RATE#";
const RATE_SK: &str = "RATE";
const FEED_PREFIX: &str = "FEED#";
const FEED_SK: &str = "FEED";
const MAILBOX_PREFIX: &str = "MAILBOX#";
const REQUEST_PREFIX: &str = "REQUEST#";
const TASKS_PREFIX: &str = "TASKS#";
const TASK_PREFIX: &str = "TASK#";
/// The fixed key [`StateStore::ping`] reads; it never exists.
const HEALTH_KEY: &str = "HEALTH";

/// Expression attribute names: `value` and `ttl` are reserved words, the rest are aliased alike.
const VALUE: (&str, &str) = ("#value", "value");
const VERSION: (&str, &str) = ("#version", "version");
const UPDATED_AT: (&str, &str) = ("#updated", "updated_at");
const EXPIRES_AT: (&str, &str) = ("#expires", "expires_at");
const TTL: (&str, &str) = ("#ttl", "ttl");
const LAST_SEEN_AT: (&str, &str) = ("#seen", "last_seen_at");
const TAT: (&str, &str) = ("#tat", "tat_us");
const HEAD: (&str, &str) = ("#head", "head");
const ANSWER: (&str, &str) = ("#answer", "answer");
const BODY: (&str, &str) = ("#body", "body");
const SUBSCRIPTIONS: (&str, &str) = ("#subscriptions", "subscriptions");
const LIVE: (&str, &str) = ("#live", "live");
const PRINCIPAL: (&str, &str) = ("#principal", "principal");
/// The alias of one session's entry in its principal's ledger.
const ENTRY: &str = "#entry";

/// How often [`SessionRecords::create_session`] goes round when concurrent creations and
/// deletions of the same principal keep moving its ledger.
const MAX_LEDGER_ATTEMPTS: usize = 4;

/// How often [`Expect::Any`] retries when concurrent writers keep expiring and
/// recreating the document between its two conditional writes.
const MAX_ANY_ATTEMPTS: usize = 8;

/// How long [`DynamoStore::create_table`] waits for a new table to become active.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(120);

/// A store over one DynamoDB table (see the module docs for its layout).
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    cursors: CursorCodec,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>, cursors: CursorCodec) -> Self {
        Self {
            client,
            table: table.into(),
            cursors,
        }
    }

    /// Creates the table (on-demand billing) if it is absent and turns on TTL
    /// over `ttl`. For tests and local emulators: deployments create the table
    /// with infrastructure code.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| build_error("CreateTable", &e))
        };
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(|e| build_error("CreateTable", &e))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(PK)?)
            .attribute_definitions(attribute(SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(error) => return Err(dynamo_error("CreateTable", error)),
        }
        self.client
            .wait_until_table_exists()
            .table_name(&self.table)
            .wait(TABLE_ACTIVE_WAIT)
            .await
            .map_err(|error| build_error("DescribeTable", &error))?;
        let specification = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL.1)
            .build()
            .map_err(|e| build_error("UpdateTimeToLive", &e))?;
        if let Err(error) = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(specification)
            .send()
            .await
        {
            // Already enabled, or an emulator without TTL: reads filter on
            // `expires_at` anyway, so the table still behaves correctly.
            tracing::debug!(
                table = %self.table,
                error = %DisplayErrorContext(&error),
                "could not enable TTL"
            );
        }
        Ok(())
    }

    async fn get_document(
        &self,
        principal: &Principal,
        key: &str,
        now: i64,
    ) -> Result<Option<Document>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(document_key(principal, key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        match output.item {
            Some(item) => document_of(&item, now),
            None => Ok(None),
        }
    }

    /// Writes through `UpdateItem` for [`Expect::Any`] and [`Expect::Version`]:
    /// `Ok(Err(old))` when the condition failed, with the item that failed it.
    async fn update_document(
        &self,
        principal: &Principal,
        fields: &Fields<'_>,
        expect: Expect,
    ) -> Result<Result<u64, Option<Item>>, StoreError> {
        let names = HashMap::from([
            name(VALUE),
            name(VERSION),
            name(UPDATED_AT),
            name(EXPIRES_AT),
            name(TTL),
        ]);
        let mut values = HashMap::from([
            (":value".to_owned(), AttributeValue::S(fields.json.clone())),
            (":now".to_owned(), number(fields.now)),
            (":one".to_owned(), number(1)),
        ]);
        let (version, condition) = match expect {
            Expect::Version(expected) => {
                values.insert(":expected".to_owned(), number(expected));
                (
                    "#version = #version + :one",
                    "#version = :expected AND (attribute_not_exists(#expires) OR #expires > :now)",
                )
            }
            // An absent item or a live one; an expired one fails and the caller
            // replaces it with `create_document` (which also serves `Absent`).
            Expect::Any | Expect::Absent => {
                values.insert(":zero".to_owned(), number(0));
                (
                    "#version = if_not_exists(#version, :zero) + :one",
                    "attribute_not_exists(#expires) OR #expires > :now",
                )
            }
        };
        let update = match fields.expires_at {
            Some(expires_at) => {
                values.insert(":expires".to_owned(), number(expires_at));
                values.insert(":ttl".to_owned(), number(ttl_seconds(expires_at)));
                format!(
                    "SET #value = :value, {version}, #updated = :now, \
                     #expires = :expires, #ttl = :ttl"
                )
            }
            None => {
                format!("SET #value = :value, {version}, #updated = :now REMOVE #expires, #ttl")
            }
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(document_key(principal, fields.key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        Ok(match conditional("UpdateItem", result)? {
            Ok(output) => Ok(required_number(
                output.attributes.as_ref().unwrap_or(&HashMap::new()),
                VERSION.1,
            )?),
            Err(old) => Err(old),
        })
    }

    /// Creates the document at version 1 if the key holds no live document.
    async fn create_document(
        &self,
        principal: &Principal,
        fields: &Fields<'_>,
    ) -> Result<Result<u64, Option<Item>>, StoreError> {
        let mut item = document_key(principal, fields.key);
        item.insert(VALUE.1.to_owned(), AttributeValue::S(fields.json.clone()));
        item.insert(VERSION.1.to_owned(), number(1));
        item.insert(UPDATED_AT.1.to_owned(), number(fields.now));
        if let Some(expires_at) = fields.expires_at {
            item.insert(EXPIRES_AT.1.to_owned(), number(expires_at));
            item.insert(TTL.1.to_owned(), number(ttl_seconds(expires_at)));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #expires <= :now")
            .expression_attribute_names(EXPIRES_AT.0, EXPIRES_AT.1)
            .expression_attribute_values(":now", number(fields.now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        Ok(conditional("PutItem", result)?.map(|_| 1))
    }
}

/// What a [`StateStore::put`] writes, prepared once.
struct Fields<'a> {
    key: &'a str,
    json: String,
    now: i64,
    expires_at: Option<i64>,
}

fn name((alias, attribute): (&str, &str)) -> (String, String) {
    (alias.to_owned(), attribute.to_owned())
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn string(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn document_key(principal: &Principal, key: &str) -> Item {
    HashMap::from([
        (
            PK.to_owned(),
            string(format!("{STATE_PREFIX}{}", principal.as_str())),
        ),
        (SK.to_owned(), string(format!("{DOC_PREFIX}{key}"))),
    ])
}

fn rate_key(principal: &Principal) -> Item {
    HashMap::from([
        (
            PK.to_owned(),
            string(format!("{RATE_PREFIX}{}", principal.as_str())),
        ),
        (SK.to_owned(), string(RATE_SK)),
    ])
}

fn feed_key(principal: &Principal) -> Item {
    HashMap::from([
        (
            PK.to_owned(),
            string(format!("{FEED_PREFIX}{}", principal.as_str())),
        ),
        (SK.to_owned(), string(FEED_SK)),
    ])
}

fn mailbox_key(session: &str, request: &str) -> Item {
    HashMap::from([
        (PK.to_owned(), string(format!("{MAILBOX_PREFIX}{session}"))),
        (SK.to_owned(), string(format!("{REQUEST_PREFIX}{request}"))),
    ])
}

fn task_key(principal: &Principal, id: &str) -> Item {
    HashMap::from([
        (
            PK.to_owned(),
            string(format!("{TASKS_PREFIX}{}", principal.as_str())),
        ),
        (SK.to_owned(), string(format!("{TASK_PREFIX}{id}"))),
    ])
}

fn ledger_key(principal: &Principal) -> Item {
    HashMap::from([
        (
            PK.to_owned(),
            string(format!("{SESSIONS_PREFIX}{}", principal.as_str())),
        ),
        (SK.to_owned(), string(SESSIONS_SK)),
    ])
}

fn ledger_entry(id: &str) -> String {
    format!("{LEDGER_ENTRY_PREFIX}{id}")
}

fn session_key(id: &str) -> Item {
    HashMap::from([
        (PK.to_owned(), string(format!("{SESSION_PREFIX}{id}"))),
        (SK.to_owned(), string(SESSION_SK)),
    ])
}

/// Epoch seconds for DynamoDB's TTL, rounded up so the sweeper never runs ahead of `expires_at`.
fn ttl_seconds(expires_at_millis: i64) -> i64 {
    expires_at_millis.div_euclid(1000) + i64::from(expires_at_millis.rem_euclid(1000) != 0)
}

fn required_string<'a>(item: &'a Item, attribute: &str) -> Result<&'a str, StoreError> {
    match item.get(attribute) {
        Some(AttributeValue::S(value)) => Ok(value),
        Some(_) => Err(StoreError::Corrupt(format!(
            "attribute `{attribute}` is not a string"
        ))),
        None => Err(StoreError::Corrupt(format!(
            "attribute `{attribute}` is missing"
        ))),
    }
}

fn optional_number<T: FromStr>(item: &Item, attribute: &str) -> Result<Option<T>, StoreError> {
    match item.get(attribute) {
        None => Ok(None),
        Some(AttributeValue::N(value)) => value.parse().map(Some).map_err(|_| {
            StoreError::Corrupt(format!("attribute `{attribute}` is out of range: {value}"))
        }),
        Some(_) => Err(StoreError::Corrupt(format!(
            "attribute `{attribute}` is not a number"
        ))),
    }
}

fn required_number<T: FromStr>(item: &Item, attribute: &str) -> Result<T, StoreError> {
    optional_number(item, attribute)?
        .ok_or_else(|| StoreError::Corrupt(format!("attribute `{attribute}` is missing")))
}

/// Whether an item is visible at `now`: no `expires_at`, or one still in the future.
fn is_live(item: &Item, now: i64) -> Result<bool, StoreError> {
    Ok(optional_number::<i64>(item, EXPIRES_AT.1)?.is_none_or(|expires_at| expires_at > now))
}

/// The live version of the item a failed condition returned, if it is live.
fn live_version(old: Option<&Item>, now: i64) -> Result<Option<u64>, StoreError> {
    match old {
        Some(item) if is_live(item, now)? => required_number(item, VERSION.1).map(Some),
        _ => Ok(None),
    }
}

/// The conflict [`super::sql::SqlStore`] reports, built from the item that failed the condition.
fn conflict(key: &str, expect: Expect, old: Option<&Item>, now: i64) -> StoreError {
    let current = match live_version(old, now) {
        Ok(current) => current,
        Err(error) => return error,
    };
    StoreError::version_conflict(key, expect, current)
}

/// The document an item holds, or `None` when it has expired by `now`.
fn document_of(item: &Item, now: i64) -> Result<Option<Document>, StoreError> {
    if !is_live(item, now)? {
        return Ok(None);
    }
    let sort_key = required_string(item, SK)?;
    let key = sort_key
        .strip_prefix(DOC_PREFIX)
        .ok_or_else(|| StoreError::Corrupt(format!("sort key `{sort_key}` is not a document")))?;
    let value = required_string(item, VALUE.1)?;
    Ok(Some(Document {
        key: key.to_owned(),
        value: serde_json::from_str(value).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        version: required_number(item, VERSION.1)?,
        updated_at: time_of(required_number(item, UPDATED_AT.1)?)?,
        expires_at: optional_number(item, EXPIRES_AT.1)?
            .map(time_of)
            .transpose()?,
    }))
}

fn session_of(id: &str, item: &Item) -> Result<SessionRecord, StoreError> {
    let principal = required_string(item, "principal")?;
    let init_params = required_string(item, "init_params")?;
    Ok(SessionRecord {
        id: id.to_owned(),
        principal: Principal::new(principal).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        init_params: serde_json::from_str(init_params)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: time_of(required_number(item, "created_at")?)?,
        last_seen_at: time_of(required_number(item, LAST_SEEN_AT.1)?)?,
        expires_at: time_of(required_number(item, EXPIRES_AT.1)?)?,
    })
}

/// Error codes DynamoDB answers when a retry later may succeed (throttling, transient faults).
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TooManyRequestsException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeoutException",
    "TransactionConflictException",
    "ReplicatedWriteConflictException",
];

/// Whether a DynamoDB error answer (HTTP status, error code) is worth retrying later.
fn is_retryable_answer(status: u16, code: Option<&str>) -> bool {
    status == 429
        || (500..600).contains(&status)
        || code.is_some_and(|code| RETRYABLE_CODES.contains(&code))
}

/// The backend's name in [`StoreError::Backend`].
const BACKEND: &str = "DynamoDB";

/// A failed SDK call as a [`StoreError::Backend`], with the SDK's full context and whether to
/// retry.
fn dynamo_error<E>(operation: &'static str, error: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => {
            failure.is_io() || failure.is_timeout() || failure.is_other()
        }
        SdkError::ServiceError(context) => {
            is_retryable_answer(context.raw().status().as_u16(), context.err().code())
        }
        _ => false,
    };
    let context = DisplayErrorContext(&error).to_string();
    StoreError::backend(BACKEND, operation, retryable, context)
}

fn build_error(operation: &'static str, error: &dyn std::error::Error) -> StoreError {
    let context = DisplayErrorContext(error).to_string();
    StoreError::backend(BACKEND, operation, false, context)
}

/// Service errors that can be a failed `ConditionExpression`.
trait ConditionFailure {
    fn is_failed_condition(&self) -> bool;
    /// The item that failed the condition, when the write asked for it.
    fn into_failed_item(self) -> Option<Item>;
}

macro_rules! condition_failure {
    ($($error:ident),*) => {$(
        impl ConditionFailure for $error {
            fn is_failed_condition(&self) -> bool {
                self.is_conditional_check_failed_exception()
            }
            fn into_failed_item(self) -> Option<Item> {
                match self {
                    Self::ConditionalCheckFailedException(failure) => failure.item,
                    _ => None,
                }
            }
        }
    )*};
}

condition_failure!(PutItemError, UpdateItemError, DeleteItemError);

/// Splits a conditional write's outcome: `Ok(Ok(output))` written, `Ok(Err(current item))`
/// condition failed, `Err` anything else.
fn conditional<T, E>(
    operation: &'static str,
    result: Result<T, SdkError<E>>,
) -> Result<Result<T, Option<Item>>, StoreError>
where
    E: ConditionFailure + ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(output) => Ok(Ok(output)),
        Err(SdkError::ServiceError(context)) if context.err().is_failed_condition() => {
            Ok(Err(context.into_err().into_failed_item()))
        }
        Err(error) => Err(dynamo_error(operation, error)),
    }
}

#[async_trait]
impl StateStore for DynamoStore {
    async fn get(&self, principal: &Principal, key: &str) -> Result<Option<Document>, StoreError> {
        let key = checked_key(key)?;
        self.get_document(principal, &key, now_millis()).await
    }

    async fn put(&self, principal: &Principal, put: Put<'_>) -> Result<Document, StoreError> {
        let (key, json) = put.checked()?;
        let put = Put { key: &key, ..put };
        let now = now_millis();
        let fields = Fields {
            key: put.key,
            json,
            now,
            expires_at: put.ttl.map(|ttl| now.saturating_add(ttl_millis(ttl))),
        };
        let written = match put.expect {
            Expect::Absent => self.create_document(principal, &fields).await?,
            Expect::Version(_) => self.update_document(principal, &fields, put.expect).await?,
            // One UpdateItem for an absent or live document. DynamoDB cannot
            // restart the version inside one update, so an expired document
            // fails that condition and is replaced by a create-if-absent instead;
            // if a concurrent writer revives it in between, start over.
            Expect::Any => {
                let mut outcome = None;
                for _ in 0..MAX_ANY_ATTEMPTS {
                    if let Ok(version) = self
                        .update_document(principal, &fields, Expect::Any)
                        .await?
                    {
                        outcome = Some(version);
                        break;
                    }
                    if let Ok(version) = self.create_document(principal, &fields).await? {
                        outcome = Some(version);
                        break;
                    }
                }
                match outcome {
                    Some(version) => Ok(version),
                    None => {
                        return Err(StoreError::backend(
                            BACKEND,
                            "UpdateItem",
                            true,
                            format!("`{}` kept changing under concurrent writers", put.key),
                        ));
                    }
                }
            }
        };
        match written {
            Ok(version) => Ok(Document {
                key: put.key.to_owned(),
                value: put.value.clone(),
                version,
                updated_at: time_of(now)?,
                expires_at: fields.expires_at.map(time_of).transpose()?,
            }),
            Err(old) => Err(conflict(put.key, put.expect, old.as_ref(), now)),
        }
    }

    async fn delete(
        &self,
        principal: &Principal,
        key: &str,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let key = checked_key(key)?;
        let key = key.as_ref();
        let now = now_millis();
        let (condition, expected) = match expect {
            // Nothing to delete when the caller expects nothing: a live document is a conflict.
            Expect::Absent => {
                return match self.get_document(principal, key, now).await? {
                    None => Ok(false),
                    Some(document) => Err(StoreError::VersionConflict {
                        key: key.to_owned(),
                        expected: "no document".to_owned(),
                        current: Some(document.version),
                    }),
                };
            }
            Expect::Any => (
                "attribute_exists(pk) AND (attribute_not_exists(#expires) OR #expires > :now)",
                None,
            ),
            Expect::Version(version) => (
                "#version = :expected AND (attribute_not_exists(#expires) OR #expires > :now)",
                Some(version),
            ),
        };
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(document_key(principal, key)))
            .condition_expression(condition)
            .expression_attribute_names(EXPIRES_AT.0, EXPIRES_AT.1)
            .expression_attribute_values(":now", number(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(version) = expected {
            request = request
                .expression_attribute_names(VERSION.0, VERSION.1)
                .expression_attribute_values(":expected", number(version));
        }
        match conditional("DeleteItem", request.send().await)? {
            Ok(_) => Ok(true),
            Err(_) if expect == Expect::Any => Ok(false),
            Err(old) => Err(conflict(key, expect, old.as_ref(), now)),
        }
    }

    async fn list(
        &self,
        principal: &Principal,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page, StoreError> {
        let prefix = checked_prefix(prefix)?;
        let prefix = prefix.as_ref();
        let after = match cursor {
            Some(cursor) => Some(self.cursors.open(principal, prefix, cursor)?),
            None => None,
        };
        let limit = limit.clamp(1, MAX_PAGE_SIZE) as usize;
        let now = now_millis();
        let mut start = after.map(|after| document_key(principal, &after));
        let mut items = Vec::with_capacity(limit + 1);
        // `Limit` counts items read before the expiry filter drops any, so a
        // page can come back short: keep reading until there is one item more
        // than the page (proof of a next page) or the partition ends.
        loop {
            let wanted = i32::try_from(limit + 1 - items.len()).unwrap_or(i32::MAX);
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .filter_expression("attribute_not_exists(#expires) OR #expires > :now")
                .expression_attribute_names(EXPIRES_AT.0, EXPIRES_AT.1)
                .expression_attribute_values(
                    ":pk",
                    string(format!("{STATE_PREFIX}{}", principal.as_str())),
                )
                .expression_attribute_values(":prefix", string(format!("{DOC_PREFIX}{prefix}")))
                .expression_attribute_values(":now", number(now))
                .consistent_read(true)
                .limit(wanted)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| dynamo_error("Query", e))?;
            for item in output.items.unwrap_or_default() {
                if items.len() > limit {
                    break;
                }
                if let Some(document) = document_of(&item, now)? {
                    items.push(document);
                }
            }
            match output.last_evaluated_key {
                Some(last) if items.len() <= limit => start = Some(last),
                _ => break,
            }
        }
        Ok(Page::from_lookahead(
            items,
            limit,
            &self.cursors,
            principal,
            prefix,
        ))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A data-plane read of a key that never exists: proves the table answers
        // for the role's data permissions, unlike DescribeTable (control plane,
        // low rate limit, separate permission).
        self.client
            .get_item()
            .table_name(&self.table)
            .key(PK, string(HEALTH_KEY))
            .key(SK, string(HEALTH_KEY))
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        // DynamoDB's TTL sweeper deletes expired items for free (no write
        // capacity) from the `ttl` attribute; a scan-and-delete here would read
        // the whole table. Reads already hide expired items.
        Ok(0)
    }
}

/// How often [`RateBuckets::admit`] goes round when other requests of the same caller keep
/// moving the bucket between its two conditional updates.
const MAX_ADMIT_ATTEMPTS: usize = 3;

#[async_trait]
impl RateBuckets for DynamoStore {
    /// DynamoDB cannot take a maximum inside an update, so the GCRA step is two conditional
    /// updates: an idle or new bucket (`tat` not ahead of now) restarts at now + interval; a
    /// busy one advances by one interval if it stays within the tolerance. The restart is tried
    /// first (MCP callers mostly pause between calls); when its condition fails, the returned
    /// bucket says whether the caller is over the limit (answered without another call) or
    /// inside a burst (the advance follows). So a request after a pause of at least one
    /// interval costs one UpdateItem, one inside a burst two, a refused one one.
    async fn admit(
        &self,
        principal: &Principal,
        gcra: Gcra,
        now_us: i64,
    ) -> Result<Admission, StoreError> {
        let ttl = ttl_seconds(gcra.expires_at_ms(now_us));
        let latest = now_us + gcra.tolerance_us - gcra.interval_us;
        for _ in 0..MAX_ADMIT_ATTEMPTS {
            let restart = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(rate_key(principal)))
                .update_expression("SET #tat = :next, #ttl = :ttl")
                .condition_expression("attribute_not_exists(#tat) OR #tat <= :now")
                .expression_attribute_names(TAT.0, TAT.1)
                .expression_attribute_names(TTL.0, TTL.1)
                .expression_attribute_values(":next", number(now_us + gcra.interval_us))
                .expression_attribute_values(":ttl", number(ttl))
                .expression_attribute_values(":now", number(now_us))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let tat = match conditional("UpdateItem", restart)? {
                Ok(_) => return Ok(Admission::Admitted),
                Err(old) => old.as_ref().and_then(|item| match item.get(TAT.1) {
                    Some(AttributeValue::N(tat)) => tat.parse::<i64>().ok(),
                    _ => None,
                }),
            };
            match tat {
                Some(tat) if tat > latest => return Ok(gcra.step(Some(tat), now_us).0),
                Some(tat) if tat > now_us => {}
                // Another request restarted or the bucket went idle in between: go round.
                _ => continue,
            }
            let advance = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(rate_key(principal)))
                .update_expression("SET #tat = #tat + :interval, #ttl = :ttl")
                .condition_expression("#tat > :now AND #tat <= :latest")
                .expression_attribute_names(TAT.0, TAT.1)
                .expression_attribute_names(TTL.0, TTL.1)
                .expression_attribute_values(":interval", number(gcra.interval_us))
                .expression_attribute_values(":ttl", number(ttl))
                .expression_attribute_values(":now", number(now_us))
                .expression_attribute_values(":latest", number(latest))
                .send()
                .await;
            if conditional("UpdateItem", advance)?.is_ok() {
                return Ok(Admission::Admitted);
            }
        }
        Ok(Admission::Refused {
            retry_after_us: gcra.interval_us,
        })
    }
}

#[async_trait]
impl FeedRecords for DynamoStore {
    async fn load_feed(&self, principal: &Principal) -> Result<Option<FeedLog>, StoreError> {
        // Strongly consistent, so an append acknowledged on one instance is in the next
        // poll on any other.
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(feed_key(principal)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        output
            .item
            .map(|item| FeedLog::from_json(required_string(&item, "log")?))
            .transpose()
    }

    async fn save_feed(
        &self,
        principal: &Principal,
        log: &FeedLog,
        expected_head: Option<i64>,
    ) -> Result<bool, StoreError> {
        let expires_at = FeedLog::expires_at_millis();
        let mut item = feed_key(principal);
        item.extend([
            (HEAD.1.to_owned(), number(log.head)),
            ("log".to_owned(), string(log.to_json()?)),
            (EXPIRES_AT.1.to_owned(), number(expires_at)),
            (TTL.1.to_owned(), number(ttl_seconds(expires_at))),
        ]);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let put = match expected_head {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(expected) => put
                .condition_expression("#head = :expected")
                .expression_attribute_names(HEAD.0, HEAD.1)
                .expression_attribute_values(":expected", number(expected)),
        };
        Ok(conditional("PutItem", put.send().await)?.is_ok())
    }
}

#[async_trait]
impl MailboxRecords for DynamoStore {
    async fn open_request(
        &self,
        session: &str,
        request: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut item = mailbox_key(session, request);
        item.extend([
            (EXPIRES_AT.1.to_owned(), number(expires_at)),
            (TTL.1.to_owned(), number(ttl_seconds(expires_at))),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| dynamo_error("PutItem", e))?;
        Ok(())
    }

    /// One conditional `UpdateItem`: the condition fails unless the request is open.
    async fn post_answer(
        &self,
        session: &str,
        request: &str,
        answer: &str,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(mailbox_key(session, request)))
            .update_expression("SET #answer = :answer")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(#answer) AND #expires > :now",
            )
            .expression_attribute_names(ANSWER.0, ANSWER.1)
            .expression_attribute_names(EXPIRES_AT.0, EXPIRES_AT.1)
            .expression_attribute_values(":answer", string(answer))
            .expression_attribute_values(":now", number(now_millis()))
            .send()
            .await;
        Ok(conditional("UpdateItem", update)?.is_ok())
    }

    async fn load_answer(
        &self,
        session: &str,
        request: &str,
    ) -> Result<Option<String>, StoreError> {
        // Strongly consistent, so an answer posted on one instance is in the next poll.
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(mailbox_key(session, request)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        let now = now_millis();
        match output.item {
            Some(item) if is_live(&item, now)? && item.contains_key(ANSWER.1) => {
                required_string(&item, ANSWER.1).map(|answer| Some(answer.to_owned()))
            }
            _ => Ok(None),
        }
    }

    async fn close_request(&self, session: &str, request: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(mailbox_key(session, request)))
            .send()
            .await
            .map_err(|e| dynamo_error("DeleteItem", e))?;
        Ok(())
    }
}

/// A task item with every attribute but the key: what both task writes store.
fn task_item(principal: &Principal, id: &str, body: &str, version: u64, expires_at: i64) -> Item {
    let mut item = task_key(principal, id);
    item.extend([
        (BODY.1.to_owned(), string(body)),
        (VERSION.1.to_owned(), number(version)),
        (EXPIRES_AT.1.to_owned(), number(expires_at)),
        (TTL.1.to_owned(), number(ttl_seconds(expires_at))),
    ]);
    item
}

#[async_trait]
impl TaskRecords for DynamoStore {
    /// One conditional `PutItem`: it fails only over a live item of that id, so an expired
    /// one the TTL sweeper has not reached yet is replaced.
    async fn create_task(
        &self,
        principal: &Principal,
        id: &str,
        body: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        checked_body(body)?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(task_item(principal, id, body, 1, expires_at)))
            .condition_expression("attribute_not_exists(pk) OR #expires <= :now")
            .expression_attribute_names(EXPIRES_AT.0, EXPIRES_AT.1)
            .expression_attribute_values(":now", number(now_millis()))
            .send()
            .await;
        Ok(conditional("PutItem", put)?.is_ok())
    }

    async fn load_task(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        // Strongly consistent, so a task created or moved on one instance is seen by the
        // next request on any other.
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(task_key(principal, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        match output.item {
            Some(item) if is_live(&item, now_millis())? => Ok(Some(TaskRecord {
                body: required_string(&item, BODY.1)?.to_owned(),
                version: required_number(&item, VERSION.1)?,
            })),
            _ => Ok(None),
        }
    }

    /// One conditional `PutItem` on the version read; the condition also fails on a missing
    /// item (its `version` does not exist), so a replacement never creates a task.
    async fn replace_task(
        &self,
        principal: &Principal,
        id: &str,
        version: u64,
        body: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        checked_body(body)?;
        let Some(next) = version.checked_add(1) else {
            return Ok(false);
        };
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(task_item(principal, id, body, next, expires_at)))
            .condition_expression("#version = :expected AND #expires > :now")
            .expression_attribute_names(VERSION.0, VERSION.1)
            .expression_attribute_names(EXPIRES_AT.0, EXPIRES_AT.1)
            .expression_attribute_values(":expected", number(version))
            .expression_attribute_values(":now", number(now_millis()))
            .send()
            .await;
        Ok(conditional("PutItem", put)?.is_ok())
    }
}

impl DynamoStore {
    /// A session's item if it has not expired. Strongly consistent: a DELETE served by one
    /// instance must be seen by the next request, whichever instance serves it.
    async fn live_session_item(&self, id: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(session_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo_error("GetItem", e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let expires_at: i64 = required_number(&item, EXPIRES_AT.1)?;
        Ok((expires_at > now_millis()).then_some(item))
    }

    /// Enters session `record` in its principal's ledger: one conditional `UpdateItem` that
    /// adds the entry and counts it unless the count is at `limit`. When the condition fails,
    /// the ledger it returns says why: at the cap with every entry live, the creation is
    /// refused (no further call); entries that expired are removed by a conditional write on
    /// the count read, and the entry is tried again.
    async fn enter_ledger(&self, record: &SessionRecord, limit: usize) -> Result<(), StoreError> {
        let expires_at = record.expires_at.timestamp_millis();
        let entry = ledger_entry(&record.id);
        for _ in 0..MAX_LEDGER_ATTEMPTS {
            let added = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(ledger_key(&record.principal)))
                .update_expression(
                    "SET #entry = :expires, #live = if_not_exists(#live, :zero) + :one, \
                     #expires = :expires, #ttl = :ttl",
                )
                .condition_expression(
                    "attribute_not_exists(#entry) AND \
                     (attribute_not_exists(#live) OR #live < :limit)",
                )
                .set_expression_attribute_names(Some(HashMap::from([
                    (ENTRY.to_owned(), entry.clone()),
                    name(LIVE),
                    name(EXPIRES_AT),
                    name(TTL),
                ])))
                .expression_attribute_values(":expires", number(expires_at))
                .expression_attribute_values(":ttl", number(ttl_seconds(expires_at)))
                .expression_attribute_values(":zero", number(0))
                .expression_attribute_values(":one", number(1))
                .expression_attribute_values(":limit", number(limit))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let ledger = match conditional("UpdateItem", added)? {
                Ok(_) => return Ok(()),
                Err(old) => old.unwrap_or_default(),
            };
            if ledger.contains_key(&entry) {
                // The same session stored again: it is counted already.
                return Ok(());
            }
            let now = now_millis();
            let mut live = 0_usize;
            let mut expired = Vec::new();
            for (attribute, value) in &ledger {
                if !attribute.starts_with(LEDGER_ENTRY_PREFIX) {
                    continue;
                }
                match value {
                    AttributeValue::N(expiry) if expiry.parse::<i64>().is_ok_and(|e| e > now) => {
                        live += 1;
                    }
                    _ => expired.push(attribute.clone()),
                }
            }
            if live >= limit {
                return Err(StoreError::TooManySessions { limit });
            }
            let counted = optional_number::<i64>(&ledger, LIVE.1)?;
            self.prune_ledger(&record.principal, &expired, live, counted)
                .await?;
        }
        Err(StoreError::Contended("count of the caller's sessions"))
    }

    /// Removes the `expired` entries of `principal`'s ledger and sets the count to the `live`
    /// ones left, if the count is still `counted` (nobody entered or left meanwhile); a
    /// ledger that moved is left to the next attempt.
    async fn prune_ledger(
        &self,
        principal: &Principal,
        expired: &[String],
        live: usize,
        counted: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut names = HashMap::from([name(LIVE)]);
        let mut removed = Vec::with_capacity(expired.len());
        for (index, attribute) in expired.iter().enumerate() {
            let alias = format!("#gone{index}");
            removed.push(alias.clone());
            names.insert(alias, attribute.clone());
        }
        let update = if removed.is_empty() {
            "SET #live = :live".to_owned()
        } else {
            format!("SET #live = :live REMOVE {}", removed.join(", "))
        };
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ledger_key(principal)))
            .update_expression(update)
            .expression_attribute_values(":live", number(live));
        let request = match counted {
            Some(counted) => request
                .condition_expression("#live = :counted")
                .expression_attribute_values(":counted", number(counted)),
            None => request.condition_expression("attribute_not_exists(#live)"),
        };
        let pruned = request
            .set_expression_attribute_names(Some(names))
            .send()
            .await;
        conditional("UpdateItem", pruned)?.ok();
        Ok(())
    }

    /// Takes session `id` out of `principal`'s ledger, if it is there.
    async fn leave_ledger(&self, principal: &Principal, id: &str) -> Result<(), StoreError> {
        let left = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ledger_key(principal)))
            .update_expression("SET #live = #live - :one REMOVE #entry")
            .condition_expression("attribute_exists(#entry)")
            .set_expression_attribute_names(Some(HashMap::from([
                (ENTRY.to_owned(), ledger_entry(id)),
                name(LIVE),
            ])))
            .expression_attribute_values(":one", number(1))
            .send()
            .await;
        conditional("UpdateItem", left)?.ok();
        Ok(())
    }

    /// Slides the expiry of session `id` in `principal`'s ledger with the session's own.
    async fn touch_ledger(
        &self,
        principal: &Principal,
        id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let touched = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ledger_key(principal)))
            .update_expression("SET #entry = :expires, #expires = :expires, #ttl = :ttl")
            .condition_expression("attribute_exists(#entry)")
            .set_expression_attribute_names(Some(HashMap::from([
                (ENTRY.to_owned(), ledger_entry(id)),
                name(EXPIRES_AT),
                name(TTL),
            ])))
            .expression_attribute_values(":expires", number(expires_at))
            .expression_attribute_values(":ttl", number(ttl_seconds(expires_at)))
            .send()
            .await;
        conditional("UpdateItem", touched)?.ok();
        Ok(())
    }

    async fn put_session(
        &self,
        record: &SessionRecord,
        init_params: String,
    ) -> Result<(), StoreError> {
        let expires_at = record.expires_at.timestamp_millis();
        let mut item = session_key(&record.id);
        item.extend([
            (PRINCIPAL.1.to_owned(), string(record.principal.as_str())),
            ("init_params".to_owned(), string(init_params)),
            (
                "created_at".to_owned(),
                number(record.created_at.timestamp_millis()),
            ),
            (
                LAST_SEEN_AT.1.to_owned(),
                number(record.last_seen_at.timestamp_millis()),
            ),
            (EXPIRES_AT.1.to_owned(), number(expires_at)),
            (TTL.1.to_owned(), number(ttl_seconds(expires_at))),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| dynamo_error("PutItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl SessionRecords for DynamoStore {
    /// Two writes: the ledger entry (which refuses at the cap), then the session's item. A
    /// session whose item could not be written leaves the ledger again.
    async fn create_session(&self, record: &SessionRecord, limit: usize) -> Result<(), StoreError> {
        let init_params = record.checked_init_params()?;
        self.enter_ledger(record, limit).await?;
        if let Err(error) = self.put_session(record, init_params).await {
            if let Err(left) = self.leave_ledger(&record.principal, &record.id).await {
                tracing::warn!(error = %left, session = %record.id, "a session that was not stored still counts against its caller until it would have expired");
            }
            return Err(error);
        }
        Ok(())
    }

    async fn load_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self.live_session_item(id).await? {
            Some(item) => session_of(id, &item).map(Some),
            None => Ok(None),
        }
    }

    /// The session's item and its ledger entry, written side by side.
    async fn touch_session(
        &self,
        principal: &Principal,
        id: &str,
        last_seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let expires_at = expires_at.timestamp_millis();
        let session = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(id)))
            .update_expression("SET #seen = :seen, #expires = :expires, #ttl = :ttl")
            // Never recreate a deleted session as a record without its `initialize`.
            .condition_expression("attribute_exists(pk) AND #principal = :principal")
            .set_expression_attribute_names(Some(HashMap::from([
                name(LAST_SEEN_AT),
                name(EXPIRES_AT),
                name(TTL),
                name(PRINCIPAL),
            ])))
            .expression_attribute_values(":seen", number(last_seen_at.timestamp_millis()))
            .expression_attribute_values(":expires", number(expires_at))
            .expression_attribute_values(":ttl", number(ttl_seconds(expires_at)))
            .expression_attribute_values(":principal", string(principal.as_str()))
            .send();
        let (session, ledger) = tokio::join!(session, self.touch_ledger(principal, id, expires_at));
        // A missing record is not an error, as for SQL's UPDATE of no row.
        conditional("UpdateItem", session)?.ok();
        ledger
    }

    async fn set_session_subscriptions(
        &self,
        id: &str,
        uris: &BTreeSet<String>,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(session_key(id)))
            .update_expression("SET #subscriptions = :subscriptions")
            .condition_expression("attribute_exists(pk) AND #expires > :now")
            .set_expression_attribute_names(Some(HashMap::from([
                name(SUBSCRIPTIONS),
                name(EXPIRES_AT),
            ])))
            .expression_attribute_values(":subscriptions", string(subscriptions_json(uris)?))
            .expression_attribute_values(":now", number(now_millis()))
            .send()
            .await;
        Ok(conditional("UpdateItem", result)?.is_ok())
    }

    async fn load_session_subscriptions(
        &self,
        id: &str,
    ) -> Result<Option<BTreeSet<String>>, StoreError> {
        let Some(item) = self.live_session_item(id).await? else {
            return Ok(None);
        };
        let stored = item
            .get(SUBSCRIPTIONS.1)
            .and_then(|value| value.as_s().ok());
        subscriptions_of(stored.map(String::as_str)).map(Some)
    }

    /// The session's item (only if it is `principal`'s) and its ledger entry, deleted side by
    /// side: another principal's ledger never holds the id.
    async fn delete_session(&self, principal: &Principal, id: &str) -> Result<(), StoreError> {
        let session = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(session_key(id)))
            .condition_expression("#principal = :principal")
            .expression_attribute_names(PRINCIPAL.0, PRINCIPAL.1)
            .expression_attribute_values(":principal", string(principal.as_str()))
            .send();
        let (session, ledger) = tokio::join!(session, self.leave_ledger(principal, id));
        conditional("DeleteItem", session)?.ok();
        ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_seconds_never_run_ahead_of_expiry() {
        assert_eq!(ttl_seconds(0), 0);
        assert_eq!(ttl_seconds(1), 1);
        assert_eq!(ttl_seconds(1000), 1);
        assert_eq!(ttl_seconds(1001), 2);
        assert_eq!(ttl_seconds(-1), 0);
    }

    #[test]
    fn corrupt_items_are_reported_not_panicked() {
        let mut item = document_key(&Principal::anonymous(), "k");
        item.insert("value".into(), string("{not json"));
        item.insert("version".into(), number(1));
        item.insert("updated_at".into(), number(0));
        assert!(matches!(document_of(&item, 0), Err(StoreError::Corrupt(_))));
        item.insert("value".into(), string("1"));
        item.insert("version".into(), number(-1));
        assert!(matches!(document_of(&item, 0), Err(StoreError::Corrupt(_))));
        item.insert("version".into(), string("1"));
        assert!(matches!(document_of(&item, 0), Err(StoreError::Corrupt(_))));
        item.insert("version".into(), number(3));
        item.insert("expires_at".into(), number(5));
        assert!(matches!(document_of(&item, 5), Ok(None)));
        let live = document_of(&item, 4)
            .ok()
            .flatten()
            .map(|d| (d.key, d.version));
        assert_eq!(live, Some(("k".to_owned(), 3)));
    }

    #[test]
    fn throttling_and_outages_are_retryable_mistakes_are_not() {
        assert!(is_retryable_answer(400, Some("ThrottlingException")));
        assert!(is_retryable_answer(
            400,
            Some("ProvisionedThroughputExceededException")
        ));
        assert!(is_retryable_answer(500, Some("InternalServerError")));
        assert!(is_retryable_answer(503, None));
        assert!(!is_retryable_answer(400, Some("ResourceNotFoundException")));
        assert!(!is_retryable_answer(400, Some("ValidationException")));
        assert!(!is_retryable_answer(403, Some("AccessDeniedException")));
        let throttled = StoreError::backend(BACKEND, "GetItem", true, "ThrottlingException");
        assert!(throttled.is_retryable() && !throttled.is_caller_error());
        assert_eq!(
            throttled.to_string(),
            "DynamoDB GetItem failed: ThrottlingException"
        );
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!StoreError::BadCursor.is_retryable());
    }

    #[test]
    fn conflicts_name_only_a_live_version() {
        let mut old = document_key(&Principal::anonymous(), "k");
        old.insert("version".into(), number(4));
        old.insert("expires_at".into(), number(10));
        let live = conflict("k", Expect::Version(3), Some(&old), 9);
        assert_eq!(
            live.to_string(),
            "version conflict on `k`: expected version 3, current is version 4"
        );
        let expired = conflict("k", Expect::Absent, Some(&old), 10);
        assert!(matches!(
            expired,
            StoreError::VersionConflict { current: None, .. }
        ));
    }
}
