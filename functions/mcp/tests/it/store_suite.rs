//! One store contract, written once, run against every backend.
//!
//! Each backend gets a `#[tokio::test]` that builds a fresh store and hands it
//! to [`run_suite`], and one that races compare-and-set writers on it. A new
//! backend adds one test of each. DynamoDB runs on the emulator at
//! `MCP_TEST_AWS_ENDPOINT` (moto in `scripts/test.sh`).

use crate::common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use chrono::Utc;
use mcp_function::{
    principal::Principal,
    store::{
        Admission, Expect, Gcra, MAX_DOCUMENT_BYTES, MAX_INIT_PARAMS_BYTES, Put, SessionRecord,
        Store, StoreError,
        feed::{self, Change},
        mailbox,
        tasks::{MAX_TASK_BYTES, TaskRecord},
    },
};
use serde_json::{Value, json};

fn alice() -> Principal {
    Principal::new("alice").expect("subject")
}

fn bob() -> Principal {
    Principal::new("bob").expect("subject")
}

fn put<'a>(key: &'a str, value: &'a Value, expect: Expect) -> Put<'a> {
    Put {
        key,
        value,
        expect,
        ttl: None,
    }
}

async fn run_suite(store: &dyn Store) {
    versions_start_at_one_and_grow(store).await;
    compare_and_set_names_the_current_version(store).await;
    principals_never_see_each_other(store).await;
    limits_are_enforced_with_clear_errors(store).await;
    listing_pages_with_tamper_checked_cursors(store).await;
    expired_documents_vanish(store).await;
    expired_documents_count_as_absent_for_every_expectation(store).await;
    listing_skips_expired_documents_across_pages(store).await;
    deletes_honour_versions(store).await;
    sessions_round_trip_and_expire(store).await;
    sessions_are_capped_per_principal(store).await;
    oversized_initialize_params_are_not_stored(store).await;
    keys_have_one_spelling_and_nothing_invisible(store).await;
    rate_buckets_admit_a_burst_then_the_rate(store).await;
    change_feeds_keep_order_capacity_and_owner(store).await;
    the_mailbox_takes_one_answer_per_open_request(store).await;
    task_records_are_per_principal_and_compare_and_set(store).await;
    store.ping().await.expect("ping");
}

fn updated(uri: &str) -> Change {
    Change::ResourceUpdated {
        uri: uri.to_owned(),
    }
}

async fn change_feeds_keep_order_capacity_and_owner(store: &dyn Store) {
    let carol = Principal::new("carol").expect("subject");
    assert_eq!(feed::head(store, &carol).await.expect("head"), 0);
    let start = feed::head(store, &alice()).await.expect("head");

    let first = feed::append(
        store,
        &carol,
        &[Change::ResourceListChanged, updated("files:///a")],
    )
    .await
    .expect("append");
    let second = feed::append(store, &carol, &[updated("files:///b")])
        .await
        .expect("append");
    assert!(second > first, "positions grow: {first} then {second}");

    let read = feed::read_after(store, &carol, 0).await.expect("read");
    let changes: Vec<Change> = read.events.iter().map(|e| e.change.clone()).collect();
    assert_eq!(
        changes,
        [
            Change::ResourceListChanged,
            updated("files:///a"),
            updated("files:///b")
        ]
    );
    assert_eq!((read.head, read.gap), (second, false));
    let after_first = feed::read_after(store, &carol, first).await.expect("read");
    assert_eq!(after_first.events.len(), 1);
    assert_eq!(after_first.events[0].change, updated("files:///b"));
    let caught_up = feed::read_after(store, &carol, second).await.expect("read");
    assert_eq!(
        (caught_up.events.len(), caught_up.head, caught_up.gap),
        (0, second, false)
    );

    // Another principal's feed is untouched and unseen.
    assert_eq!(feed::head(store, &alice()).await.expect("head"), start);
    let alices = feed::read_after(store, &alice(), start)
        .await
        .expect("read");
    assert!(alices.events.is_empty());

    // Past the capacity the oldest go, and a reader that had not seen them is told.
    let burst: Vec<Change> = (0..feed::FEED_CAPACITY)
        .map(|i| updated(&format!("files:///{i}")))
        .collect();
    feed::append(store, &carol, &burst).await.expect("append");
    let behind = feed::read_after(store, &carol, first).await.expect("read");
    assert!(behind.gap);
    assert_eq!(behind.events.len(), feed::FEED_CAPACITY);
    let current = feed::read_after(store, &carol, behind.head)
        .await
        .expect("read");
    assert!(!current.gap && current.events.is_empty());
}

/// Eight appends to one feed at once: every one lands, each at its own position, in one order.
async fn race_feed_appends(store: Arc<dyn Store>) {
    let principal = Principal::new("feed-racer").expect("subject");
    let start = feed::head(store.as_ref(), &principal).await.expect("head");
    let appends = (0..8).map(|i| {
        let store = store.clone();
        let principal = principal.clone();
        tokio::spawn(async move {
            feed::append(
                store.as_ref(),
                &principal,
                &[updated(&format!("files:///{i}"))],
            )
            .await
        })
    });
    let mut heads = Vec::new();
    for append in appends {
        heads.push(append.await.expect("task").expect("append"));
    }
    let read = feed::read_after(store.as_ref(), &principal, start)
        .await
        .expect("read");
    let positions: Vec<i64> = read.events.iter().map(|e| e.position).collect();
    assert_eq!(positions.len(), 8);
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
    heads.sort_unstable();
    assert_eq!(heads, positions);
}

