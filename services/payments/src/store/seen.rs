//! The provider events this process has seen recorded in `webhook_events`,
//! so a duplicate delivery — the provider's own resends, sent at least
//! once, and every replay — is answered without a database round trip or
//! a transaction (issue 15: after the saga's own steps, duplicates were
//! the largest share of payments' commits per saga).
//!
//! Only ids whose row is known to be committed go in: one this process
//! inserted and committed, or one whose insert met the committed row. So
//! an id found here is a duplicate for certain, and the answer is the one
//! the database would give (`duplicate`, nothing changed). An id not found
//! (evicted, seen by another replica, or before a restart) goes to the
//! database as before, which stays the arbiter. Bounded: the oldest ids
//! are forgotten first.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use storefront_kit::sync::lock;

use crate::contract::Provider;

/// How many event ids are remembered: resends come within seconds, and at
/// a few hundred events per second this covers well over a minute, in a
/// few MB at most.
pub const CAPACITY: usize = 16_384;

/// A bounded set of `(provider, event id)`, oldest forgotten first.
#[derive(Debug)]
pub struct SeenEvents {
    inner: Mutex<Inner>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    ids: HashSet<(Provider, String)>,
    order: VecDeque<(Provider, String)>,
}

impl Default for SeenEvents {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl SeenEvents {
    /// A set remembering at most `capacity` ids (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    /// Whether `event_id` of `provider` is known to be recorded.
    pub fn contains(&self, provider: Provider, event_id: &str) -> bool {
        lock(&self.inner)
            .ids
            .contains(&(provider, event_id.to_owned()))
    }

    /// Notes that `event_id` of `provider` is recorded (committed).
    pub fn insert(&self, provider: Provider, event_id: &str) {
        let key = (provider, event_id.to_owned());
        let mut inner = lock(&self.inner);
        if !inner.ids.insert(key.clone()) {
            return;
        }
        inner.order.push_back(key);
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.ids.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_known_once_noted_and_only_for_its_provider() {
        let seen = SeenEvents::default();
        assert!(!seen.contains(Provider::Stripe, "evt_1"));
        seen.insert(Provider::Stripe, "evt_1");
        assert!(seen.contains(Provider::Stripe, "evt_1"));
        assert!(!seen.contains(Provider::Paypal, "evt_1"));
        assert!(!seen.contains(Provider::Stripe, "evt_2"));
    }

    #[test]
    fn the_oldest_ids_are_forgotten_first_past_the_capacity() {
        let seen = SeenEvents::with_capacity(2);
        seen.insert(Provider::Stripe, "a");
        seen.insert(Provider::Stripe, "b");
        // Noting a known id again neither grows the set nor refreshes it.
        seen.insert(Provider::Stripe, "a");
        seen.insert(Provider::Stripe, "c");
        assert!(!seen.contains(Provider::Stripe, "a"));
        assert!(seen.contains(Provider::Stripe, "b"));
        assert!(seen.contains(Provider::Stripe, "c"));
    }
}
