//! Removing resends: a store whose connection dropped before the producer's answer sends
//! the same event again, and Kafka holds both copies at different offsets. The ledger makes
//! every offset count once; this makes every event ([`EventId`]: its store and
//! `request_id`) count once within a window.
//!
//! The producer keys a store's records by its id, so every copy of an event lands in the
//! same partition (while the partition count stays the same), and one partition loop sees
//! them all. Each loop keeps the identities it stored in the last `DEDUP_WINDOW`
//! ([`Seen`]); a valid event whose identity is there is accounted for as a duplicate and
//! not stored.
//!
//! The state is recoverable from S3 alone, and exact across crashes: every ledger entry
//! lists the identities its batch stored ([`EventIds`]) and the first offset of the oldest
//! entry still in the window (`dedup_from`). Recovery reads the entries from there to the
//! last one ([`load`]); a batch that is written again keeps the events its entry lists
//! ([`Replay`]), so its objects are the same bytes whatever happened in between.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use store_event::EventId;

use crate::layout::Layout;
use crate::ledger::{Entry, ReadError, Store, StoreError, get_json};

/// How many ledger entries recovery reads at a time.
const LOAD_CONCURRENCY: usize = 16;

/// Settings of resend removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupSettings {
    /// `DEDUP_WINDOW`: how long a stored event's identity is remembered; zero turns
    /// removal off (and entries then list no identities).
    pub window: Duration,
    /// `DEDUP_MAX_IDS`: the most identities one partition remembers; past it the oldest
    /// batches are forgotten early (counted).
    pub max_ids: usize,
}

impl DedupSettings {
    /// Whether resends are removed.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }
}

impl Default for DedupSettings {
    fn default() -> DedupSettings {
        DedupSettings { window: Duration::from_secs(24 * 3600), max_ids: 1_000_000 }
    }
}

/// The identities of a batch's stored events, in the order stored; in a ledger entry, one
/// base64 string of their 16-byte digests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventIds(pub Vec<EventId>);

impl Serialize for EventIds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = self.0.iter().flat_map(|id| id.0).collect();
        serializer.serialize_str(&BASE64.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for EventIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<EventIds, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = BASE64.decode(text.as_bytes()).map_err(serde::de::Error::custom)?;
        if bytes.len() % EventId::LEN != 0 {
            return Err(serde::de::Error::custom(format!(
                "{} bytes of event ids is not a multiple of {}",
                bytes.len(),
                EventId::LEN
            )));
        }
        let ids = bytes
            .chunks_exact(EventId::LEN)
            .map(|chunk| {
                let mut id = [0; EventId::LEN];
                id.copy_from_slice(chunk);
                EventId(id)
            })
            .collect();
        Ok(EventIds(ids))
    }
}

/// Decides, for each valid event of a batch in offset order, whether it is the first copy
/// (stored) or a resend (removed).
pub trait Resends {
    /// True for the first copy of `id`.
    fn first_copy(&mut self, id: EventId) -> bool;
}

/// Removal off: every event is a first copy.
pub struct KeepAll;

impl Resends for KeepAll {
    fn first_copy(&mut self, _id: EventId) -> bool {
        true
    }
}

/// Writing a batch again: the first copy of each identity its entry lists is stored, and
/// nothing else, so the objects come out as they were first written.
pub struct Replay(HashSet<EventId>);

impl Replay {
    /// The replay of an entry's identities; `None` (an entry written without them, before
    /// removal existed or with it off) keeps every event.
    pub fn of(ids: Option<&EventIds>) -> Box<dyn Resends + Send> {
        match ids {
            Some(ids) => Box::new(Replay(ids.0.iter().copied().collect())),
            None => Box::new(KeepAll),
        }
    }
}

impl Resends for Replay {
    fn first_copy(&mut self, id: EventId) -> bool {
        self.0.remove(&id)
    }
}