#[tokio::test]
async fn concurrent_feed_appends_all_land_in_one_order() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let Some(_postgres) = common::require_postgres().await else {
        return;
    };
    let (sqlite, _dir) = common::sqlite_store().await;
    let (postgres, _schema) = common::postgres_store().await;
    let dynamo: Arc<dyn Store> = Arc::new(common::dynamo_store().await);
    for store in [common::shared(sqlite), common::shared(postgres), dynamo] {
        race_feed_appends(store).await;
    }
}

/// 10 per second, bursts of 3: times are chosen, not read from the clock.
const GCRA: Gcra = Gcra {
    interval_us: 100_000,
    tolerance_us: 300_000,
};

async fn rate_buckets_admit_a_burst_then_the_rate(store: &dyn Store) {
    let t0 = Utc::now().timestamp_micros();
    for _ in 0..3 {
        let admitted = store.admit(&alice(), GCRA, t0).await.expect("admit");
        assert_eq!(admitted, Admission::Admitted);
    }
    assert_eq!(
        store.admit(&alice(), GCRA, t0).await.expect("admit"),
        Admission::Refused {
            retry_after_us: 100_000
        }
    );
    // A refusal takes nothing: one interval later exactly one more fits.
    assert_eq!(
        store
            .admit(&alice(), GCRA, t0 + 100_000)
            .await
            .expect("admit"),
        Admission::Admitted
    );
    assert!(matches!(
        store
            .admit(&alice(), GCRA, t0 + 100_000)
            .await
            .expect("admit"),
        Admission::Refused { .. }
    ));
    // Bob's bucket is his own.
    assert_eq!(
        store.admit(&bob(), GCRA, t0).await.expect("admit"),
        Admission::Admitted
    );
    // After a pause the bucket is full again, and not fuller than the burst.
    let later = t0 + 60_000_000;
    for _ in 0..3 {
        assert_eq!(
            store.admit(&alice(), GCRA, later).await.expect("admit"),
            Admission::Admitted
        );
    }
    assert!(matches!(
        store.admit(&alice(), GCRA, later).await.expect("admit"),
        Admission::Refused { .. }
    ));
}

/// Eight requests of one caller at the same instant against a burst of 3: exactly 3 pass.
async fn race_rate_bucket(store: Arc<dyn Store>) {
    let principal = Principal::new("racer").expect("subject");
    let now = Utc::now().timestamp_micros();
    let attempts = (0..8).map(|_| {
        let store = store.clone();
        let principal = principal.clone();
        tokio::spawn(async move { store.admit(&principal, GCRA, now).await })
    });
    let mut admitted = 0;
    for attempt in attempts {
        let admission = attempt.await.expect("task").expect("admit");
        admitted += usize::from(admission == Admission::Admitted);
    }
    assert_eq!(admitted, 3);
}

#[tokio::test]
async fn concurrent_requests_never_overdraw_a_rate_bucket() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let Some(_postgres) = common::require_postgres().await else {
        return;
    };
    let (sqlite, _dir) = common::sqlite_store().await;
    let (postgres, _schema) = common::postgres_store().await;
    let dynamo: Arc<dyn Store> = Arc::new(common::dynamo_store().await);
    for store in [common::shared(sqlite), common::shared(postgres), dynamo] {
        race_rate_bucket(store).await;
    }
}

async fn versions_start_at_one_and_grow(store: &dyn Store) {
    let value = json!({"n": 1});
    let first = store
        .put(&alice(), put("v/a", &value, Expect::Any))
        .await
        .expect("put");
    assert_eq!(first.version, 1);
    let second = store
        .put(&alice(), put("v/a", &json!({"n": 2}), Expect::Any))
        .await
        .expect("put");
    assert_eq!(second.version, 2);
    let read = store
        .get(&alice(), "v/a")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read.value, json!({"n": 2}));
    assert_eq!(read.version, 2);
    assert_eq!(store.get(&alice(), "v/missing").await.expect("get"), None);
}

async fn compare_and_set_names_the_current_version(store: &dyn Store) {
    let value = json!("x");
    store
        .put(&alice(), put("cas", &value, Expect::Absent))
        .await
        .expect("create");
    let error = store
        .put(&alice(), put("cas", &value, Expect::Absent))
        .await
        .expect_err("exists");
    assert_eq!(
        error.to_string(),
        "version conflict on `cas`: expected no document, current is version 1"
    );
    let updated = store
        .put(&alice(), put("cas", &value, Expect::Version(1)))
        .await
        .expect("cas");
    assert_eq!(updated.version, 2);
    let stale = store
        .put(&alice(), put("cas", &json!("lost"), Expect::Version(1)))
        .await
        .expect_err("stale");
    assert!(
        matches!(
            stale,
            StoreError::VersionConflict {
                current: Some(2),
                ..
            }
        ),
        "{stale}"
    );
    let gone = store
        .put(&alice(), put("cas-none", &value, Expect::Version(3)))
        .await
        .expect_err("absent");
    assert_eq!(
        gone.to_string(),
        "version conflict on `cas-none`: expected version 3, current is absent (no document)"
    );
    // The losing writes changed nothing.
    let kept = store
        .get(&alice(), "cas")
        .await
        .expect("get")
        .expect("present");
    assert_eq!((kept.version, kept.value), (2, json!("x")));
}

