//! What a table holds of each partition, and which batches an append takes: pure, so that
//! the rule that makes appends exactly once is tested without a catalog.
//!
//! Every snapshot this project commits carries, in its summary, the Kafka offsets the
//! table holds up to for each partition of the topic (`store-events.offsets.<topic>`):
//! every ledger entry of partition `p` below `offsets[p]` has its rows in the table,
//! none at or above it does. The map is cumulative (each commit copies its parent's and
//! moves the partitions it appends), and a commit only succeeds against the snapshot it
//! was planned on (see [`crate::table`]), so two members racing for the same entries
//! cannot both append them: the loser plans again and finds them in.
//!
//! A partition the table has never seen starts at the offset recovery names (`start`):
//! the first ledger entry written with Iceberg on. Entries before it (a JSON lake from
//! before) are the migration's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One ledger entry to append: its offsets and the data files written for it (none when
/// the batch stored nothing: it still moves the partition's offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The partition.
    pub partition: i32,
    /// The entry's first offset.
    pub first_offset: i64,
    /// The entry's next offset.
    pub next_offset: i64,
    /// Its data files.
    pub files: Vec<LakeFile>,
}

/// One data file of a batch: the rows of one `day(ts)`, as the ledger entry names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LakeFile {
    /// Its full location (`s3://bucket/.../data/ts_day=2026-12-04/<topic>+<p>+<offset>.parquet`).
    pub path: String,
    /// The UTC date of every `ts` in it (the table's `day(ts)` partition).
    pub day: chrono::NaiveDate,
    /// Rows.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Per partition, the offset the table holds up to.
pub type Offsets = BTreeMap<i32, i64>;

/// What the table says about the topic: read from the newest snapshot that carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// `store-events.offsets.<topic>`: every entry below is in the table.
    pub offsets: Offsets,
    /// `store-events.starts.<topic>`: the offset each partition entered the table at
    /// (what came before is the migration's).
    pub starts: Offsets,
    /// `store-events.migrated.<topic>`: how far the migration has brought each partition's
    /// history (the entries before its start) into the table.
    pub migrated: Offsets,
}

/// What an append does with each batch given to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Appended now, in order (indices into the batches given).
    pub append: Vec<usize>,
    /// Already in the table (another member, or an earlier attempt whose answer was lost,
    /// committed them): dropped.
    pub present: Vec<usize>,
    /// Ahead of what the table holds of their partition: an entry before them is neither
    /// in the table nor in this append. Kept until it comes.
    pub waiting: Vec<usize>,
    /// Overlapping what the table holds without matching an entry boundary: the table and
    /// the ledger disagree. Never appended; the audit reports the partition.
    pub conflicting: Vec<usize>,
    /// The state after the append.
    pub state: TableState,
}

/// Plans an append of `batches` onto a table in `state`; `starts` gives, for partitions
/// the table does not hold yet, where they enter it.
pub fn plan(state: &TableState, starts: &Offsets, batches: &[Batch]) -> Plan {
    let mut order: Vec<usize> = (0..batches.len()).collect();
    order.sort_by_key(|&i| (batches[i].partition, batches[i].first_offset));
    let mut plan = Plan { state: state.clone(), ..Plan::default() };
    for i in order {
        let batch = &batches[i];
        let held = plan.state.offsets.get(&batch.partition).copied();
        let cursor = held.or_else(|| starts.get(&batch.partition).copied());
        match cursor {
            Some(cursor) if batch.next_offset <= cursor => plan.present.push(i),
            Some(cursor) if batch.first_offset == cursor => {
                if held.is_none() {
                    plan.state.starts.insert(batch.partition, cursor);
                }
                plan.state.offsets.insert(batch.partition, batch.next_offset);
                plan.append.push(i);
            }
            Some(cursor) if batch.first_offset > cursor => plan.waiting.push(i),
            // Not started and no start known: recovery has not registered the partition.
            None => plan.waiting.push(i),
            Some(_) => plan.conflicting.push(i),
        }
    }
    plan
}

