//! Lowest-unfinished-offset bookkeeping.
//!
//! A host works on several messages of a partition at once and they finish in any order. The
//! offset it may commit is the lowest offset still in flight (nothing below it is unfinished), or
//! one past the highest offset it has seen when nothing is in flight. Committing anything higher
//! could skip unfinished work on a crash.
//!
//! A rebalance that takes a partition away bumps its epoch: work begun under the old epoch may
//! still finish (its outputs are harmless duplicates for the new owner), but it no longer moves
//! this worker's commit position.

use std::collections::{BTreeSet, HashMap};

/// A topic and partition.
pub type Tp = (String, i32);

/// Proof that an offset was begun; hand it back to [`OffsetTracker::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub tp: Tp,
    pub offset: i64,
    epoch: u64,
}

#[derive(Debug, Default)]
struct PartitionState {
    epoch: u64,
    in_flight: BTreeSet<i64>,
    /// One past the highest offset begun.
    next: Option<i64>,
    /// The last position handed out by `committable` (to report only changes).
    committed: Option<i64>,
}

impl PartitionState {
    fn safe(&self) -> Option<i64> {
        self.in_flight.first().copied().or(self.next)
    }
}

/// Tracks in-flight offsets per partition and computes safe commit positions.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<Tp, PartitionState>,
    epochs: u64,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that work on `offset` began.
    pub fn begin(&mut self, tp: Tp, offset: i64) -> Ticket {
        let state = self.partitions.entry(tp.clone()).or_default();
        state.in_flight.insert(offset);
        state.next = Some(state.next.map_or(offset + 1, |n| n.max(offset + 1)));
        Ticket {
            tp,
            offset,
            epoch: state.epoch,
        }
    }

    /// Records that every output for the ticket's offset is acknowledged. Returns false when the
    /// partition was revoked since (the ticket no longer counts).
    pub fn finish(&mut self, ticket: &Ticket) -> bool {
        match self.partitions.get_mut(&ticket.tp) {
            Some(state) if state.epoch == ticket.epoch => state.in_flight.remove(&ticket.offset),
            _ => false,
        }
    }

    /// The offset that may be committed for a partition (the next offset to read on restart).
    pub fn safe_offset(&self, tp: &Tp) -> Option<i64> {
        self.partitions.get(tp).and_then(PartitionState::safe)
    }

    /// Positions that moved since the last call, to commit.
    pub fn committable(&mut self) -> Vec<(Tp, i64)> {
        let mut out = Vec::new();
        for (tp, state) in &mut self.partitions {
            if let Some(safe) = state.safe()
                && state.committed != Some(safe)
            {
                state.committed = Some(safe);
                out.push((tp.clone(), safe));
            }
        }
        out
    }

    /// Makes the partition's position reported again by the next `committable` (after a
    /// failed commit).
    pub fn forget_committed(&mut self, tp: &Tp) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.committed = None;
        }
    }

    /// Forgets a partition (revoked in a rebalance); outstanding tickets for it stop counting.
    pub fn revoke(&mut self, tp: &Tp) -> Option<i64> {
        self.epochs += 1;
        let epoch = self.epochs;
        let state = self.partitions.remove(tp)?;
        let safe = state.safe();
        self.partitions.insert(
            tp.clone(),
            PartitionState {
                epoch,
                ..Default::default()
            },
        );
        safe
    }

    /// Number of offsets in flight across partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|s| s.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tp() -> Tp {
        ("t".to_string(), 0)
    }

    #[test]
    fn out_of_order_completion_never_commits_past_unfinished_work() {
        let mut t = OffsetTracker::new();
        let a = t.begin(tp(), 10);
        let b = t.begin(tp(), 11);
        let c = t.begin(tp(), 12);
        assert!(t.finish(&c));
        assert!(t.finish(&b));
        assert_eq!(t.safe_offset(&tp()), Some(10));
        assert!(t.finish(&a));
        assert_eq!(t.safe_offset(&tp()), Some(13));
    }

    #[test]
    fn committable_reports_only_changes() {
        let mut t = OffsetTracker::new();
        let a = t.begin(tp(), 0);
        assert_eq!(t.committable(), vec![(tp(), 0)]);
        assert!(t.committable().is_empty());
        t.finish(&a);
        assert_eq!(t.committable(), vec![(tp(), 1)]);
    }

    #[test]
    fn revoked_tickets_stop_counting() {
        let mut t = OffsetTracker::new();
        let a = t.begin(tp(), 5);
        assert_eq!(t.revoke(&tp()), Some(5));
        assert!(!t.finish(&a));
        assert_eq!(t.safe_offset(&tp()), None);
        let b = t.begin(tp(), 5);
        assert!(t.finish(&b));
        assert_eq!(t.safe_offset(&tp()), Some(6));
    }

    proptest! {
        /// Whatever order work finishes in, the safe offset is exactly the lowest unfinished
        /// offset (or one past the highest when all are done), and never decreases.
        #[test]
        fn safe_offset_is_lowest_unfinished(
            n in 1usize..60,
            order in proptest::collection::vec(any::<prop::sample::Index>(), 1..60),
        ) {
            let mut t = OffsetTracker::new();
            let mut tickets: Vec<Ticket> = (0..n as i64).map(|o| t.begin(tp(), o + 100)).collect();
            let mut done = BTreeSet::new();
            let mut last = 0;
            for idx in order {
                if tickets.is_empty() { break; }
                let ticket = tickets.remove(idx.index(tickets.len()));
                done.insert(ticket.offset);
                prop_assert!(t.finish(&ticket));
                let expected = (100..100 + n as i64).find(|o| !done.contains(o)).unwrap_or(100 + n as i64);
                let safe = t.safe_offset(&tp()).unwrap();
                prop_assert_eq!(safe, expected);
                prop_assert!(safe >= last);
                last = safe;
            }
        }
    }
}