async fn principals_never_see_each_other(store: &dyn Store) {
    let secret = json!({"secret": "alice's"});
    store
        .put(&alice(), put("iso/doc", &secret, Expect::Any))
        .await
        .expect("put");
    assert_eq!(store.get(&bob(), "iso/doc").await.expect("get"), None);
    assert!(
        store
            .list(&bob(), "iso/", None, 100)
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(
        !store
            .delete(&bob(), "iso/doc", Expect::Any)
            .await
            .expect("delete")
    );
    // Bob writing the same key creates his own document; Alice's is untouched.
    let bobs = store
        .put(&bob(), put("iso/doc", &json!("bob's"), Expect::Absent))
        .await
        .expect("own");
    assert_eq!(bobs.version, 1);
    let alices = store
        .get(&alice(), "iso/doc")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(alices.value, secret);
    assert_eq!(alices.version, 1);
}

async fn limits_are_enforced_with_clear_errors(store: &dyn Store) {
    let value = json!(1);
    let long_key = "k".repeat(257);
    let cases = [
        ("", "key is empty"),
        (
            long_key.as_str(),
            "key is 257 bytes; at most 256 are allowed",
        ),
        ("tab\there", "key contains a control character"),
    ];
    for (key, message) in cases {
        let error = store
            .put(&alice(), put(key, &value, Expect::Any))
            .await
            .expect_err(message);
        assert_eq!(error.to_string(), message);
        assert!(error.is_caller_error());
    }
    assert!(
        store
            .put(&alice(), put(&"k".repeat(256), &value, Expect::Any))
            .await
            .is_ok()
    );
    let big = json!("x".repeat(MAX_DOCUMENT_BYTES));
    let error = store
        .put(&alice(), put("big", &big, Expect::Any))
        .await
        .expect_err("too big");
    assert_eq!(
        error.to_string(),
        format!(
            "document is {} bytes when serialized; at most 65536 are allowed",
            MAX_DOCUMENT_BYTES + 2
        )
    );
    assert_eq!(store.get(&alice(), "big").await.expect("get"), None);
}

async fn listing_pages_with_tamper_checked_cursors(store: &dyn Store) {
    for i in 0..7 {
        let key = format!("page/{i:02}");
        store
            .put(&alice(), put(&key, &json!(i), Expect::Any))
            .await
            .expect("put");
    }
    store
        .put(&alice(), put("pagf", &json!("outside prefix"), Expect::Any))
        .await
        .expect("put");
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(&alice(), "page/", cursor.as_deref(), 3)
            .await
            .expect("list");
        assert!(page.items.len() <= 3);
        keys.extend(page.items.into_iter().map(|doc| doc.key));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("page/{i:02}")).collect();
    assert_eq!(keys, expected);

    let first = store.list(&alice(), "page/", None, 3).await.expect("list");
    let cursor = first.next_cursor.expect("more pages");
    for bad in [format!("{cursor}x"), "garbage".to_owned(), String::new()] {
        let error = store
            .list(&alice(), "page/", Some(&bad), 3)
            .await
            .expect_err("tampered");
        assert!(matches!(error, StoreError::BadCursor), "{bad}: {error}");
    }
    // A cursor is bound to its principal and prefix.
    assert!(matches!(
        store.list(&bob(), "page/", Some(&cursor), 3).await,
        Err(StoreError::BadCursor)
    ));
    assert!(matches!(
        store.list(&alice(), "", Some(&cursor), 3).await,
        Err(StoreError::BadCursor)
    ));
}

async fn expired_documents_vanish(store: &dyn Store) {
    let value = json!("short-lived");
    let write = Put {
        key: "ttl",
        value: &value,
        expect: Expect::Any,
        ttl: Some(Duration::from_millis(1)),
    };
    let written = store.put(&alice(), write).await.expect("put");
    assert!(written.expires_at.is_some());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.get(&alice(), "ttl").await.expect("get"), None);
    assert!(
        store
            .list(&alice(), "ttl", None, 10)
            .await
            .expect("list")
            .items
            .is_empty()
    );
    // An expired document counts as absent: create-only succeeds and versions restart.
    let again = store
        .put(&alice(), put("ttl", &value, Expect::Absent))
        .await
        .expect("recreate");
    assert_eq!(again.version, 1);
    assert!(store.purge_expired().await.is_ok());
}

