//! The eviction order of the in-process backend: SIEVE (Zhang et al., NSDI '24).
//!
//! Entries sit in insertion order. A hit only sets the entry's *visited* bit, which lives in
//! the entry itself (an atomic the reader sets without any lock), so hits never touch this
//! list. To make room, a hand walks from the oldest entry toward the newest: a visited entry
//! has its bit cleared and stays where it is, the first unvisited one is evicted, and the
//! hand stays there for the next eviction, wrapping to the oldest at the end. Entries hit since
//! the hand last passed survive, and one-hit entries leave quickly: an entry that is never hit
//! goes the first time the hand reaches it.
//!
//! Pure bookkeeping over slots (`u32` indices into a vector, freed slots reused), run under
//! the backend's writer lock.

/// No slot: the end of the list, or an unset hand.
pub(crate) const NIL: u32 = u32::MAX;

#[derive(Debug, Default)]
pub(crate) struct Sieve {
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// The newest entry.
    newest: u32,
    /// The oldest entry.
    oldest: u32,
    /// Where the next eviction starts; `NIL`: at the oldest.
    hand: u32,
    len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    digest: u128,
    newer: u32,
    older: u32,
    in_use: bool,
}

impl Sieve {
    pub(crate) fn new() -> Self {
        Sieve {
            nodes: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            hand: NIL,
            len: 0,
        }
    }

    /// How many entries are in the order.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `digest` as the newest entry and returns its slot.
    pub(crate) fn push(&mut self, digest: u128) -> u32 {
        let node = Node {
            digest,
            newer: NIL,
            older: self.newest,
            in_use: true,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 entries")
            }
        };
        match self.newest {
            NIL => self.oldest = slot,
            newest => self.nodes[newest as usize].newer = slot,
        }
        self.newest = slot;
        self.len += 1;
        slot
    }

    /// Takes the entry at `slot` out of the order, if `slot` still holds `digest`: a stale
    /// slot (which cannot happen unless a panic cut an update short) is ignored rather than
    /// unlinking another entry.
    pub(crate) fn remove(&mut self, slot: u32, digest: u128) {
        match self.nodes.get(slot as usize) {
            Some(node) if node.in_use && node.digest == digest => self.unlink(slot),
            _ => {}
        }
    }

    fn unlink(&mut self, slot: u32) {
        let Node { newer, older, .. } = self.nodes[slot as usize];
        if self.hand == slot {
            self.hand = newer;
        }
        match newer {
            NIL => self.newest = older,
            n => self.nodes[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.nodes[o as usize].newer = newer,
        }
        self.nodes[slot as usize].in_use = false;
        self.free.push(slot);
        self.len -= 1;
    }

    /// Picks and removes the entry to evict, and returns its digest. `spare(digest)` is asked
    /// about each entry the hand passes: `true` (it was visited; the callback clears the bit)
    /// keeps it. After two full turns the entry under the hand goes whatever `spare` says, so
    /// readers that keep setting bits cannot hold a writer here.
    pub(crate) fn evict(&mut self, mut spare: impl FnMut(u128) -> bool) -> Option<u128> {
        if self.len == 0 {
            return None;
        }
        let mut slot = self.hand;
        for _ in 0..2 * self.len {
            if slot == NIL {
                slot = self.oldest;
            }
            if !spare(self.nodes[slot as usize].digest) {
                break;
            }
            slot = self.nodes[slot as usize].newer;
        }
        if slot == NIL {
            slot = self.oldest;
        }
        let digest = self.nodes[slot as usize].digest;
        // The hand moves past the victim (`unlink` moves a hand that is on the removed slot).
        self.hand = slot;
        self.unlink(slot);
        Some(digest)
    }

    /// Forgets every entry.
    pub(crate) fn clear(&mut self) {
        *self = Sieve::new();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn order(s: &Sieve) -> Vec<u128> {
        let mut out = Vec::new();
        let mut slot = s.oldest;
        while slot != NIL {
            out.push(s.nodes[slot as usize].digest);
            slot = s.nodes[slot as usize].newer;
        }
        out
    }

    #[test]
    fn unvisited_entries_leave_oldest_first() {
        let mut s = Sieve::new();
        for d in 1..=3 {
            s.push(d);
        }
        assert_eq!(s.evict(|_| false), Some(1));
        assert_eq!(s.evict(|_| false), Some(2));
        assert_eq!(order(&s), [3]);
        assert_eq!(s.evict(|_| false), Some(3));
        assert_eq!((s.len(), s.evict(|_| false)), (0, None));
    }

    #[test]
    fn visited_entries_get_a_second_chance_and_the_hand_stays() {
        let mut s = Sieve::new();
        for d in 1..=4 {
            s.push(d);
        }
        let mut visited: HashSet<u128> = [1, 2].into();
        // 1 and 2 lose their bits and stay; 3 goes; the hand waits at 4.
        assert_eq!(s.evict(|d| visited.remove(&d)), Some(3));
        assert_eq!(order(&s), [1, 2, 4]);
        s.push(5);
        visited.insert(4);
        // From the hand: 4 is spared, 5 is next.
        assert_eq!(s.evict(|d| visited.remove(&d)), Some(5));
        // Wrapping around: 1 lost its bit on the first pass.
        assert_eq!(s.evict(|d| visited.remove(&d)), Some(1));
    }

    #[test]
    fn everything_visited_still_evicts_within_two_turns() {
        let mut s = Sieve::new();
        for d in 1..=3 {
            s.push(d);
        }
        assert!(s.evict(|_| true).is_some());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn removal_from_the_middle_keeps_the_list_and_the_hand_whole() {
        let mut s = Sieve::new();
        let slots: Vec<u32> = (1..=4).map(|d| s.push(d)).collect();
        let mut visited: HashSet<u128> = [1].into();
        assert_eq!(s.evict(|d| visited.remove(&d)), Some(2));
        // The hand is on 3; removing 3 moves it to 4.
        s.remove(slots[2], 3);
        assert_eq!(order(&s), [1, 4]);
        assert_eq!(s.evict(|_| false), Some(4));
        s.remove(slots[0], 1);
        assert_eq!((s.len(), order(&s)), (0, vec![]));
        // Stale slots are ignored: freed, or reused by another digest.
        s.remove(slots[0], 1);
        assert_eq!(s.len(), 0);
        // Freed slots are reused.
        let again = s.push(9);
        assert!(slots.contains(&again));
        s.remove(again, 1);
        assert_eq!(order(&s), [9]);
    }

    #[test]
    fn a_scan_does_not_flush_hot_entries() {
        let mut s = Sieve::new();
        let hot: HashSet<u128> = (0..10).collect();
        for d in 0..100 {
            s.push(d);
        }
        let mut visited = hot.clone();
        // A scan of 1000 one-off entries through a 100-entry cache whose hot ten are hit
        // between every insertion.
        for d in 1000..2000 {
            s.evict(|d| visited.remove(&d));
            s.push(d);
            visited.extend(&hot);
        }
        let kept: HashSet<u128> = order(&s).into_iter().collect();
        assert!(hot.is_subset(&kept));
    }
}