/// Identities per chunk of a [`Log`] (16 KiB).
const CHUNK: usize = 1024;

/// The identities a [`Seen`] remembers, oldest first, each at a position: a number one
/// greater than the last one's, wrapping at 2^32 (a window holds at most `DEDUP_MAX_IDS`,
/// 10^9, plus a batch). Fixed-size chunks: it grows without copying what it holds, and
/// gives memory back as the oldest identities go.
#[derive(Default)]
struct Log {
    chunks: VecDeque<Box<[EventId]>>,
    /// Where the oldest identity is in the first chunk.
    head: usize,
    len: usize,
    /// The oldest identity's position.
    first: u32,
}

impl Log {
    /// The position the next identity gets.
    fn end(&self) -> u32 {
        self.first.wrapping_add(self.len as u32)
    }

    fn push(&mut self, id: EventId) {
        let slot = self.head + self.len;
        if slot == self.chunks.len() * CHUNK {
            self.chunks.push_back(vec![EventId([0; EventId::LEN]); CHUNK].into_boxed_slice());
        }
        if let Some(place) = self.chunks.get_mut(slot / CHUNK).and_then(|chunk| chunk.get_mut(slot % CHUNK)) {
            *place = id;
            self.len += 1;
        }
    }

    fn get(&self, position: u32) -> Option<&EventId> {
        let index = position.wrapping_sub(self.first) as usize;
        if index >= self.len {
            return None;
        }
        let slot = self.head + index;
        self.chunks.get(slot / CHUNK)?.get(slot % CHUNK)
    }

    /// Takes the oldest identity, with its position.
    fn pop(&mut self) -> Option<(u32, EventId)> {
        if self.len == 0 {
            return None;
        }
        let id = *self.chunks.front()?.get(self.head)?;
        let position = self.first;
        self.first = self.first.wrapping_add(1);
        self.len -= 1;
        self.head += 1;
        if self.head == CHUNK {
            self.chunks.pop_front();
            self.head = 0;
        }
        Some((position, id))
    }
}

/// One remembered batch.
#[derive(Debug)]
struct Remembered {
    first_offset: i64,
    written_at: DateTime<Utc>,
    /// The position after its last identity's.
    end: u32,
}

/// What one partition remembers: the identities stored by the batches written in the
/// last window, and those of the batch being filled.
///
/// They are kept once, in the order stored, in a [`Log`] (16 bytes each), and found through
/// a table of their positions in it (4 bytes each, in a table at most 7/8 full): about 27
/// bytes per identity, where a map from identity to batch, with each batch's own list, took
/// about 70 (`cargo run --release -p store-consumer --example dedup_window` measures it).
/// A stored event costs one lookup-and-insert, and one removal when its batch is forgotten.
/// The hasher is foldhash's, seeded per process: fast, and a client cannot choose request
/// ids whose digests pile up in one bucket.
pub struct Seen {
    settings: DedupSettings,
    hasher: foldhash::fast::RandomState,
    /// The identities of the remembered batches, oldest first, then the open batch's.
    log: Log,
    /// The position of each identity in the log; the later one when recovery read one
    /// identity in two entries.
    table: HashTable<u32>,
    /// Oldest first.
    batches: VecDeque<Remembered>,
    /// Batches forgotten before their window ended, to stay within `max_ids`.
    forgotten_early: u64,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seen")
            .field("settings", &self.settings)
            .field("identities", &self.table.len())
            .field("batches", &self.batches.len())
            .field("forgotten_early", &self.forgotten_early)
            .finish_non_exhaustive()
    }
}

impl Resends for Seen {
    fn first_copy(&mut self, id: EventId) -> bool {
        if !self.settings.enabled() {
            return true;
        }
        let position = self.log.end();
        match self.slot(id) {
            Slot::Occupied(_) => false,
            Slot::Vacant(slot) => {
                slot.insert(position);
                self.log.push(id);
                true
            }
        }
    }
}