async fn expired_documents_count_as_absent_for_every_expectation(store: &dyn Store) {
    let value = json!("brief");
    let brief = |key| Put {
        key,
        value: &value,
        expect: Expect::Any,
        // Long enough for the second write to find the first one live.
        ttl: Some(Duration::from_millis(300)),
    };
    for key in ["exp/any", "exp/version", "exp/delete"] {
        let first = store.put(&alice(), brief(key)).await.expect("put");
        let second = store.put(&alice(), brief(key)).await.expect("put");
        assert_eq!((first.version, second.version), (1, 2));
    }
    tokio::time::sleep(Duration::from_millis(350)).await;

    // Any: the write lands and the version restarts; no expiry now means none.
    let revived = store
        .put(&alice(), put("exp/any", &value, Expect::Any))
        .await
        .expect("revive");
    assert_eq!((revived.version, revived.expires_at), (1, None));
    let read = store
        .get(&alice(), "exp/any")
        .await
        .expect("get")
        .expect("present");
    assert_eq!((read.version, read.expires_at), (1, None));
    let next = store
        .put(&alice(), put("exp/any", &value, Expect::Any))
        .await
        .expect("put");
    assert_eq!(next.version, 2);

    // Version: the expired version no longer matches anything.
    let stale = store
        .put(&alice(), put("exp/version", &value, Expect::Version(2)))
        .await
        .expect_err("expired");
    assert_eq!(
        stale.to_string(),
        "version conflict on `exp/version`: expected version 2, current is absent (no document)"
    );

    // Deletes see nothing to delete, and nothing to conflict with.
    assert!(
        !store
            .delete(&alice(), "exp/delete", Expect::Any)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete(&alice(), "exp/delete", Expect::Absent)
            .await
            .expect("delete")
    );
    let error = store
        .delete(&alice(), "exp/delete", Expect::Version(2))
        .await
        .expect_err("expired");
    assert!(
        matches!(error, StoreError::VersionConflict { current: None, .. }),
        "{error}"
    );
    // Delete expecting no document conflicts with a live one and leaves it.
    let error = store
        .delete(&alice(), "exp/any", Expect::Absent)
        .await
        .expect_err("live");
    assert_eq!(
        error.to_string(),
        "version conflict on `exp/any`: expected no document, current is version 2"
    );
    assert!(store.get(&alice(), "exp/any").await.expect("get").is_some());
}

