//! `sales-consumer audit` / `inventory-consumer audit`: reads the S3 layout and proves (or
//! disproves) exactly once. Per partition it walks the ledger and reports the offset
//! ranges accounted for, every gap and overlap between entries, ranges lost to retention,
//! objects the ledger names that are missing or whose counts disagree, and data objects
//! no entry names. With `--deep` it also reads every object and counts its lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::layout::Layout;
use crate::ledger::{Entry, ReadError, Store, StoreError, check_object, get_json};

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
    }
}

/// The whole audit.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One report per partition with a ledger.
    pub partitions: Vec<PartitionReport>,
}

impl Report {
    /// Whether every partition is clean.
    pub fn clean(&self) -> bool {
        self.partitions.iter().all(PartitionReport::clean)
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out =
            String::from("partition  offsets                 entries    stored  dead_letters   skipped  result\n");
        for p in &self.partitions {
            let _ = writeln!(
                out,
                "{:>9}  {:>10}..{:<10}  {:>7}  {:>8}  {:>12}  {:>8}  {}",
                p.partition,
                p.from_offset,
                p.to_offset,
                p.entries,
                p.stored,
                p.dead_lettered,
                p.skipped,
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
        }
        if self.partitions.is_empty() {
            out.push_str("no ledger found: nothing was consumed yet under this prefix\n");
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
}

/// Audits every partition of the consumer's ledger; `deep` reads every object.
pub async fn run(store: &dyn Store, layout: &Layout, deep: bool) -> Result<Report, AuditError> {
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
    let mut objects: BTreeSet<String> = BTreeSet::new();
    for prefix in [layout.data_root(), layout.dead_letter_root()] {
        objects.extend(store.list(&prefix, None).await?);
    }
    let mut report = Report::default();
    for (partition, keys) in by_partition {
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let entry: Entry = get_json(store, &key).await?.ok_or(AuditError::Vanished(key))?;
            entries.push(entry);
        }
        entries.sort_by_key(|e| e.first_offset);
        report.partitions.push(audit_partition(store, partition, &entries, &objects, deep).await?);
    }
    Ok(report)
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
    for entry in entries {
        report.entries += 1;
        report.stored += entry.stored;
        report.dead_lettered += entry.dead_lettered;
        report.skipped += entry.skipped;
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
        for (key, count) in entry.objects() {
            named.insert(key);
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