impl Seen {
    /// Nothing remembered yet.
    pub fn new(settings: DedupSettings) -> Seen {
        Seen {
            settings,
            hasher: foldhash::fast::RandomState::default(),
            log: Log::default(),
            table: HashTable::new(),
            batches: VecDeque::new(),
            forgotten_early: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> DedupSettings {
        self.settings
    }

    /// Identities remembered.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Batches forgotten early so far (to stay within `DEDUP_MAX_IDS`).
    pub fn forgotten_early(&self) -> u64 {
        self.forgotten_early
    }

    /// The first offset of the oldest batch remembered: where recovery starts reading.
    pub fn window_start(&self) -> Option<i64> {
        self.batches.front().map(|b| b.first_offset)
    }

    /// Closes the open batch (the identities [`Resends::first_copy`] let through since the
    /// last one closed) as the batch `first_offset`, written at `written_at`, and forgets
    /// what fell out of the window.
    pub fn remember(&mut self, first_offset: i64, written_at: DateTime<Utc>) {
        if !self.settings.enabled() {
            return;
        }
        let (start, end) = (self.batches.back().map_or(self.log.first, |b| b.end), self.log.end());
        if start != end {
            self.batches.push_back(Remembered { first_offset, written_at, end });
        }
        self.expire(written_at);
    }

    /// Remembers a batch read back from its ledger entry, as [`Seen::remember`] did when
    /// it was written.
    pub fn restore(&mut self, first_offset: i64, written_at: DateTime<Utc>, ids: &[EventId]) {
        if self.settings.enabled() {
            for id in ids {
                let position = self.log.end();
                match self.slot(*id) {
                    Slot::Occupied(mut slot) => *slot.get_mut() = position,
                    Slot::Vacant(slot) => {
                        slot.insert(position);
                    }
                }
                self.log.push(*id);
            }
        }
        self.remember(first_offset, written_at);
    }

    /// Forgets the batches written more than a window before `now`, then the oldest ones
    /// while more than `max_ids` identities are remembered.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        let window = chrono::Duration::from_std(self.settings.window).unwrap_or(chrono::Duration::MAX);
        let horizon = now.checked_sub_signed(window).unwrap_or(DateTime::<Utc>::MIN_UTC);
        while self.batches.front().is_some_and(|b| b.written_at < horizon) {
            self.forget_oldest();
        }
        while self.table.len() > self.settings.max_ids && self.batches.len() > 1 {
            self.forget_oldest();
            self.forgotten_early += 1;
        }
    }

    /// The table's slot for `id`.
    fn slot(&mut self, id: EventId) -> Slot<'_, u32> {
        let (log, hasher) = (&self.log, &self.hasher);
        let rehash = |position: &u32| log.get(*position).map_or(0, |id| hasher.hash_one(id));
        self.table.entry(hasher.hash_one(id), |position| log.get(*position) == Some(&id), rehash)
    }

    fn forget_oldest(&mut self) {
        let Some(batch) = self.batches.pop_front() else { return };
        while self.log.first != batch.end {
            let Some((position, id)) = self.log.pop() else { break };
            // An identity stored again after its batch was forgotten early, or read back in
            // a later entry too, belongs to the later batch.
            if let Ok(slot) = self.table.find_entry(self.hasher.hash_one(id), |p| *p == position) {
                slot.remove();
            }
        }
    }
}