async fn listing_skips_expired_documents_across_pages(store: &dyn Store) {
    // Every other document expires, so pages must be filled from further on.
    for i in 0..10 {
        let key = format!("mix/{i:02}");
        let value = json!(i);
        let write = Put {
            key: &key,
            value: &value,
            expect: Expect::Any,
            ttl: (i % 2 == 0).then_some(Duration::from_millis(1)),
        };
        store.put(&alice(), write).await.expect("put");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(&alice(), "mix/", cursor.as_deref(), 2)
            .await
            .expect("list");
        pages.push(
            page.items
                .into_iter()
                .map(|doc| doc.key)
                .collect::<Vec<_>>(),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        pages,
        [
            vec!["mix/01", "mix/03"],
            vec!["mix/05", "mix/07"],
            vec!["mix/09"]
        ]
    );
    // Out-of-range limits are clamped, never rejected.
    let all = store.list(&alice(), "mix/", None, 0).await.expect("list");
    assert_eq!(all.items.len(), 1);
    let all = store
        .list(&alice(), "mix/", None, 10_000)
        .await
        .expect("list");
    assert_eq!((all.items.len(), all.next_cursor), (5, None));
}

async fn deletes_honour_versions(store: &dyn Store) {
    let value = json!(true);
    store
        .put(&alice(), put("del", &value, Expect::Any))
        .await
        .expect("put");
    let error = store
        .delete(&alice(), "del", Expect::Version(9))
        .await
        .expect_err("stale");
    assert!(matches!(
        error,
        StoreError::VersionConflict {
            current: Some(1),
            ..
        }
    ));
    assert!(
        store
            .delete(&alice(), "del", Expect::Version(1))
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete(&alice(), "del", Expect::Any)
            .await
            .expect("again")
    );
    assert_eq!(store.get(&alice(), "del").await.expect("get"), None);
}

async fn sessions_round_trip_and_expire(store: &dyn Store) {
    let now = Utc::now();
    let record = SessionRecord {
        id: "session-1".into(),
        principal: alice(),
        init_params: json!({"protocolVersion": "2025-11-25"}),
        created_at: now,
        last_seen_at: now,
        expires_at: now + chrono::Duration::hours(1),
    };
    store.create_session(&record, 32).await.expect("create");
    let loaded = store
        .load_session("session-1")
        .await
        .expect("load")
        .expect("present");
    assert_eq!(loaded.principal, alice());
    assert_eq!(loaded.init_params, record.init_params);
    assert_eq!(
        loaded.expires_at.timestamp_millis(),
        record.expires_at.timestamp_millis()
    );

    let later = now + chrono::Duration::hours(2);
    store
        .touch_session(&alice(), "session-1", now, later)
        .await
        .expect("touch");
    let slid = store
        .load_session("session-1")
        .await
        .expect("load")
        .expect("present");
    assert_eq!(slid.expires_at.timestamp_millis(), later.timestamp_millis());

    let expired = SessionRecord {
        id: "session-old".into(),
        expires_at: now - chrono::Duration::seconds(1),
        ..record
    };
    store.create_session(&expired, 32).await.expect("create");
    assert_eq!(store.load_session("session-old").await.expect("load"), None);

    // Subscriptions: empty until set, kept beside the session, gone with it.
    let none = store.load_session_subscriptions("session-1").await;
    assert_eq!(none.expect("load"), Some(BTreeSet::new()));
    let uris = BTreeSet::from(["files:///a".to_owned(), "files:///b".to_owned()]);
    let set = store.set_session_subscriptions("session-1", &uris).await;
    assert!(set.expect("set"));
    let kept = store.load_session_subscriptions("session-1").await;
    assert_eq!(kept.expect("load"), Some(uris.clone()));
    store
        .touch_session(&alice(), "session-1", now, later)
        .await
        .expect("touch");
    let after_touch = store.load_session_subscriptions("session-1").await;
    assert_eq!(after_touch.expect("load"), Some(uris.clone()));
    for missing in ["session-old", "never-existed"] {
        let set = store.set_session_subscriptions(missing, &uris).await;
        assert!(!set.expect("set"), "{missing}");
        let loaded = store.load_session_subscriptions(missing).await;
        assert_eq!(loaded.expect("load"), None, "{missing}");
    }

    // Only its owner ends a session.
    store
        .delete_session(&bob(), "session-1")
        .await
        .expect("delete");
    assert!(
        store
            .load_session("session-1")
            .await
            .expect("load")
            .is_some()
    );
    store
        .delete_session(&alice(), "session-1")
        .await
        .expect("delete");
    assert_eq!(store.load_session("session-1").await.expect("load"), None);
    let gone = store.load_session_subscriptions("session-1").await;
    assert_eq!(gone.expect("load"), None);
    let set = store.set_session_subscriptions("session-1", &uris).await;
    assert!(!set.expect("set"), "a deleted session is not recreated");
    store
        .delete_session(&alice(), "never-existed")
        .await
        .expect("deleting unknown is fine");
}

fn session_of(principal: &Principal, id: &str, lifetime: chrono::Duration) -> SessionRecord {
    let now = Utc::now();
    SessionRecord {
        id: id.to_owned(),
        principal: principal.clone(),
        init_params: json!({"protocolVersion": "2025-11-25", "clientInfo": {"name": id}}),
        created_at: now,
        last_seen_at: now,
        expires_at: now + lifetime,
    }
}

const TOO_MANY_3: &str = "this caller already has 3 open sessions, the most allowed; end one it \
                          no longer needs (HTTP DELETE with its Mcp-Session-Id) or wait for one \
                          to expire";

/// A principal holds at most `limit` live sessions: the next is refused and not stored; an
/// expired or deleted one frees its place; other principals are not affected.
async fn sessions_are_capped_per_principal(store: &dyn Store) {
    let hour = chrono::Duration::hours(1);
    let carol = Principal::new("carol").expect("subject");
    let dave = Principal::new("dave").expect("subject");
    for id in ["carol-1", "carol-2", "carol-3"] {
        store
            .create_session(&session_of(&carol, id, hour), 3)
            .await
            .expect(id);
    }
    let refused = store
        .create_session(&session_of(&carol, "carol-4", hour), 3)
        .await
        .expect_err("over the cap");
    assert!(
        matches!(refused, StoreError::TooManySessions { limit: 3 }),
        "{refused}"
    );
    assert_eq!(refused.to_string(), TOO_MANY_3);
    assert!(refused.is_caller_error() && !refused.is_retryable());
    assert_eq!(store.load_session("carol-4").await.expect("load"), None);

    // Another principal's sessions are counted apart.
    store
        .create_session(&session_of(&dave, "dave-1", hour), 3)
        .await
        .expect("dave's first");
    // Storing a session again (same id) does not count it twice.
    store
        .create_session(&session_of(&carol, "carol-2", hour), 3)
        .await
        .expect("the same session again");
    // Another principal cannot end carol's session to make room for her.
    store
        .delete_session(&dave, "carol-1")
        .await
        .expect("delete");
    assert!(matches!(
        store
            .create_session(&session_of(&carol, "carol-4", hour), 3)
            .await,
        Err(StoreError::TooManySessions { limit: 3 })
    ));
    // Her own DELETE does.
    store
        .delete_session(&carol, "carol-1")
        .await
        .expect("delete");
    store
        .create_session(&session_of(&carol, "carol-4", hour), 3)
        .await
        .expect("a place was freed");
    assert!(store.load_session("carol-4").await.expect("load").is_some());

    // Expired sessions hold no place: one already expired when stored, one that expires.
    let erin = Principal::new("erin").expect("subject");
    let gone = chrono::Duration::milliseconds(-1);
    store
        .create_session(&session_of(&erin, "erin-old", gone), 3)
        .await
        .expect("expired");
    store
        .create_session(
            &session_of(&erin, "erin-1", chrono::Duration::seconds(1)),
            3,
        )
        .await
        .expect("short-lived");
    store
        .create_session(&session_of(&erin, "erin-2", hour), 3)
        .await
        .expect("second");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for id in ["erin-3", "erin-4"] {
        store
            .create_session(&session_of(&erin, id, hour), 3)
            .await
            .expect(id);
    }
    assert!(matches!(
        store
            .create_session(&session_of(&erin, "erin-5", hour), 3)
            .await,
        Err(StoreError::TooManySessions { limit: 3 })
    ));
    for id in ["erin-2", "erin-3", "erin-4"] {
        assert!(
            store.load_session(id).await.expect("load").is_some(),
            "{id}"
        );
    }
}

/// `initialize` params over the limit are refused with their size; nothing is stored, and no
/// place is taken.
async fn oversized_initialize_params_are_not_stored(store: &dyn Store) {
    let frank = Principal::new("frank").expect("subject");
    let hour = chrono::Duration::hours(1);
    // `{"pad":"…"}` is 10 bytes around its text.
    let sized = |bytes: usize| {
        let mut record = session_of(&frank, "frank-1", hour);
        record.init_params = json!({ "pad": "x".repeat(bytes - 10) });
        record
    };
    let error = store
        .create_session(&sized(MAX_INIT_PARAMS_BYTES + 1), 1)
        .await
        .expect_err("too large");
    assert_eq!(
        error.to_string(),
        "initialize params are 65537 bytes when serialized; a session keeps at most 65536"
    );
    assert!(error.is_caller_error());
    assert_eq!(store.load_session("frank-1").await.expect("load"), None);
    // The refusal took no place: with a limit of one, the largest allowed still fits.
    store
        .create_session(&sized(MAX_INIT_PARAMS_BYTES), 1)
        .await
        .expect("at the limit");
    let loaded = store
        .load_session("frank-1")
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(loaded.init_params.to_string().len(), MAX_INIT_PARAMS_BYTES);
}

/// Keys are compared in NFC: the composed and decomposed `café` are one document. Keys with
/// invisible formatting characters or bidirectional text controls are refused, and listing
/// prefixes follow the same rule.
async fn keys_have_one_spelling_and_nothing_invisible(store: &dyn Store) {
    let composed = "caf\u{00E9}";
    let decomposed = "caf\u{0065}\u{0301}";
    let bobs = json!("bob's café");
    store
        .put(&bob(), put(composed, &bobs, Expect::Any))
        .await
        .expect("bob's");

    let first = store
        .put(&alice(), put(decomposed, &json!(1), Expect::Absent))
        .await
        .expect("decomposed");
    assert_eq!((first.key.as_str(), first.version), (composed, 1));
    // The other spelling is the same document: no second one is created.
    let conflict = store
        .put(&alice(), put(composed, &json!(2), Expect::Absent))
        .await
        .expect_err("exists");
    assert_eq!(
        conflict.to_string(),
        "version conflict on `café`: expected no document, current is version 1"
    );
    let second = store
        .put(&alice(), put(composed, &json!(2), Expect::Version(1)))
        .await
        .expect("composed");
    assert_eq!((second.key.as_str(), second.version), (composed, 2));
    for spelling in [composed, decomposed] {
        let read = store
            .get(&alice(), spelling)
            .await
            .expect("get")
            .expect("present");
        assert_eq!((read.key.as_str(), read.value), (composed, json!(2)));
    }
    let listed = store
        .list(&alice(), decomposed, None, 10)
        .await
        .expect("list");
    let keys: Vec<&str> = listed.items.iter().map(|doc| doc.key.as_str()).collect();
    assert_eq!(keys, [composed]);

    let cases = [
        (
            "a\u{200D}b",
            "key contains U+200D, an invisible formatting character; remove it",
        ),
        (
            "\u{FEFF}bom",
            "key contains U+FEFF, an invisible formatting character; remove it",
        ),
        (
            "a\u{202E}txt.exe",
            "key contains U+202E, a bidirectional text control that can make a name display \
             differently from how it is stored; remove it",
        ),
    ];
    for (key, message) in cases {
        let refused = store
            .put(&alice(), put(key, &json!(0), Expect::Any))
            .await
            .expect_err(message);
        assert_eq!(refused.to_string(), message, "{key:?}");
        assert!(refused.is_caller_error());
        let read = store.get(&alice(), key).await.expect_err("get");
        assert_eq!(read.to_string(), message);
        let deleted = store
            .delete(&alice(), key, Expect::Any)
            .await
            .expect_err("delete");
        assert_eq!(deleted.to_string(), message);
    }
    let prefix = store
        .list(&alice(), "caf\u{2060}", None, 10)
        .await
        .expect_err("prefix");
    assert_eq!(
        prefix.to_string(),
        "prefix contains U+2060, an invisible formatting character; remove it"
    );

    assert!(
        store
            .delete(&alice(), decomposed, Expect::Version(2))
            .await
            .expect("delete")
    );
    assert_eq!(store.get(&alice(), composed).await.expect("get"), None);
    // Bob's document of the same name was never touched.
    let his = store
        .get(&bob(), decomposed)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (his.key.as_str(), his.value, his.version),
        (composed, bobs, 1)
    );
}