/// The snapshot summary property of the offsets of `topic`.
pub fn offsets_property(topic: &str) -> String {
    format!("store-events.offsets.{topic}")
}

/// Plans an append of history: ledger entries before the partitions' starts, brought in by
/// the migration, each partition's from `firsts` (its first ledger entry) or from where the
/// migration stopped, in order. The live offsets and starts are carried unchanged.
pub fn plan_history(state: &TableState, firsts: &Offsets, batches: &[Batch]) -> Plan {
    let history = TableState { offsets: state.migrated.clone(), ..TableState::default() };
    let mut plan = plan(&history, firsts, batches);
    plan.state =
        TableState { offsets: state.offsets.clone(), starts: state.starts.clone(), migrated: plan.state.offsets };
    plan
}

/// The snapshot summary property of the migration's progress on `topic`.
pub fn migrated_property(topic: &str) -> String {
    format!("store-events.migrated.{topic}")
}

/// The snapshot summary property of the starts of `topic`.
pub fn starts_property(topic: &str) -> String {
    format!("store-events.starts.{topic}")
}

/// The snapshot summary property that lists the ledger entries of the snapshot.
pub const ENTRIES_PROPERTY: &str = "store-events.entries";

/// Offsets as the summary stores them: a JSON object of partition to offset, which
/// pyiceberg, Spark or DuckDB's `iceberg_snapshots` show as they are.
pub fn encode(offsets: &Offsets) -> String {
    let map: BTreeMap<String, i64> = offsets.iter().map(|(p, o)| (p.to_string(), *o)).collect();
    serde_json::to_string(&map).unwrap_or_default()
}

/// The reverse of [`encode`]; `None` when the text is not such an object.
pub fn decode(text: &str) -> Option<Offsets> {
    let map: BTreeMap<String, i64> = serde_json::from_str(text).ok()?;
    map.into_iter().map(|(p, o)| p.parse::<i32>().ok().map(|p| (p, o))).collect()
}