/// Why the window could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// S3 failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An entry could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Reads back what partition `partition` remembered when it wrote `last`: the identities
/// of the entries from `last.dedup_from` to `last` still in the window at `now`.
pub async fn load(
    store: &dyn Store,
    layout: &Layout,
    partition: i32,
    last: &Entry,
    settings: DedupSettings,
    now: DateTime<Utc>,
) -> Result<Seen, LoadError> {
    let mut seen = Seen::new(settings);
    if !settings.enabled() {
        return Ok(seen);
    }
    let from = last.dedup_from.unwrap_or(last.first_offset);
    let mut keys = Vec::new();
    if from < last.first_offset {
        let after = layout.entry_key(partition, from - 1);
        keys = store.list(&layout.ledger_prefix(partition), Some(&after)).await?;
        keys.retain(|k| Layout::entry_offset(k).is_some_and(|offset| offset < last.first_offset));
    }
    let earlier: Vec<Option<Entry>> = futures::stream::iter(keys)
        .map(|key| async move { get_json::<Entry>(store, &key).await })
        .buffered(LOAD_CONCURRENCY)
        .try_collect()
        .await?;
    for entry in earlier.iter().flatten().chain(std::iter::once(last)) {
        if let Some(ids) = &entry.event_ids {
            seen.restore(entry.first_offset, entry.written_at, &ids.0);
        }
    }
    seen.expire(now);
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::TimeZone;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::ledger::memory::{Fixture, PARTITION};
    use crate::ledger::recovery;

    fn id(n: u64) -> EventId {
        EventId::of(n, "r")
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, 0, 0, 0).single().unwrap_or_default() + chrono::Duration::minutes(minutes)
    }

    fn seen(window_minutes: u64, max_ids: usize) -> Seen {
        Seen::new(DedupSettings { window: Duration::from_secs(window_minutes * 60), max_ids })
    }

    #[test]
    fn a_resend_in_the_same_or_a_later_batch_is_not_a_first_copy() {
        let mut seen = seen(60, 100);
        assert!(seen.first_copy(id(1)));
        assert!(!seen.first_copy(id(1)), "the same batch");
        assert!(seen.first_copy(id(2)));
        seen.remember(0, at(0));
        assert!(!seen.first_copy(id(1)), "a later batch");
        assert!(!seen.first_copy(id(2)));
        assert!(seen.first_copy(id(3)));
        assert_eq!((seen.len(), seen.window_start()), (3, Some(0)), "the open batch's identity counts too");
    }

    #[test]
    fn identities_are_forgotten_a_window_after_their_batch_was_written() {
        let mut seen = seen(60, 100);
        seen.restore(0, at(0), &[id(1)]);
        seen.restore(10, at(30), &[id(2)]);
        seen.restore(20, at(60), &[id(3)]);
        assert!(!seen.first_copy(id(1)), "exactly one window later: still remembered");
        seen.restore(30, at(61), &[]);
        assert!(seen.first_copy(id(1)), "past the window");
        assert!(!seen.first_copy(id(2)));
        assert_eq!(seen.window_start(), Some(10));
        assert_eq!(seen.forgotten_early(), 0);
    }

    #[test]
    fn past_max_ids_the_oldest_batches_go_first_and_are_counted() {
        let mut seen = seen(60, 3);
        seen.restore(0, at(0), &[id(1), id(2)]);
        seen.restore(2, at(1), &[id(3), id(4)]);
        assert_eq!((seen.len(), seen.window_start(), seen.forgotten_early()), (2, Some(2), 1));
        assert!(seen.first_copy(id(1)));
        // One batch larger than the limit is kept whole: its own resends are still removed.
        seen.restore(4, at(2), &[id(1), id(5), id(6), id(7)]);
        assert_eq!((seen.len(), seen.window_start()), (4, Some(4)));
    }

    #[test]
    fn an_identity_in_two_remembered_batches_stays_until_the_later_one_goes() {
        // Recovery can read one identity in two entries when a run forgot the first batch
        // early (DEDUP_MAX_IDS) and stored the event again.
        let mut seen = seen(60, 100);
        seen.restore(0, at(0), &[id(1)]);
        seen.restore(1, at(30), &[id(2)]);
        seen.restore(2, at(40), &[id(1)]);
        seen.restore(3, at(61), &[]);
        assert_eq!(seen.window_start(), Some(1));
        assert!(!seen.first_copy(id(1)), "the batch at offset 2 still holds it");
        seen.restore(4, at(101), &[]);
        assert!(seen.first_copy(id(1)));
    }

    #[test]
    fn the_log_keeps_positions_across_chunks_and_past_the_wrap() {
        let mut log = Log { first: u32::MAX - 10, ..Log::default() };
        for n in 0..3 * CHUNK as u64 {
            log.push(id(n));
        }
        assert_eq!((log.chunks.len(), log.end()), (3, (3 * CHUNK as u32).wrapping_sub(11)));
        assert_eq!(log.get(u32::MAX - 10), Some(&id(0)));
        assert_eq!(log.get(5), Some(&id(16)), "past the wrap");
        assert_eq!(log.get(log.end()), None);
        for n in 0..CHUNK as u64 + 1 {
            assert_eq!(log.pop(), Some(((u32::MAX - 10).wrapping_add(n as u32), id(n))));
        }
        assert_eq!((log.chunks.len(), log.head), (2, 1), "the emptied chunk is given back");
        assert_eq!(log.get(u32::MAX - 10), None, "popped");
        assert_eq!(log.get(log.first), Some(&id(CHUNK as u64 + 1)));
    }

    /// Random batches, resends, early forgetting and recovery's repeated identities, against
    /// a plain model of the same rules, across chunk boundaries and the wrap of positions.
    #[test]
    fn seen_agrees_with_a_model_of_its_rules() {
        use rand::{Rng, SeedableRng};

        /// Batches of identities, oldest first, and how many of them hold each identity.
        #[derive(Default)]
        struct Model {
            batches: VecDeque<(i64, DateTime<Utc>, Vec<EventId>)>,
            holders: HashMap<EventId, usize>,
        }
        impl Model {
            fn add(&mut self, ids: &[EventId]) {
                ids.iter().for_each(|id| *self.holders.entry(*id).or_default() += 1);
            }
            fn forget_oldest(&mut self) {
                for id in self.batches.pop_front().map(|b| b.2).unwrap_or_default() {
                    if let Some(n) = self.holders.get_mut(&id) {
                        *n -= 1;
                        if *n == 0 {
                            self.holders.remove(&id);
                        }
                    }
                }
            }
        }

        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let mut seen = seen(60, 3_000);
        seen.log.first = u32::MAX - 2_000;
        let mut model = Model::default();
        let (mut next_id, mut offset) = (0u64, 0i64);
        for round in 0..300i64 {
            let now = at(round / 2);
            let ids: Vec<EventId> = if round % 37 == 36 {
                // Read back from an entry: may repeat identities already remembered.
                let ids: HashSet<EventId> = (0..rng.random_range(1..60))
                    .map(|_| id(rng.random_range(next_id.saturating_sub(500)..=next_id)))
                    .collect();
                let ids: Vec<EventId> = ids.into_iter().collect();
                seen.restore(offset, now, &ids);
                ids
            } else {
                let mut open = Vec::new();
                for _ in 0..rng.random_range(0..200) {
                    let candidate = if next_id > 0 && rng.random_bool(0.2) {
                        id(rng.random_range(next_id.saturating_sub(4_000)..next_id))
                    } else {
                        next_id += 1;
                        id(next_id)
                    };
                    let first = !model.holders.contains_key(&candidate);
                    assert_eq!(seen.first_copy(candidate), first, "round {round}");
                    if first {
                        model.add(&[candidate]);
                        open.push(candidate);
                    }
                }
                seen.remember(offset, now);
                open
            };
            if round % 37 == 36 {
                model.add(&ids);
            }
            if !ids.is_empty() {
                model.batches.push_back((offset, now, ids));
            }
            offset += 1_000;
            while model.batches.front().is_some_and(|b| b.1 < now - chrono::Duration::minutes(60)) {
                model.forget_oldest();
            }
            while model.holders.len() > 3_000 && model.batches.len() > 1 {
                model.forget_oldest();
            }
            assert_eq!(seen.len(), model.holders.len(), "round {round}");
            assert_eq!(seen.window_start(), model.batches.front().map(|b| b.0), "round {round}");
        }
        assert!(seen.forgotten_early() > 0 && seen.log.first < 1_000_000, "early forgetting and the wrap were met");
    }

    #[test]
    fn a_zero_window_removes_nothing_and_remembers_nothing() {
        let mut seen = seen(0, 100);
        assert!(seen.first_copy(id(1)) && seen.first_copy(id(1)));
        seen.restore(0, at(0), &[id(1)]);
        assert!(seen.is_empty() && seen.first_copy(id(1)));
    }

    #[test]
    fn a_replay_keeps_the_first_copy_of_each_listed_identity_only() {
        let ids = EventIds(vec![id(1), id(2)]);
        let mut replay = Replay::of(Some(&ids));
        let kept: Vec<bool> = [1, 3, 1, 2].into_iter().map(|n| replay.first_copy(id(n))).collect();
        assert_eq!(kept, [true, false, false, true]);
        let mut all = Replay::of(None);
        assert!(all.first_copy(id(1)) && all.first_copy(id(1)));
    }

    #[test]
    fn identities_travel_in_an_entry_as_one_base64_string() {
        let ids = EventIds(vec![id(1), id(2)]);
        let json = serde_json::to_string(&ids).unwrap_or_default();
        assert_eq!(json.len(), 2 + 44, "32 bytes in base64: {json}");
        assert_eq!(serde_json::from_str::<EventIds>(&json).ok(), Some(ids));
        let error = serde_json::from_str::<EventIds>("\"AAAA\"").unwrap_err().to_string();
        assert!(error.contains("3 bytes of event ids is not a multiple of 16"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn recovery_reads_back_the_window_from_the_ledger_alone() {
        let ledger = Fixture::new();
        let writer = ledger.writer("a", &CancellationToken::new());
        let settings = DedupSettings { window: Duration::from_secs(3600), max_ids: 100 };
        let mut remembered = Seen::new(settings);
        // Batches written at 0, 40, 80 and 120 minutes, one stored event each.
        for (minutes, first) in [(0, 0), (40, 10), (80, 20), (120, 30)] {
            let mut sealed = ledger.sealed(first, 10);
            let mut entry = writer.entry(&sealed);
            entry.written_at = at(minutes);
            entry.event_ids = Some(EventIds(vec![id(first as u64)]));
            remembered.restore(entry.first_offset, entry.written_at, &[id(first as u64)]);
            entry.dedup_from = remembered.window_start();
            let result = writer.commit(&entry, sealed.take_bodies());
            assert_eq!(result.await, Ok(()));
        }
        let (_, last) = recovery::read(ledger.store.as_ref(), &ledger.layout, PARTITION).await.unwrap();
        let last = last.unwrap();
        assert_eq!((last.first_offset, last.dedup_from), (30, Some(20)), "the window starts at the batch of 80 min");

        let store = ledger.store.as_ref();
        let mut seen = load(store, &ledger.layout, PARTITION, &last, settings, at(120)).await.unwrap();
        assert_eq!(seen.len(), 2);
        assert!(!seen.first_copy(id(20)) && !seen.first_copy(id(30)), "stored in the window: resends");
        assert!(seen.first_copy(id(10)), "stored 80 minutes before the last batch");

        let seen = load(store, &ledger.layout, PARTITION, &last, settings, at(150)).await.unwrap();
        assert_eq!((seen.len(), seen.window_start()), (1, Some(30)), "read back later, the window moved on");

        let off = DedupSettings { window: Duration::ZERO, ..settings };
        assert!(load(store, &ledger.layout, PARTITION, &last, off, at(120)).await.unwrap().is_empty());
    }
}