/// Eight creations of one principal's sessions at once against a limit of 3: exactly 3 are
/// stored.
async fn race_session_creations(store: Arc<dyn Store>) {
    let racer = Principal::new("session-racer").expect("subject");
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        let record = session_of(&racer, &format!("race-{i}"), chrono::Duration::hours(1));
        tokio::spawn(async move { (record.id.clone(), store.create_session(&record, 3).await) })
    });
    let mut created = Vec::new();
    for attempt in attempts {
        match attempt.await.expect("task") {
            (id, Ok(())) => created.push(id),
            (_, Err(StoreError::TooManySessions { limit: 3 })) => {}
            (id, Err(error)) => panic!("{id}: {error}"),
        }
    }
    assert_eq!(created.len(), 3, "{created:?}");
    let mut stored = 0;
    for i in 0..8 {
        stored += usize::from(
            store
                .load_session(&format!("race-{i}"))
                .await
                .expect("load")
                .is_some(),
        );
    }
    assert_eq!(stored, 3);
}

#[tokio::test]
async fn concurrent_session_creations_never_exceed_the_cap() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let Some(_postgres) = common::require_postgres().await else {
        return;
    };
    let (sqlite, _dir) = common::sqlite_store().await;
    let (postgres, _schema) = common::postgres_store().await;
    let dynamo: Arc<dyn Store> = Arc::new(common::dynamo_store().await);
    for store in [common::shared(sqlite), common::shared(postgres), dynamo] {
        race_session_creations(store).await;
    }
}