/// The entries of a snapshot as its summary lists them: `<partition>:<first>-<next>`, comma
/// separated, in partition and offset order.
pub fn entries_text(batches: &[&Batch]) -> String {
    let mut ranges: Vec<(i32, i64, i64)> =
        batches.iter().map(|b| (b.partition, b.first_offset, b.next_offset)).collect();
    ranges.sort_unstable();
    ranges.iter().map(|(p, f, n)| format!("{p}:{f}-{n}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(partition: i32, first_offset: i64, next_offset: i64) -> Batch {
        Batch { partition, first_offset, next_offset, files: Vec::new() }
    }

    fn state(offsets: &[(i32, i64)]) -> TableState {
        TableState { offsets: offsets.iter().copied().collect(), ..TableState::default() }
    }

    #[test]
    fn contiguous_entries_are_appended_in_order_and_move_the_offsets() {
        let batches = [batch(0, 100, 150), batch(1, 7, 9), batch(0, 50, 100)];
        let plan = plan(&state(&[(0, 50), (1, 7)]), &Offsets::new(), &batches);
        assert_eq!(plan.append, vec![2, 0, 1]);
        assert_eq!(plan.state.offsets, Offsets::from([(0, 150), (1, 9)]));
        assert!(plan.present.is_empty() && plan.waiting.is_empty() && plan.conflicting.is_empty());
    }

    #[test]
    fn entries_another_member_appended_are_dropped_never_appended_twice() {
        // Member B appended 0..100 of partition 0 while A held the same entries.
        let batches = [batch(0, 0, 40), batch(0, 40, 100), batch(0, 100, 120)];
        let plan = plan(&state(&[(0, 100)]), &Offsets::new(), &batches);
        assert_eq!(plan.present, vec![0, 1]);
        assert_eq!(plan.append, vec![2]);
        assert_eq!(plan.state.offsets[&0], 120);
    }

    #[test]
    fn an_entry_after_a_gap_waits_for_the_missing_one() {
        let plan = plan(&state(&[(0, 10)]), &Offsets::new(), &[batch(0, 20, 30)]);
        assert_eq!(plan.waiting, vec![0]);
        assert!(plan.append.is_empty());
        assert_eq!(plan.state.offsets[&0], 10, "a waiting entry does not move the offset");
    }

    #[test]
    fn a_new_partition_enters_at_its_start_and_the_start_is_recorded() {
        let starts = Offsets::from([(3, 500)]);
        let plan = plan(&TableState::default(), &starts, &[batch(3, 500, 510), batch(3, 510, 520)]);
        assert_eq!(plan.append, vec![0, 1]);
        assert_eq!(plan.state.starts, Offsets::from([(3, 500)]));
        assert_eq!(plan.state.offsets, Offsets::from([(3, 520)]));
        // Without a start the partition is not known yet: nothing may decide it.
        let unknown = super::plan(&TableState::default(), &Offsets::new(), &[batch(3, 500, 510)]);
        assert_eq!(unknown.waiting, vec![0]);
        // An entry before the start is history (the migration's), not the live path's.
        let before = super::plan(&TableState::default(), &starts, &[batch(3, 400, 500)]);
        assert_eq!(before.present, vec![0]);
    }

    #[test]
    fn an_entry_straddling_the_table_offset_is_a_conflict() {
        let plan = plan(&state(&[(0, 25)]), &Offsets::new(), &[batch(0, 20, 30)]);
        assert_eq!(plan.conflicting, vec![0]);
        assert_eq!(plan.state.offsets[&0], 25);
    }

    #[test]
    fn the_state_carries_partitions_the_append_does_not_touch() {
        let plan = plan(&state(&[(0, 5), (9, 1_000)]), &Offsets::new(), &[batch(0, 5, 6)]);
        assert_eq!(plan.state.offsets, Offsets::from([(0, 6), (9, 1_000)]));
    }

    #[test]
    fn history_moves_the_migration_cursor_and_leaves_the_live_offsets_alone() {
        let live = TableState {
            offsets: Offsets::from([(0, 500)]),
            starts: Offsets::from([(0, 300)]),
            migrated: Offsets::from([(0, 100)]),
        };
        let batches = [batch(0, 0, 50), batch(0, 50, 100), batch(0, 100, 200), batch(0, 250, 300)];
        let plan = plan_history(&live, &Offsets::from([(0, 0)]), &batches);
        assert_eq!(plan.present, vec![0, 1], "migrated before: not again");
        assert_eq!(plan.append, vec![2]);
        assert_eq!(plan.waiting, vec![3]);
        assert_eq!(plan.state.migrated, Offsets::from([(0, 200)]));
        assert_eq!((plan.state.offsets, plan.state.starts), (live.offsets, live.starts));
        // A partition never migrated starts at its first ledger entry.
        let fresh = plan_history(&TableState::default(), &Offsets::from([(1, 7)]), &[batch(1, 7, 9)]);
        assert_eq!(fresh.append, vec![0]);
        assert_eq!(fresh.state.migrated, Offsets::from([(1, 9)]));
    }

    #[test]
    fn offsets_round_trip_through_the_summary_text() {
        let offsets = Offsets::from([(0, 12), (10, 3), (2, 0)]);
        let text = encode(&offsets);
        assert_eq!(text, r#"{"0":12,"10":3,"2":0}"#);
        assert_eq!(decode(&text), Some(offsets));
        assert_eq!(decode("not json"), None);
        assert_eq!(decode(r#"{"x":1}"#), None);
        let (a, b) = (batch(1, 0, 5), batch(0, 3, 9));
        assert_eq!(entries_text(&[&a, &b]), "0:3-9,1:0-5");
    }
}
