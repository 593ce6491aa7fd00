//! The poller's bounded ring of Authentik events, newest first, with the set of their `pk`s so
//! a poll knows where the events it already has begin.

use std::collections::{HashSet, VecDeque};

use tokend_shared::AuthentikEvent;

#[derive(Debug)]
pub struct Ring {
    /// Newest first.
    events: VecDeque<AuthentikEvent>,
    /// The `pk`s in `events`.
    pks: HashSet<String>,
    capacity: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            events: VecDeque::new(),
            pks: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn contains(&self, pk: &str) -> bool {
        self.pks.contains(pk)
    }

    /// Events held.
    pub fn held(&self) -> usize {
        self.events.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Puts `newer` (newest first, all newer than what the ring holds) in front; the oldest
    /// go beyond the capacity. Events already held are skipped.
    pub fn push_newer(&mut self, newer: Vec<AuthentikEvent>) {
        for event in newer.into_iter().rev() {
            if self.pks.insert(event.pk.clone()) {
                self.events.push_front(event);
            }
        }
        while self.events.len() > self.capacity {
            if let Some(old) = self.events.pop_back() {
                self.pks.remove(&old.pk);
            }
        }
    }

    /// Newest first.
    pub fn iter(&self) -> impl Iterator<Item = &AuthentikEvent> {
        self.events.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event(pk: &str) -> AuthentikEvent {
        AuthentikEvent {
            pk: pk.into(),
            action: "login".into(),
            app: String::new(),
            created: String::new(),
            created_ms: 0,
            client_ip: None,
            username: None,
            email: None,
            user: serde_json::json!({}),
            context: serde_json::json!({}),
            brand: serde_json::json!({}),
            sessions: Vec::new(),
        }
    }

    fn pks(r: &Ring) -> Vec<&str> {
        r.iter().map(|e| e.pk.as_str()).collect()
    }

    #[test]
    fn issue_11_newest_first_bounded_and_deduplicated() {
        let mut r = Ring::new(4);
        r.push_newer(vec![event("c"), event("b"), event("a")]);
        assert_eq!(pks(&r), ["c", "b", "a"]);
        r.push_newer(vec![event("e"), event("d"), event("c")]);
        assert_eq!(pks(&r), ["e", "d", "c", "b"], "c once; a aged out");
        assert!(!r.contains("a") && r.contains("b"));
        assert_eq!((r.held(), r.capacity()), (4, 4));
    }
}