async fn the_mailbox_takes_one_answer_per_open_request(store: &dyn Store) {
    let session = uuid::Uuid::new_v4().to_string();
    let later = mailbox::expires_at_millis(Duration::from_secs(60));
    let answer = r#"{"jsonrpc":"2.0","id":0,"result":{}}"#;

    // Nothing is open yet: the answer is refused and nothing is kept.
    assert!(
        !store
            .post_answer(&session, "0", answer)
            .await
            .expect("post")
    );
    assert_eq!(store.load_answer(&session, "0").await.expect("load"), None);

    store
        .open_request(&session, "0", later)
        .await
        .expect("open");
    assert_eq!(store.load_answer(&session, "0").await.expect("load"), None);
    assert!(
        store
            .post_answer(&session, "0", answer)
            .await
            .expect("post")
    );
    // A second answer to the same request, or one to another id or session, is refused.
    assert!(!store.post_answer(&session, "0", "{}").await.expect("post"));
    assert!(
        !store
            .post_answer(&session, "1", answer)
            .await
            .expect("post")
    );
    assert!(
        !store
            .post_answer("another-session", "0", answer)
            .await
            .expect("post")
    );
    assert_eq!(
        store
            .load_answer(&session, "0")
            .await
            .expect("load")
            .as_deref(),
        Some(answer)
    );

    // Reopening a request id (a restored session counts its ids from 0 again) forgets the
    // old answer.
    store
        .open_request(&session, "0", later)
        .await
        .expect("reopen");
    assert_eq!(store.load_answer(&session, "0").await.expect("load"), None);

    store.close_request(&session, "0").await.expect("close");
    assert!(
        !store
            .post_answer(&session, "0", answer)
            .await
            .expect("post")
    );
    store
        .close_request(&session, "0")
        .await
        .expect("closing twice is fine");

    // An expired request takes no answer and shows none.
    let past = mailbox::expires_at_millis(Duration::ZERO) - 1_000;
    store.open_request(&session, "2", past).await.expect("open");
    assert!(
        !store
            .post_answer(&session, "2", answer)
            .await
            .expect("post")
    );
    assert_eq!(store.load_answer(&session, "2").await.expect("load"), None);
}

fn task(body: &str, version: u64) -> Option<TaskRecord> {
    Some(TaskRecord {
        body: body.to_owned(),
        version,
    })
}

