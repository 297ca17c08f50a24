//! `sales-consumer audit` / `inventory-consumer audit`: reads the S3 layout and proves (or
//! disproves) exactly once. Per partition it walks the ledger and reports the offset
//! ranges accounted for, every gap and overlap between entries, ranges lost to retention,
//! objects the ledger names that are missing or whose counts disagree, and data objects
//! no entry names. With `--deep` it also reads every object and counts its lines. It
//! counts the resends the consumer removed and, from the identities the entries list, any
//! event stored twice within `DEDUP_WINDOW`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use store_event::EventId;

use crate::layout::Layout;
use crate::ledger::{Entry, ReadError, Store, StoreError, check_object, get_json, object_bucket};

/// What the audit found on one partition.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionReport {
    /// The partition.
    pub partition: i32,
    /// The first offset accounted for.
    pub from_offset: i64,
    /// One past the last offset accounted for.
    pub to_offset: i64,
    /// Ledger entries.
    pub entries: u64,
    /// Events stored.
    pub stored: u64,
    /// Dead letters.
    pub dead_lettered: u64,
    /// The other type's records.
    pub skipped: u64,
    /// Resends removed (valid events whose identity was stored before).
    pub duplicates: u64,
    /// Events stored again within `DEDUP_WINDOW` of their first copy, by the identities the
    /// entries list: each one a resend that got through.
    pub stored_twice: u64,
    /// Ranges no entry accounts for, `[from, to)`.
    pub gaps: Vec<(i64, i64)>,
    /// Ranges more than one entry accounts for, `[from, to)`.
    pub overlaps: Vec<(i64, i64)>,
    /// Ranges deleted by retention before they were read, `[from, to)`.
    pub lost: Vec<(i64, i64)>,
    /// Objects an entry names that are missing or disagree with it.
    pub bad_objects: Vec<String>,
    /// Data or dead-letter objects of this partition that no entry names.
    pub orphans: Vec<String>,
}

impl PartitionReport {
    /// Whether this partition shows exactly once.
    pub fn clean(&self) -> bool {
        self.gaps.is_empty()
            && self.overlaps.is_empty()
            && self.lost.is_empty()
            && self.bad_objects.is_empty()
            && self.orphans.is_empty()
            && self.stored_twice == 0
    }
}

/// What the audit found in the Iceberg table, read from its own metadata (the current
/// snapshot's manifests), against the ledger.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct TableReport {
    /// `namespace.table`.
    pub table: String,
    /// Live data files of the current snapshot.
    pub files: u64,
    /// Their rows.
    pub rows: u64,
    /// Per partition, the offset the table says it holds up to.
    pub offsets: BTreeMap<i32, i64>,
    /// Per partition, how far the migration brought the history before Iceberg in.
    pub migrated: BTreeMap<i32, i64>,
    /// Entries of that history with stored events the migration has not brought in yet.
    pub history_waiting: u64,
    /// The files the migration wrote for that history (named by no entry).
    #[serde(skip)]
    pub migrated_files: Vec<String>,
    /// Ledger entries with files past those offsets: written, waiting for the next commit
    /// (entries that stored nothing are not counted: the table lacks no row of theirs).
    pub waiting_entries: u64,
    /// Files of entries the table holds that it does not list.
    pub missing: Vec<String>,
    /// Files the table lists more than once (rows counted twice).
    pub twice: Vec<String>,
    /// Files the table lists that no ledger entry names, or holds past its offsets.
    pub extra: Vec<String>,
    /// Files whose row count in the table differs from their entry's.
    pub wrong_rows: Vec<String>,
    /// Whether the table's files were listed with the bucket's objects to find those no
    /// entry names (not when the table is outside the bucket: S3 Tables' storage).
    pub storage_listed: bool,
}

impl TableReport {
    /// Whether the table holds every entry up to its offsets exactly once, and nothing else.
    pub fn clean(&self) -> bool {
        self.missing.is_empty() && self.twice.is_empty() && self.extra.is_empty() && self.wrong_rows.is_empty()
    }

