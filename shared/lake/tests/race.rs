//! Two writers appending the same ledger entries to one table at once, against the local
//! S3 server and a SQLite catalog: each entry's file ends up in the table exactly once,
//! whoever wins each commit, and an append repeated after its answer was lost adds nothing.
//!
//! With `STORE_EVENTS_TEST_S3TABLES_ARN` and `STORE_EVENTS_TEST_S3TABLES_ENDPOINT` (a table
//! bucket of an S3 Tables-speaking server that also serves its S3 storage), the same tests
//! run against Amazon S3 Tables' API instead, in a namespace of their own:
//! tests/interop/test_s3tables.py runs them so against moto's server.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a panic is how a test fails")]

use std::collections::BTreeMap;
use std::time::Duration;

use store_event::columnar::ParquetFile;
use store_event::{Document, Generator, check_fields};
use store_lake::{Batch, CatalogSettings, Lake, LakeError, LakeFile, LakeSettings, Offsets};

fn settings(prefix: &str) -> LakeSettings {
    let file_io = |endpoint: &str| {
        vec![
            ("s3.endpoint".to_owned(), endpoint.to_owned()),
            ("s3.region".to_owned(), "us-east-1".to_owned()),
            ("s3.path-style-access".to_owned(), "true".to_owned()),
            ("s3.access-key-id".to_owned(), testkit::ACCESS_KEY.to_owned()),
            ("s3.secret-access-key".to_owned(), testkit::SECRET_KEY.to_owned()),
        ]
    };
    let s3tables = std::env::var("STORE_EVENTS_TEST_S3TABLES_ARN")
        .ok()
        .zip(std::env::var("STORE_EVENTS_TEST_S3TABLES_ENDPOINT").ok());
    let (catalog, namespace, file_io) = match s3tables {
        Some((arn, endpoint)) => {
            let region = arn.split(':').nth(3).expect("a table bucket ARN").to_owned();
            let catalog = CatalogSettings::S3Tables { table_bucket_arn: arn, region, endpoint: Some(endpoint.clone()) };
            (catalog, prefix.replace('-', "_"), file_io(&endpoint))
        }
        None => {
            let dir = std::env::temp_dir().join("store-events-tests");
            std::fs::create_dir_all(&dir).expect("catalog directory");
            let catalog =
                CatalogSettings::Sql { uri: format!("sqlite:{}", dir.join(format!("{prefix}.db")).display()) };
            (catalog, "store_events".to_owned(), file_io(testkit::S3_ENDPOINT))
        }
    };
    LakeSettings {
        catalog,
        warehouse: format!("s3://{}/{prefix}/iceberg", testkit::BUCKET),
        namespace,
        table: "sale_events".to_owned(),
        commit_interval: Duration::from_secs(1),
        commit_max_files: 100,
        snapshot_max_age: Duration::from_secs(3600),
        file_io,
    }
}

async fn open(settings: &LakeSettings, writer: &str) -> Lake {
    let catalog = store_lake::connect(settings).await.expect("catalog");
    Lake::open(catalog, settings, "race-topic", writer).await.expect("table")
}

/// `count` entries per partition, 10 offsets each, one real Parquet file of 10 rows each.
async fn entries(lake: &Lake, partitions: i32, count: i64) -> Vec<Batch> {
    let mut generator = Generator::new(Some(5), 0.0);
    let mut batches = Vec::new();
    for partition in 0..partitions {
        for n in 0..count {
            let mut file = ParquetFile::new();
            let mut day = None;
            while file.rows() < 10 {
                let generated = generator.next_event(chrono::Utc::now());
                if generated.event.is_none() {
                    continue;
                }
                let text = generated.value.to_string();
                let document = Document::parse(text.as_bytes()).expect("a generated event parses");
                let fields = check_fields(&document).expect("a generated event is valid");
                day = Some(fields.ts.naive_utc().date());
                file.push(&fields, &document);
            }
            let day = day.expect("rows");
            let path = lake.file_path(day, partition, n * 10);
            let body = bytes::Bytes::from(file.finish(&[]));
            let size = body.len() as u64;
            lake.write_file(&path, body).await.expect("write a data file");
            batches.push(Batch {
                partition,
                first_offset: n * 10,
                next_offset: n * 10 + 10,
                files: vec![LakeFile { path, day, rows: 10, bytes: size }],
            });
        }
    }
    batches
}