async fn task_records_are_per_principal_and_compare_and_set(store: &dyn Store) {
    let id = uuid::Uuid::new_v4().to_string();
    let later = Utc::now().timestamp_millis() + 60_000;
    let (created, running) = (r#"{"status":"working"}"#, r#"{"status":"completed"}"#);

    assert!(
        store
            .create_task(&alice(), &id, created, later)
            .await
            .expect("create")
    );
    assert_eq!(
        store.load_task(&alice(), &id).await.expect("load"),
        task(created, 1)
    );
    // A live id is never created twice.
    assert!(
        !store
            .create_task(&alice(), &id, running, later)
            .await
            .expect("create again")
    );
    assert_eq!(
        store.load_task(&alice(), &id).await.expect("load"),
        task(created, 1)
    );

    // Another principal finds nothing under that id and cannot change it.
    assert_eq!(store.load_task(&bob(), &id).await.expect("load"), None);
    assert!(
        !store
            .replace_task(&bob(), &id, 1, running, later)
            .await
            .expect("replace")
    );
    assert_eq!(
        store.load_task(&alice(), &id).await.expect("load"),
        task(created, 1)
    );

    assert!(
        store
            .replace_task(&alice(), &id, 1, running, later)
            .await
            .expect("replace")
    );
    assert_eq!(
        store.load_task(&alice(), &id).await.expect("load"),
        task(running, 2)
    );
    // A writer that read version 1 lost the race.
    assert!(
        !store
            .replace_task(&alice(), &id, 1, created, later)
            .await
            .expect("stale replace")
    );
    assert_eq!(
        store.load_task(&alice(), &id).await.expect("load"),
        task(running, 2)
    );

    // An oversized body is refused before anything is written.
    let huge = format!(r#"{{"x":"{}"}}"#, "x".repeat(MAX_TASK_BYTES));
    assert!(matches!(
        store.replace_task(&alice(), &id, 2, &huge, later).await,
        Err(StoreError::DocumentTooLarge(_))
    ));
    assert_eq!(
        store.load_task(&alice(), &id).await.expect("load"),
        task(running, 2)
    );
    let big_id = uuid::Uuid::new_v4().to_string();
    assert!(matches!(
        store.create_task(&alice(), &big_id, &huge, later).await,
        Err(StoreError::DocumentTooLarge(_))
    ));
    assert_eq!(
        store.load_task(&alice(), &big_id).await.expect("load"),
        None
    );

    // An expired task is gone: unseen, unchangeable, and its id free again.
    let old_id = uuid::Uuid::new_v4().to_string();
    let past = Utc::now().timestamp_millis() - 1_000;
    assert!(
        store
            .create_task(&alice(), &old_id, created, past)
            .await
            .expect("create expired")
    );
    assert_eq!(
        store.load_task(&alice(), &old_id).await.expect("load"),
        None
    );
    assert!(
        !store
            .replace_task(&alice(), &old_id, 1, running, later)
            .await
            .expect("replace expired")
    );
    assert!(
        store
            .create_task(&alice(), &old_id, running, later)
            .await
            .expect("create over expired")
    );
    assert_eq!(
        store.load_task(&alice(), &old_id).await.expect("load"),
        task(running, 1)
    );
}

#[tokio::test]
async fn sqlite_store_passes_the_suite() {
    let (store, _dir) = common::sqlite_store().await;
    run_suite(&store).await;
}

#[tokio::test]
async fn postgres_store_passes_the_suite() {
    let Some(_postgres) = common::require_postgres().await else {
        return;
    };
    let (store, _schema) = common::postgres_store().await;
    run_suite(&store).await;
}

#[tokio::test]
async fn dynamo_store_passes_the_suite() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let store = common::dynamo_store().await;
    run_suite(&store).await;
}

/// Eight writers expect version 1 at once: exactly one may win.
async fn race_compare_and_set(store: Arc<dyn Store>) {
    let value = json!(0);
    store
        .put(&alice(), put("race", &value, Expect::Any))
        .await
        .expect("seed");
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let value = json!(i);
            store
                .put(&alice(), put("race", &value, Expect::Version(1)))
                .await
                .is_ok()
        })
    });
    let mut winners = 0;
    for attempt in attempts {
        winners += usize::from(attempt.await.expect("task"));
    }
    assert_eq!(winners, 1);
    let doc = store
        .get(&alice(), "race")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(doc.version, 2);
}

#[tokio::test]
async fn concurrent_compare_and_set_has_exactly_one_winner() {
    let Some(_postgres) = common::require_postgres().await else {
        return;
    };
    let (sqlite, _dir) = common::sqlite_store().await;
    let (postgres, _schema) = common::postgres_store().await;
    for store in [common::shared(sqlite), common::shared(postgres)] {
        race_compare_and_set(store).await;
    }
}

#[tokio::test]
async fn dynamo_failures_say_what_failed_and_whether_to_retry() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    use mcp_function::store::{
        SessionRecords, StateStore, cursor::CursorCodec, dynamo::DynamoStore,
    };

    // A table that does not exist: a mistake, not worth retrying.
    let missing = DynamoStore::new(
        common::dynamo_client(),
        format!("missing-{}", uuid::Uuid::new_v4().simple()),
        CursorCodec::new(common::TEST_KEY),
    );
    let error = missing.ping().await.expect_err("no table");
    assert!(
        matches!(
            &error,
            StoreError::Backend {
                backend: "DynamoDB",
                operation: "GetItem",
                retryable: false,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("ResourceNotFound"), "{error}");
    assert!(!error.is_retryable() && !error.is_caller_error());

    // Nothing listening: the call may succeed later.
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .retry_config(RetryConfig::disabled())
        .build();
    let unreachable = DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        "any",
        CursorCodec::new(common::TEST_KEY),
    );
    let error = unreachable
        .load_session("s")
        .await
        .expect_err("unreachable");
    assert!(error.is_retryable(), "{error}");
    assert!(
        error.to_string().starts_with("DynamoDB GetItem failed: "),
        "{error}"
    );
}

#[tokio::test]
async fn concurrent_compare_and_set_on_dynamo_has_exactly_one_winner() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    race_compare_and_set(Arc::new(common::dynamo_store().await)).await;
}