    fn render(&self, out: &mut String) {
        let offsets: Vec<String> = self.offsets.iter().map(|(p, o)| format!("{p}:{o}")).collect();
        let _ = writeln!(
            out,
            "iceberg table {}: {} files, {} rows; holds offsets up to {}; {} entries waiting; {}{}",
            self.table,
            self.files,
            self.rows,
            if offsets.is_empty() { "(nothing yet)".to_owned() } else { offsets.join(" ") },
            self.waiting_entries,
            if self.history_waiting > 0 {
                format!("{} entries from before Iceberg not migrated (run `migrate`); ", self.history_waiting)
            } else {
                String::new()
            },
            if self.clean() { "ok" } else { "PROBLEMS" }
        );
        if !self.storage_listed {
            let _ = writeln!(
                out,
                "           its storage is outside S3_BUCKET and not listed: files no entry names are S3 Tables' to \
                 remove (unreferenced file removal)"
            );
        }
        for (what, files) in [
            ("missing from the table", &self.missing),
            ("in the table twice", &self.twice),
            ("in the table, named by no entry it holds", &self.extra),
            ("row count differs", &self.wrong_rows),
        ] {
            for file in files {
                let _ = writeln!(out, "           {what}: {file}");
            }
        }
    }
}

/// The whole audit.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One report per partition with a ledger.
    pub partitions: Vec<PartitionReport>,
    /// The Iceberg table, when `iceberg` is a format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<TableReport>,
}

impl Report {
    /// Whether every partition, and the table, is clean.
    pub fn clean(&self) -> bool {
        self.partitions.iter().all(PartitionReport::clean) && self.table.as_ref().is_none_or(TableReport::clean)
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "partition  offsets                 entries    stored  dead_letters   skipped  duplicates  result\n",
        );
        for p in &self.partitions {
            let _ = writeln!(
                out,
                "{:>9}  {:>10}..{:<10}  {:>7}  {:>8}  {:>12}  {:>8}  {:>10}  {}",
                p.partition,
                p.from_offset,
                p.to_offset,
                p.entries,
                p.stored,
                p.dead_lettered,
                p.skipped,
                p.duplicates,
                if p.clean() { "ok" } else { "PROBLEMS" }
            );
            for (from, to) in &p.gaps {
                let _ = writeln!(out, "           gap: offsets {from}..{to} are accounted for by no entry");
            }
            for (from, to) in &p.overlaps {
                let _ = writeln!(out, "           overlap: offsets {from}..{to} are accounted for twice");
            }
            for (from, to) in &p.lost {
                let _ = writeln!(
                    out,
                    "           lost: offsets {from}..{to} were deleted by retention before they were read"
                );
            }
            for object in &p.bad_objects {
                let _ = writeln!(out, "           bad object: {object}");
            }
            for object in &p.orphans {
                let _ = writeln!(out, "           orphan: {object} is named by no ledger entry");
            }
            if p.stored_twice > 0 {
                let _ = writeln!(
                    out,
                    "           stored twice: {} events were stored again within DEDUP_WINDOW of their first copy \
                     (see consumer_dedup_forgotten_early_total)",
                    p.stored_twice
                );
            }
        }
        if self.partitions.is_empty() {
            out.push_str("no ledger found: nothing was consumed yet under this prefix\n");
        }
        if let Some(table) = &self.table {
            table.render(&mut out);
        }
        out
    }
}

/// Why the audit could not finish.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// S3 failed or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A ledger entry could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// An entry listed at the start was gone when it was read (deleted meanwhile).
    #[error("{0} disappeared during the audit")]
    Vanished(String),
    /// The Iceberg table could not be read.
    #[error("the Iceberg table cannot be read: {0}")]
    Lake(#[from] store_lake::LakeError),
}

