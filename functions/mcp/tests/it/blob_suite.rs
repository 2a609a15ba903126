//! One contract for every file store: the same suite runs against the local
//! folder backend and against S3 (an emulator at `MCP_TEST_AWS_ENDPOINT`).

use crate::common;

use bytes::Bytes;
use mcp_function::{
    blob::{
        BlobError, BlobMeta, BlobStore, MAX_BLOB_BYTES, local::LocalBlobs, principal_prefix,
        s3::S3Blobs,
    },
    principal::Principal,
    store::cursor::CursorCodec,
};

fn principal(subject: &str) -> Principal {
    Principal::new(subject).expect("valid subject")
}

async fn put(
    store: &dyn BlobStore,
    who: &Principal,
    key: &str,
    bytes: &[u8],
    ct: &str,
) -> BlobMeta {
    store
        .put(who, key, Bytes::copy_from_slice(bytes), ct)
        .await
        .unwrap_or_else(|error| panic!("put {key}: {error}"))
}

async fn keys(store: &dyn BlobStore, who: &Principal) -> Vec<String> {
    let page = store.list(who, None, 100).await.expect("list");
    page.items.into_iter().map(|meta| meta.key).collect()
}

async fn run_suite(store: &dyn BlobStore) {
    store.ping().await.expect("ping");
    round_trips_text_and_binary(store).await;
    lists_in_key_order_across_pages(store).await;
    cursors_are_tamper_checked_and_bound_to_their_principal(store).await;
    principals_never_see_each_other(store).await;
    invalid_paths_are_refused_and_nothing_is_written(store).await;
    too_large_files_and_bad_content_types_are_refused(store).await;
    overwriting_keeps_one_file(store).await;
    spellings_of_one_path_are_one_file(store).await;
}

async fn round_trips_text_and_binary(store: &dyn BlobStore) {
    let who = principal("round-trip");
    let text = "héllo, wörld\n".as_bytes();
    let written = put(
        store,
        &who,
        "notes/hello.txt",
        text,
        "text/plain; charset=utf-8",
    )
    .await;
    assert_eq!(
        (
            written.key.as_str(),
            written.size,
            written.content_type.as_str()
        ),
        (
            "notes/hello.txt",
            text.len() as u64,
            "text/plain; charset=utf-8"
        )
    );
    let read = store
        .get(&who, "notes/hello.txt")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read.bytes.as_ref(), text);
    assert_eq!(read.meta.content_type, "text/plain; charset=utf-8");
    assert_eq!(read.meta.size, text.len() as u64);

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    put(store, &who, "img/pixels.bin", &binary, "image/png").await;
    let read = store
        .get(&who, "img/pixels.bin")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read.bytes.as_ref(), binary.as_slice());
    assert_eq!(
        (read.meta.content_type.as_str(), read.meta.size),
        ("image/png", 70_000)
    );

    let empty = put(store, &who, "empty", b"", "application/octet-stream").await;
    assert_eq!(empty.size, 0);
    let read = store
        .get(&who, "empty")
        .await
        .expect("get")
        .expect("present");
    assert!(read.bytes.is_empty());

    assert!(store.get(&who, "missing.txt").await.expect("get").is_none());
    assert!(
        store.get(&who, "notes").await.expect("get").is_none(),
        "a folder is no file"
    );
}

async fn lists_in_key_order_across_pages(store: &dyn BlobStore) {
    let who = principal("lister");
    // Byte order differs from a folder-by-folder walk: "a-1" < "a.txt" < "a/b".
    let written = ["z z", "a/c/d", "b", "a.txt", "ü", "a/b", "a-1"];
    for (index, key) in written.iter().enumerate() {
        let content_type = if index % 2 == 0 {
            "text/plain"
        } else {
            "application/json"
        };
        put(store, &who, key, key.as_bytes(), content_type).await;
    }
    let mut expected: Vec<&str> = written.to_vec();
    expected.sort_unstable();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.list(&who, cursor.as_deref(), 3).await.expect("list");
        pages += 1;
        assert!(page.items.len() <= 3);
        for meta in &page.items {
            let index = written
                .iter()
                .position(|k| *k == meta.key)
                .expect("written key");
            let content_type = if index % 2 == 0 {
                "text/plain"
            } else {
                "application/json"
            };
            assert_eq!(meta.content_type, content_type, "{}", meta.key);
            assert_eq!(meta.size, meta.key.len() as u64, "{}", meta.key);
        }
        seen.extend(page.items.into_iter().map(|meta| meta.key));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    // A limit of 0 still makes progress; a huge one is capped.
    assert_eq!(
        store.list(&who, None, 0).await.expect("list").items.len(),
        1
    );
    let all = store.list(&who, None, u32::MAX).await.expect("list");
    assert_eq!((all.items.len(), all.next_cursor), (7, None));
}

