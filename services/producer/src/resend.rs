//! Answering a resend with the first answer. A store that lost the producer's answer sends
//! the same events again; when this instance acknowledged an event (same store, same
//! `request_id`) in the last `PRODUCER_RESEND_WINDOW`, it answers with the partition and
//! offset Kafka gave the first copy and writes nothing. The memory is per instance, bounded
//! (`PRODUCER_RESEND_CACHE` events, oldest forgotten first) and lost at restart: what it
//! misses, the consumers remove (see `store_consumer::dedup`), so this saves work and
//! answers truthfully; it is not what makes resends count once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use store_event::EventId;

use crate::sink::Ack;

/// The acknowledged events of the last window.
pub struct Acknowledged {
    window: Duration,
    capacity: usize,
    state: Mutex<State>,
}

/// The map's hasher is foldhash's, seeded per process (as the consumers' `Seen`): the ids
/// are already SHA-256 digests, and SipHash cost a few per cent of the CPU under load.
#[derive(Default)]
struct State {
    acks: HashMap<EventId, Ack, foldhash::fast::RandomState>,
    /// Insertion order, for expiry.
    order: VecDeque<(Instant, EventId)>,
}

impl Acknowledged {
    /// Remembers up to `capacity` events for `window`; a zero window or capacity turns it off.
    pub fn new(window: Duration, capacity: usize) -> Acknowledged {
        Acknowledged { window, capacity, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding it; the maps stay consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first answer to each of `ids`, when remembered at `now`.
    pub fn lookup(&self, ids: &[EventId], now: Instant) -> Vec<Option<Ack>> {
        if self.window.is_zero() || self.capacity == 0 {
            return vec![None; ids.len()];
        }
        let mut state = self.state();
        state.expire(now.checked_sub(self.window));
        ids.iter().map(|id| state.acks.get(id).copied()).collect()
    }

    /// Remembers that Kafka acknowledged `id` as `ack`.
    pub fn insert(&self, acked: impl IntoIterator<Item = (EventId, Ack)>, now: Instant) {
        if self.window.is_zero() || self.capacity == 0 {
            return;
        }
        let mut state = self.state();
        for (id, ack) in acked {
            if state.acks.insert(id, ack).is_none() {
                state.order.push_back((now, id));
            }
        }
        while state.acks.len() > self.capacity {
            state.forget_oldest();
        }
    }

    /// Events remembered.
    pub fn len(&self) -> usize {
        self.state().acks.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    fn expire(&mut self, horizon: Option<Instant>) {
        let Some(horizon) = horizon else { return };
        while self.order.front().is_some_and(|(at, _)| *at < horizon) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.acks.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> EventId {
        EventId::of(n, "r")
    }

    fn ack(offset: i64) -> Ack {
        Ack { partition: 1, offset }
    }

    #[test]
    fn an_acknowledged_event_is_answered_as_the_first_time_within_the_window() {
        let memory = Acknowledged::new(Duration::from_secs(60), 10);
        let start = Instant::now();
        memory.insert([(id(1), ack(7))], start);
        assert_eq!(memory.lookup(&[id(1), id(2)], start + Duration::from_secs(60)), [Some(ack(7)), None]);
        assert_eq!(memory.lookup(&[id(1)], start + Duration::from_secs(61)), [None]);
        assert!(memory.is_empty());
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_capacity() {
        let memory = Acknowledged::new(Duration::from_secs(60), 2);
        let now = Instant::now();
        memory.insert([(id(1), ack(1)), (id(2), ack(2)), (id(3), ack(3))], now);
        assert_eq!(memory.lookup(&[id(1), id(2), id(3)], now), [None, Some(ack(2)), Some(ack(3))]);
        assert_eq!(memory.len(), 2);
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let memory = Acknowledged::new(Duration::ZERO, 10);
        let now = Instant::now();
        memory.insert([(id(1), ack(1))], now);
        assert_eq!(memory.lookup(&[id(1)], now), [None]);
    }
}