/// Audits every partition of the consumer's ledger (and `lake`, its Iceberg table, when
/// given); `deep` reads every object; `window` is `DEDUP_WINDOW`, within which no event
/// may be stored twice.
pub async fn run(
    store: &dyn Store,
    layout: &Layout,
    deep: bool,
    window: Duration,
    lake: Option<&store_lake::Lake>,
) -> Result<Report, AuditError> {
    // What is read first is what a running consumer wrote least recently: its entries are
    // written before their objects, and their objects before the table's append of them.
    // So the table first, then the objects, then the ledger: every file of the snapshot
    // and every object listed has its entry in the ledger listed after (S3 lists are
    // strongly consistent). In the other order, a batch committed between two listings
    // would show its objects as named by no entry.
    let table = match lake {
        Some(lake) => Some(lake.contents().await?),
        None => None,
    };
    let mut objects: BTreeSet<String> = BTreeSet::new();
    // A table in the bucket has its files listed with the other objects, to find those no
    // entry names; an S3 Tables table's storage cannot be listed (and S3 Tables removes
    // the files no snapshot references itself).
    let listed = lake.filter(|lake| object_bucket(lake.location()) == Some(layout.bucket()));
    let lake_data = listed.map(|lake| format!("{}/data/", lake.location()));
    for prefix in [layout.data_root(), layout.parquet_root(), layout.dead_letter_root()].into_iter().chain(lake_data) {
        objects.extend(store.list(&prefix, None).await?);
    }
    let mut by_partition: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for key in store.list(&layout.ledger_root(), None).await? {
        if Layout::entry_offset(&key).is_none() {
            continue;
        }
        let partition =
            key.split('/').find_map(|segment| segment.strip_prefix("partition=")).and_then(|p| p.parse::<i32>().ok());
        if let Some(partition) = partition {
            by_partition.entry(partition).or_default().push(key);
        }
    }
    let mut report = Report::default();
    let mut all_entries = Vec::new();
    for (partition, keys) in by_partition {
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let entry: Entry = get_json(store, &key).await?.ok_or(AuditError::Vanished(key))?;
            entries.push(entry);
        }
        entries.sort_by_key(|e| e.first_offset);
        let mut partition_report = audit_partition(store, partition, &entries, &objects, deep).await?;
        partition_report.stored_twice = stored_twice(&entries, window);
        report.partitions.push(partition_report);
        all_entries.extend(entries);
    }
    if let (Some(lake), Some((state, files))) = (lake, table) {
        let mut table = audit_table(lake.name(), &state, &all_entries, &files);
        table.storage_listed = listed.is_some();
        // The migration's files are named by no entry (their entries predate Iceberg): the
        // table's audit accounts for them.
        for partition in &mut report.partitions {
            partition.orphans.retain(|key| !table.migrated_files.contains(key));
        }
        report.table = Some(table);
    }
    Ok(report)
}

/// Compares the table's live files with the ledger: every file of an entry below the
/// table's offset of its partition listed once with its rows, nothing else listed.
fn audit_table(
    name: String,
    state: &store_lake::TableState,
    entries: &[Entry],
    files: &[(String, u64)],
) -> TableReport {
    let offsets = &state.offsets;
    let mut report = TableReport {
        table: name,
        files: files.len() as u64,
        rows: files.iter().map(|(_, rows)| rows).sum(),
        offsets: offsets.clone(),
        migrated: state.migrated.clone(),
        ..TableReport::default()
    };
    let mut listed: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (path, rows) in files {
        let seen = listed.entry(path.as_str()).or_insert((0, *rows));
        seen.0 += 1;
    }
    let mut expected: BTreeSet<&str> = BTreeSet::new();
    // The migration's files are named like the live path's: by topic, partition and offset.
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for path in listed.keys() {
        by_name.entry(path.rsplit('/').next().unwrap_or(path)).or_default().push(path);
    }
    for entry in entries {
        let Some(lake_files) = &entry.lake_files else {
            // History from before Iceberg: in the table once the migration passed it, as
            // files whose rows add up to the entry's stored events.
            let migrated = state.migrated.get(&entry.partition).is_some_and(|&o| entry.next_offset <= o);
            if !migrated {
                let before_start = state.starts.get(&entry.partition).is_some_and(|&s| entry.next_offset <= s);
                report.history_waiting += u64::from(before_start && entry.stored > 0);
                continue;
            }
            let name = format!("{}+{}+{:020}.parquet", entry.topic, entry.partition, entry.first_offset);
            let paths = by_name.get(name.as_str()).cloned().unwrap_or_default();
            let rows: u64 = paths.iter().map(|p| listed[p].1 * listed[p].0).sum();
            expected.extend(paths.iter().copied());
            report.migrated_files.extend(paths.iter().map(|p| (*p).to_owned()));
            for path in paths.iter().filter(|p| listed[*p].0 > 1) {
                report.twice.push(format!("{path} ({} times)", listed[path].0));
            }
            if rows != entry.stored {
                let what = format!("{name} (migrated): {rows} rows in the table, {} in its entry", entry.stored);
                if paths.is_empty() { report.missing.push(what) } else { report.wrong_rows.push(what) }
            }
            continue;
        };
        let held = offsets.get(&entry.partition).is_some_and(|&o| entry.next_offset <= o);
        if !held {
            report.waiting_entries += u64::from(!lake_files.is_empty());
            continue;
        }
        for file in lake_files {
            expected.insert(&file.path);
            match listed.get(file.path.as_str()) {
                None => report.missing.push(file.path.clone()),
                Some((times, _)) if *times > 1 => report.twice.push(format!("{} ({times} times)", file.path)),
                Some((_, rows)) if *rows != file.rows => report
                    .wrong_rows
                    .push(format!("{}: {rows} rows in the table, {} in its entry", file.path, file.rows)),
                Some(_) => {}
            }
        }
    }
    report.extra = listed.keys().filter(|path| !expected.contains(*path)).map(|path| (*path).to_owned()).collect();
    report
}