async fn cursors_are_tamper_checked_and_bound_to_their_principal(store: &dyn BlobStore) {
    let owner = principal("cursor-owner");
    let other = principal("cursor-other");
    for key in ["1", "2", "3"] {
        put(store, &owner, key, b"x", "text/plain").await;
        put(store, &other, key, b"x", "text/plain").await;
    }
    let first = store.list(&owner, None, 1).await.expect("list");
    let cursor = first.next_cursor.expect("more pages");
    assert_eq!(
        store
            .list(&owner, Some(&cursor), 1)
            .await
            .expect("list")
            .items[0]
            .key,
        "2"
    );

    let (position, tag) = cursor.split_once('.').expect("cursor shape");
    let tampered = [
        format!("{position}.{}", tag.replace(|c: char| c != 'A', "A")),
        format!("Mg.{tag}"),
        format!("{cursor}x"),
        "garbage".to_owned(),
        String::new(),
    ];
    for bad in &tampered {
        assert!(
            matches!(
                store.list(&owner, Some(bad), 1).await,
                Err(BlobError::BadCursor)
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        store.list(&other, Some(&cursor), 1).await,
        Err(BlobError::BadCursor)
    ));
    // A state-store cursor for the same principal does not open a file listing.
    let state_cursor = CursorCodec::new(common::TEST_KEY).seal(&owner, "", "1");
    assert!(matches!(
        store.list(&owner, Some(&state_cursor), 1).await,
        Err(BlobError::BadCursor)
    ));
}

async fn principals_never_see_each_other(store: &dyn BlobStore) {
    let alice = principal("alice");
    let bob = principal("bob");
    put(store, &alice, "secret.txt", b"alice only", "text/plain").await;
    assert!(store.get(&bob, "secret.txt").await.expect("get").is_none());
    assert!(keys(store, &bob).await.is_empty());

    put(store, &alice, "same.txt", b"from alice", "text/plain").await;
    put(store, &bob, "same.txt", b"from bob", "text/markdown").await;
    let alices = store
        .get(&alice, "same.txt")
        .await
        .expect("get")
        .expect("present");
    let bobs = store
        .get(&bob, "same.txt")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (alices.bytes.as_ref(), alices.meta.content_type.as_str()),
        (b"from alice".as_slice(), "text/plain")
    );
    assert_eq!(
        (bobs.bytes.as_ref(), bobs.meta.content_type.as_str()),
        (b"from bob".as_slice(), "text/markdown")
    );
    assert_eq!(keys(store, &alice).await, ["same.txt", "secret.txt"]);
    assert_eq!(keys(store, &bob).await, ["same.txt"]);

    // Subjects that look like paths neither collide nor escape.
    let tricky = ["a", "a/..", "../a", "a/b", "a%2Fb", "files", ".."];
    for subject in tricky {
        put(
            store,
            &principal(subject),
            "who",
            subject.as_bytes(),
            "text/plain",
        )
        .await;
    }
    for subject in tricky {
        let blob = store
            .get(&principal(subject), "who")
            .await
            .expect("get")
            .expect("present");
        assert_eq!(blob.bytes.as_ref(), subject.as_bytes());
        assert_eq!(keys(store, &principal(subject)).await, ["who"]);
    }
}

