//! The one deadline structure of a server: a min-heap of (deadline, five-tuple) with
//! lazy deletion. An entry may be stale (the allocation was refreshed or deleted); the
//! server re-checks the allocation when the entry comes due and re-arms it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::transport::FiveTuple;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry(Instant, FiveTuple);

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Deadlines of allocations.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    /// Arms a deadline for `ft`. Earlier entries for it are left to go stale.
    pub(crate) fn arm(&mut self, at: Instant, ft: FiveTuple) {
        self.heap.push(Reverse(Entry(at, ft)));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.0)
    }

    /// Pops one entry due at `now`, with its deadline.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, FiveTuple)> {
        if self.next()? <= now {
            self.heap.pop().map(|Reverse(e)| (e.0, e.1))
        } else {
            None
        }
    }

    /// Drops every entry (the allocations are gone).
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}