async fn audit_partition(
    store: &dyn Store,
    partition: i32,
    entries: &[Entry],
    objects: &BTreeSet<String>,
    deep: bool,
) -> Result<PartitionReport, AuditError> {
    let mut report = PartitionReport { partition, ..PartitionReport::default() };
    let mut named: BTreeSet<&str> = BTreeSet::new();
    let mut expected: Option<i64> = None;
    for (index, entry) in entries.iter().enumerate() {
        report.entries += 1;
        report.stored += entry.stored;
        report.dead_lettered += entry.dead_lettered;
        report.skipped += entry.skipped;
        report.duplicates += entry.duplicates;
        match expected {
            None => report.from_offset = entry.first_offset,
            Some(at) if entry.first_offset > at => report.gaps.push((at, entry.first_offset)),
            Some(at) if entry.first_offset < at => {
                report.overlaps.push((entry.first_offset, at.min(entry.next_offset)))
            }
            Some(_) => {}
        }
        expected = Some(expected.map_or(entry.next_offset, |at| at.max(entry.next_offset)));
        if entry.lost {
            report.lost.push((entry.first_offset, entry.next_offset));
        }
        let newest = index + 1 == entries.len();
        for (key, count) in entry.objects() {
            named.insert(key);
            if newest {
                written_soon(store, key).await?;
            }
            if let Some(problem) = check_object(store, key, count, deep).await? {
                report.bad_objects.push(problem);
            }
        }
    }
    report.to_offset = expected.unwrap_or_default();
    let marker = format!("{}+{partition}+", entries.first().map(|e| e.topic.as_str()).unwrap_or_default());
    report.orphans = objects
        .iter()
        .filter(|key| key.rsplit('/').next().is_some_and(|name| name.starts_with(&marker)))
        .filter(|key| !named.contains(key.as_str()))
        .cloned()
        .collect();
    Ok(report)
}

/// How long the audit waits for an object of a partition's newest entry to appear.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(10);