async fn invalid_paths_are_refused_and_nothing_is_written(store: &dyn BlobStore) {
    let who = principal("invalid-paths");
    let dots = "it has a `.` or `..` segment; give a relative path such as notes/today.txt";
    let cases = [
        ("../x", dots),
        ("a/../../x", dots),
        ("./x", dots),
        (
            "/abs",
            "it starts with `/`; give a relative path such as notes/today.txt",
        ),
        ("a//b", "it has an empty segment (`//` or a trailing `/`)"),
        ("dir/", "it has an empty segment (`//` or a trailing `/`)"),
        ("a\\b", "it contains a backslash; separate folders with `/`"),
        ("a\u{0}b", "it contains a control character"),
        ("a\nb", "it contains a control character"),
        (
            "a\u{202E}txt.exe",
            "it contains U+202E, a bidirectional text control that can make a name display \
             differently from how it is stored; remove it",
        ),
        (
            "notes/\u{200D}x",
            "it contains U+200D, an invisible formatting character; remove it",
        ),
        (
            "..\u{2024}/x",
            "it contains U+2024, which looks like `.` but is another character; use `.` \
             itself or a different character",
        ),
        (
            "\u{FF0E}\u{FF0E}/etc",
            "it contains U+FF0E, which looks like `.` but is another character; use `.` \
             itself or a different character",
        ),
        (
            "a\u{2215}b",
            "it contains U+2215, which looks like `/` but is another character; use `/` \
             itself or a different character",
        ),
        (
            "",
            "it is empty; give a relative path such as notes/today.txt",
        ),
    ];
    let long = "x".repeat(513);
    for (key, reason) in cases
        .iter()
        .copied()
        .chain([(long.as_str(), "it is 513 bytes; at most 512 are allowed")])
    {
        match store
            .put(&who, key, Bytes::from_static(b"x"), "text/plain")
            .await
        {
            Err(BlobError::InvalidKey(got)) => assert_eq!(got, reason, "{key:?}"),
            other => panic!("{key:?} should be refused, got {other:?}"),
        }
        match store.get(&who, key).await {
            Err(BlobError::InvalidKey(got)) => assert_eq!(got, reason, "{key:?}"),
            other => panic!("{key:?} should be refused, got {other:?}"),
        }
    }
    assert!(keys(store, &who).await.is_empty());
    assert!(store.get(&who, "x").await.expect("get").is_none());
}

async fn too_large_files_and_bad_content_types_are_refused(store: &dyn BlobStore) {
    let who = principal("limits");
    let too_large = Bytes::from(vec![7u8; MAX_BLOB_BYTES + 1]);
    match store
        .put(&who, "big.bin", too_large, "application/octet-stream")
        .await
    {
        Err(BlobError::TooLarge { size, max }) => {
            assert_eq!((size, max), (MAX_BLOB_BYTES + 1, MAX_BLOB_BYTES));
        }
        other => panic!("too large should be refused, got {other:?}"),
    }
    for bad in ["", "text", "text/plain\r\nx-evil: 1", "no/pe/x y"] {
        assert!(
            matches!(
                store
                    .put(&who, "bad.txt", Bytes::from_static(b"x"), bad)
                    .await,
                Err(BlobError::InvalidContentType)
            ),
            "{bad:?}"
        );
    }
    assert!(keys(store, &who).await.is_empty());

    let largest = Bytes::from(vec![9u8; MAX_BLOB_BYTES]);
    let meta = store
        .put(&who, "largest.bin", largest, "application/octet-stream")
        .await
        .expect("exactly the limit is fine");
    assert_eq!(meta.size, MAX_BLOB_BYTES as u64);
    let read = store
        .get(&who, "largest.bin")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read.bytes.len(), MAX_BLOB_BYTES);
}

async fn overwriting_keeps_one_file(store: &dyn BlobStore) {
    let who = principal("overwriter");
    put(store, &who, "doc", b"first version", "text/plain").await;
    let second = put(store, &who, "doc", b"{\"v\":2}", "application/json").await;
    assert_eq!(second.size, 7);
    let page = store.list(&who, None, 10).await.expect("list");
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        (
            page.items[0].key.as_str(),
            page.items[0].size,
            page.items[0].content_type.as_str()
        ),
        ("doc", 7, "application/json")
    );
    let read = store.get(&who, "doc").await.expect("get").expect("present");
    assert_eq!(read.bytes.as_ref(), b"{\"v\":2}");
}

/// The composed and decomposed spellings of a path are one file, stored and listed composed.
async fn spellings_of_one_path_are_one_file(store: &dyn BlobStore) {
    let who = principal("spellings");
    let other = principal("spellings-neighbour");
    put(store, &other, "caf\u{00E9}.txt", b"neighbour", "text/plain").await;
    let first = put(
        store,
        &who,
        "caf\u{0065}\u{0301}.txt",
        b"first",
        "text/plain",
    )
    .await;
    assert_eq!(first.key, "caf\u{00E9}.txt");
    put(store, &who, "caf\u{00E9}.txt", b"second", "text/plain").await;
    assert_eq!(keys(store, &who).await, ["caf\u{00E9}.txt"]);
    for spelling in ["caf\u{00E9}.txt", "caf\u{0065}\u{0301}.txt"] {
        let read = store
            .get(&who, spelling)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(
            (read.meta.key.as_str(), read.bytes.as_ref()),
            ("caf\u{00E9}.txt", b"second".as_slice())
        );
    }
    let theirs = store
        .get(&other, "caf\u{0065}\u{0301}.txt")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(theirs.bytes.as_ref(), b"neighbour");
}