/// Appends `batches` in chunks of `chunk`, planning again on every conflict; the number of
/// conflicts met.
async fn append_all(lake: &Lake, batches: &[Batch], chunk: usize) -> u32 {
    let starts: Offsets = (0..4).map(|p| (p, 0)).collect();
    let mut conflicts = 0;
    for part in batches.chunks(chunk) {
        loop {
            match lake.append(part, &starts, false).await {
                Ok(_) => break,
                Err(LakeError::Conflict(_)) => conflicts += 1,
                Err(error) => panic!("append failed: {error}"),
            }
        }
    }
    conflicts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_append_each_entry_once() {
    testkit::require_s3();
    let prefix = testkit::unique_name("race");
    let settings = settings(&prefix);
    let (a, b) = (open(&settings, "a").await, open(&settings, "b").await);
    let batches = entries(&a, 3, 12).await;
    // The same entries, B's in the reverse partition order: both race for every one.
    let mut reversed = batches.clone();
    reversed.sort_by_key(|b| (std::cmp::Reverse(b.partition), b.first_offset));
    let (conflicts_a, conflicts_b) = tokio::join!(append_all(&a, &batches, 3), append_all(&b, &reversed, 5));
    println!("conflicts: a {conflicts_a}, b {conflicts_b}");

    let files = a.data_files().await.expect("files");
    let mut times: BTreeMap<&str, usize> = BTreeMap::new();
    for (path, rows) in &files {
        *times.entry(path.as_str()).or_default() += 1;
        assert_eq!(*rows, 10);
    }
    assert_eq!(times.len(), batches.len(), "every entry's file is in the table");
    assert!(times.values().all(|&n| n == 1), "a file is in the table twice: {times:?}");
    let state = a.state().await.expect("state");
    assert_eq!(state.offsets, Offsets::from([(0, 120), (1, 120), (2, 120)]));
    assert_eq!(state.starts, Offsets::from([(0, 0), (1, 0), (2, 0)]));

    // A writer whose answer was lost appends the same entries again: nothing changes.
    let snapshots = a.load().await.expect("load").metadata().snapshots().count();
    let again = b.append(&batches, &Offsets::new(), true).await.expect("append again");
    assert_eq!(again.snapshot_id, None);
    assert_eq!(again.plan.present.len(), batches.len());
    assert_eq!(a.load().await.expect("load").metadata().snapshots().count(), snapshots);
    assert_eq!(a.data_files().await.expect("files").len(), batches.len());
}

/// Replicas starting together all find the table missing and create it: one wins, the
/// others (whose catalog may report a constraint violation rather than "already exists")
/// open the winner's table. A CI run caught a test reader racing a consumer this way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_creating_the_table_at_once_all_open_the_same_one() {
    testkit::require_s3();
    let prefix = testkit::unique_name("create");
    let settings = settings(&prefix);
    let opens = (0..6).map(|n| {
        let settings = settings.clone();
        tokio::spawn(async move {
            let catalog = store_lake::connect(&settings).await.expect("catalog");
            Lake::open(catalog, &settings, "race-topic", &format!("w{n}")).await
        })
    });
    let mut locations = std::collections::BTreeSet::new();
    for open in opens.collect::<Vec<_>>() {
        let lake = open.await.expect("task").unwrap_or_else(|error| panic!("a replica failed to open: {error}"));
        locations.insert(lake.location().to_owned());
    }
    assert_eq!(locations.len(), 1, "every replica uses the one table: {locations:?}");
}