/// Waits, up to [`IN_FLIGHT_WAIT`], for `key` to exist. Only a partition's newest entry may
/// lack objects: a running consumer writes them right after the entry (and retries while
/// S3 fails); a stopped one on its next start, from Kafka (recovery). An audit beside a
/// running consumer can read the entry in between, so a missing object of the newest
/// entry is looked for again before it is called missing.
async fn written_soon(store: &dyn Store, key: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
    while store.head(key).await?.is_none() && tokio::time::Instant::now() < deadline {
        tracing::info!(object = key, "the newest entry's object is not written yet; looking again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Events whose identity two entries written within `window` of each other list: stored
/// twice although resends are removed.
fn stored_twice(entries: &[Entry], window: Duration) -> u64 {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let mut last_stored: HashMap<EventId, DateTime<Utc>> = HashMap::new();
    let mut twice = 0;
    for (index, entry) in entries.iter().enumerate() {
        let Some(ids) = &entry.event_ids else { continue };
        let horizon = entry.written_at.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
        if index % 64 == 0 {
            last_stored.retain(|_, at| *at >= horizon);
        }
        for id in &ids.0 {
            if let Some(at) = last_stored.insert(*id, entry.written_at)
                && at >= horizon
            {
                twice += 1;
            }
        }
    }
    twice
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use futures::future::BoxFuture;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::dedup::EventIds;
    use crate::ledger::memory::{Fixture, MemoryStore, PARTITION};
    use crate::ledger::{GetError, Object, PutError};

    fn entry(first_offset: i64, minutes: i64, ids: &[u64]) -> Entry {
        let at = Utc.with_ymd_and_hms(2026, 12, 4, 0, 0, 0).single().unwrap_or_default();
        Entry {
            topic: "t".to_owned(),
            partition: 0,
            first_offset,
            next_offset: first_offset + 1,
            records: 1,
            stored: ids.len() as u64,
            dead_lettered: 0,
            skipped: 0,
            duplicates: 0,
            dt: None,
            data_key: None,
            parquet_key: None,
            dead_letter_key: None,
            lake_files: None,
            lost: false,
            event_ids: Some(EventIds(ids.iter().map(|n| EventId::of(*n, "r")).collect())),
            dedup_from: None,
            writer: "w".to_owned(),
            written_at: at + chrono::Duration::minutes(minutes),
        }
    }

    #[test]
    fn an_event_stored_twice_within_the_window_is_counted_and_fails_the_audit() {
        let hour = Duration::from_secs(3600);
        let entries = [entry(0, 0, &[1, 2]), entry(1, 30, &[3]), entry(2, 90, &[1]), entry(3, 100, &[3])];
        // 1 again after 90 min: past the window; 3 again after 70 min: past it too.
        assert_eq!(stored_twice(&entries, hour), 0);
        // With a 2 h window both are resends that got through.
        assert_eq!(stored_twice(&entries, 2 * hour), 2);
        let report =
            Report { partitions: vec![PartitionReport { stored_twice: 2, ..PartitionReport::default() }], table: None };
        assert!(!report.clean());
        assert!(report.render().contains("stored twice: 2 events"), "{}", report.render());
    }

    fn lake_entry(partition: i32, first_offset: i64, next_offset: i64, files: &[(&str, u64)]) -> Entry {
        let files = files
            .iter()
            .map(|(path, rows)| store_lake::LakeFile {
                path: (*path).to_owned(),
                day: chrono::NaiveDate::default(),
                rows: *rows,
                bytes: 1,
            })
            .collect();
        Entry { partition, first_offset, next_offset, lake_files: Some(files), ..entry(first_offset, 0, &[]) }
    }

    #[test]
    fn the_table_audit_names_missing_doubled_extra_and_miscounted_files_and_counts_waiting_entries() {
        let entries = [
            lake_entry(0, 0, 10, &[("a", 5), ("b", 3)]),
            lake_entry(0, 10, 20, &[]),
            lake_entry(0, 20, 30, &[("c", 4)]),
            lake_entry(1, 0, 10, &[("d", 7)]),
            // Past the table's offset of partition 1: waiting.
            lake_entry(1, 10, 20, &[("e", 2)]),
        ];
        let offsets =
            store_lake::TableState { offsets: BTreeMap::from([(0, 30), (1, 10)]), ..store_lake::TableState::default() };
        let files = |list: &[(&str, u64)]| list.iter().map(|(p, r)| ((*p).to_owned(), *r)).collect::<Vec<_>>();
        let clean = audit_table("t".to_owned(), &offsets, &entries, &files(&[("a", 5), ("b", 3), ("c", 4), ("d", 7)]));
        assert!(clean.clean(), "{clean:?}");
        assert_eq!((clean.files, clean.rows, clean.waiting_entries), (4, 19, 1));

        let bad = audit_table(
            "t".to_owned(),
            &offsets,
            &entries,
            &files(&[("a", 5), ("a", 5), ("c", 9), ("d", 7), ("e", 2), ("zz", 1)]),
        );
        assert!(!bad.clean());
        assert_eq!(bad.missing, vec!["b".to_owned()]);
        assert_eq!(bad.twice, vec!["a (2 times)".to_owned()]);
        assert_eq!(bad.wrong_rows, vec!["c: 9 rows in the table, 4 in its entry".to_owned()]);
        assert_eq!(bad.extra, vec!["e".to_owned(), "zz".to_owned()], "held past its offset, or named by no entry");
        let report = Report { partitions: Vec::new(), table: Some(bad) };
        assert!(!report.clean());
        assert!(report.render().contains("in the table twice: a (2 times)"), "{}", report.render());
    }

    /// A store beside which a consumer keeps committing: after each listing the next batch
    /// lands, its entry first, then its objects, as the writer writes them; the last
    /// batch's data objects land only once the audit has looked for each and missed it.
    struct Racing {
        inner: MemoryStore,
        batches: std::sync::Mutex<std::collections::VecDeque<Vec<(String, Object)>>>,
        late: std::sync::Mutex<Vec<(String, Object)>>,
    }

    impl Racing {
        fn land(&self, key: &str, object: &Object) {
            self.inner.insert(key, &object.body, object.metadata.clone());
        }
    }

    impl Store for Racing {
        fn put<'a>(&'a self, key: &'a str, object: &'a Object, if_absent: bool) -> BoxFuture<'a, Result<(), PutError>> {
            self.inner.put(key, object, if_absent)
        }

        fn head<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<HashMap<String, String>>, StoreError>> {
            let mut late = self.late.lock().unwrap();
            if let Some(at) = late.iter().position(|(k, _)| k == key) {
                let (key, object) = late.remove(at);
                self.land(&key, &object);
                return Box::pin(async { Ok(None) });
            }
            self.inner.head(key)
        }

        fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, GetError>> {
            self.inner.get(key)
        }

        fn list<'a>(
            &'a self,
            prefix: &'a str,
            start_after: Option<&'a str>,
        ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
            Box::pin(async move {
                let listed = self.inner.list(prefix, start_after).await;
                let mut batches = self.batches.lock().unwrap();
                if let Some(writes) = batches.pop_front() {
                    let mut writes = writes.into_iter();
                    if let Some((key, entry)) = writes.next() {
                        self.land(&key, &entry);
                    }
                    for (key, object) in writes {
                        if batches.is_empty() && !key.contains("_ledger/") {
                            self.late.lock().unwrap().push((key, object));
                        } else {
                            self.land(&key, &object);
                        }
                    }
                }
                listed
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_audit_beside_a_consumer_that_keeps_committing_finds_nothing_wrong() {
        let fixture = Fixture::new();
        let shutdown = CancellationToken::new();
        let mut writer = fixture.writer("w", &shutdown);
        for first in [0, 10, 20, 30] {
            assert_eq!(fixture.commit(&mut writer, first, 10).await.1, Ok(()));
        }
        // The writes in the order they happened, cut where the third batch's entry begins
        // and where the fourth's does.
        let puts = fixture.store.puts();
        let at = |first| puts.iter().position(|k| *k == fixture.layout.entry_key(PARTITION, first)).unwrap();
        let object = |key: &String| (key.clone(), fixture.store.object(key).unwrap());
        let racing = Racing {
            inner: MemoryStore::default(),
            batches: std::sync::Mutex::new(
                [&puts[at(20)..at(30)], &puts[at(30)..]].map(|writes| writes.iter().map(object).collect()).into(),
            ),
            late: std::sync::Mutex::default(),
        };
        for key in &puts[..at(20)] {
            let (key, object) = object(key);
            racing.land(&key, &object);
        }

        let report = run(&racing, &fixture.layout, true, Duration::from_secs(3600), None).await.unwrap();
        assert!(report.clean(), "{}", report.render());
        let partition = &report.partitions[0];
        assert_eq!((partition.entries, partition.to_offset), (4, 40), "every batch committed meanwhile is counted");
        assert!(racing.late.lock().unwrap().is_empty(), "the newest entry's objects were looked for again");

        // Had they never come, they would be missing.
        let objects: Vec<String> =
            racing.inner.keys().into_iter().filter(|k| k.contains("00000000000000000030")).collect();
        let newest: Vec<String> = objects.into_iter().filter(|k| !k.contains("_ledger")).collect();
        assert!(!newest.is_empty());
        newest.iter().for_each(|key| racing.inner.remove(key));
        let report = run(&racing, &fixture.layout, false, Duration::from_secs(3600), None).await.unwrap();
        assert!(!report.clean());
        assert_eq!(report.partitions[0].bad_objects.len(), newest.len(), "{}", report.render());
        assert!(report.render().contains("is missing"), "{}", report.render());
    }
}
