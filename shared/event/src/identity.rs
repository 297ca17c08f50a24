//! What makes two records the same event: the store that sent it and the `request_id` it
//! chose. A store that resends an event after a lost answer sends the same pair; a
//! consumer that has stored one copy removes the others.
//!
//! The pair is kept as a 128-bit digest (the first 16 bytes of SHA-256), so that memory
//! and the ledger hold 16 bytes per event whatever the id's length. SHA-256 because a
//! client chooses its `request_id`: with a non-cryptographic hash a hostile client could
//! make two different events collide and have one of them removed. The store id is part
//! of the digest so that no client can remove another store's event by sending its
//! `request_id` first (a principal may write only for its own stores). The digest is part
//! of the ledger's format: it must never change.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::model::StoreEvent;

/// The identity of an event: a digest of its `store_id` and `request_id`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    /// Bytes per identity.
    pub const LEN: usize = 16;

    /// The identity of the event `request_id` of store `store_id`.
    pub fn of(store_id: u64, request_id: &str) -> EventId {
        let mut hasher = Sha256::new();
        hasher.update(store_id.to_be_bytes());
        hasher.update(request_id.as_bytes());
        let digest = hasher.finalize();
        let mut id = [0; Self::LEN];
        id.copy_from_slice(&digest[..Self::LEN]);
        EventId(id)
    }
}

impl StoreEvent {
    /// This event's identity across resends.
    pub fn id(&self) -> EventId {
        EventId::of(self.store_id, &self.request_id)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_fixed_because_the_ledger_keeps_it() {
        // `printf '\0\0\0\0\0\0\0\7r-1' | sha256sum`, first 32 hex digits: coreutils, not sha2.
        assert_eq!(format!("{:?}", EventId::of(7, "r-1")), "39f9fea61aeb5c390f0779d0b6891860");
    }

    #[test]
    fn the_store_and_the_request_id_both_count() {
        assert_eq!(EventId::of(1, "a"), EventId::of(1, "a"));
        assert_ne!(EventId::of(1, "a"), EventId::of(2, "a"), "another store's event with the same request_id");
        assert_ne!(EventId::of(1, "a"), EventId::of(1, "b"));
        assert_ne!(EventId::of(1, "A"), EventId::of(1, "a"), "ids are compared as sent");
    }
}