// ─── Local folder ───────────────────────────────────────────────────────────

fn local_store(dir: &tempfile::TempDir) -> LocalBlobs {
    LocalBlobs::new(dir.path().join("files"), CursorCodec::new(common::TEST_KEY))
}

#[tokio::test]
async fn local_blobs_pass_the_suite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir);
    assert_eq!(store.backend(), "local");
    run_suite(&store).await;
}

#[tokio::test]
async fn local_blobs_keep_plain_files_under_the_principal_prefix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir);
    let who = principal("a/../..");
    put(&store, &who, "notes/today.md", b"# hi", "text/markdown").await;
    let root = dir.path().join("files");
    let prefix = principal_prefix(&who);
    assert_eq!(
        std::fs::read(root.join(&prefix).join("notes/today.md")).expect("data file"),
        b"# hi"
    );
    let sidecar = std::fs::read_to_string(root.join(".meta").join(&prefix).join("notes/today.md"))
        .expect("sidecar");
    assert!(sidecar.contains("text/markdown"), "{sidecar}");
    let leftovers = std::fs::read_dir(root.join(".tmp"))
        .expect("tmp dir")
        .count();
    assert_eq!(leftovers, 0, "no temporary files stay behind");
    let mut top: Vec<String> = std::fs::read_dir(&root)
        .expect("root")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    top.sort();
    assert_eq!(top, [".meta".to_owned(), ".tmp".to_owned(), prefix]);
}

#[tokio::test]
async fn local_blobs_refuse_a_file_that_would_be_a_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = local_store(&dir);
    let who = principal("shapes");
    put(&store, &who, "a", b"file", "text/plain").await;
    match store
        .put(&who, "a/b", Bytes::from_static(b"x"), "text/plain")
        .await
    {
        Err(BlobError::InvalidKey(reason)) => assert_eq!(
            reason,
            "`a` is a file, so it cannot also be a folder; choose another path"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    put(&store, &who, "d/e", b"file", "text/plain").await;
    match store
        .put(&who, "d", Bytes::from_static(b"x"), "text/plain")
        .await
    {
        Err(BlobError::InvalidKey(reason)) => {
            assert_eq!(
                reason,
                "`d` is a folder of other files; choose another path"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(store.get(&who, "a/b").await.expect("get").is_none());
    assert_eq!(keys(&store, &who).await, ["a", "d/e"]);
}

// ─── S3 (emulator) ──────────────────────────────────────────────────────────

#[tokio::test]
async fn s3_blobs_pass_the_suite() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let client = common::s3_test_client();
    let bucket = common::s3_test_bucket(&client).await;
    let store = S3Blobs::new(
        client.clone(),
        bucket.clone(),
        "suite/".into(),
        CursorCodec::new(common::TEST_KEY),
    );
    assert_eq!(store.backend(), "s3");
    run_suite(&store).await;

    // Layout and encryption: <prefix>files/<principal prefix>/<path>, SSE-S3.
    let who = principal("layout");
    put(&store, &who, "dir/file.json", b"{}", "application/json").await;
    let key = format!("suite/files/{}/dir/file.json", principal_prefix(&who));
    let head = client
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .expect("object at the documented key");
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256)
    );
}

#[tokio::test]
async fn s3_blobs_report_a_missing_bucket() {
    let Some(_moto) = test_support::require_moto() else {
        return;
    };
    let store = S3Blobs::new(
        common::s3_test_client(),
        format!("mcp-missing-{}", uuid::Uuid::new_v4().simple()),
        String::new(),
        CursorCodec::new(common::TEST_KEY),
    );
    match store.ping().await {
        Err(
            error @ BlobError::Backend {
                operation: "ping",
                retryable: false,
                ..
            },
        ) => {
            assert!(!error.is_caller_error());
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    let who = principal("nobody");
    assert!(matches!(
        store.get(&who, "x").await,
        Err(BlobError::Backend {
            operation: "get",
            ..
        })
    ));
}
