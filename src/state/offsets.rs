//! Which offsets of one input are still needed to rebuild state after a restart.
//!
//! The at-least-once rule: an offset may be committed only when every event before it is
//! reflected in outputs already produced. An event recorded into a pane is needed until that
//! pane has left the window; an event held (far-ahead events waiting for their clock, labels
//! or features waiting for their prediction, the first events of a baseline being
//! bootstrapped) is needed until it is used or given up. Everything else is done with as soon
//! as it is handled.

use std::collections::{BTreeMap, VecDeque};

/// Offsets of one input that are still needed.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// Pane index → smallest and largest offset of the events recorded into that pane, sorted
    /// by pane (events mostly arrive in pane order, so an update is almost always at the back).
    by_pane: VecDeque<(i64, (i64, i64))>,
    /// Offsets of held events → how many holds (an offset may be pinned more than once).
    pins: BTreeMap<i64, u32>,
    /// Highest offset handled.
    last: Option<i64>,
}

impl OffsetTracker {
    /// Notes a handled event at `offset`, recorded into `pane` if any.
    #[inline]
    pub fn note(&mut self, pane: Option<i64>, offset: i64) {
        if let Some(p) = pane {
            let slot = match self.by_pane.back() {
                Some(&(last, _)) if last == p => self.by_pane.len() - 1,
                Some(&(last, _)) if last < p => {
                    self.by_pane.push_back((p, (offset, offset)));
                    self.by_pane.len() - 1
                }
                None => {
                    self.by_pane.push_back((p, (offset, offset)));
                    0
                }
                Some(_) => match self.by_pane.binary_search_by_key(&p, |e| e.0) {
                    Ok(i) => i,
                    Err(i) => {
                        self.by_pane.insert(i, (p, (offset, offset)));
                        i
                    }
                },
            };
            let e = &mut self.by_pane[slot].1;
            e.0 = e.0.min(offset);
            e.1 = e.1.max(offset);
        }
        if self.last.is_none_or(|l| offset > l) {
            self.last = Some(offset);
        }
    }

    /// Highest offset handled (or held).
    pub fn last(&self) -> Option<i64> {
        self.last
    }

    /// Keeps `offset` from being committed until [`OffsetTracker::unpin`].
    pub fn pin(&mut self, offset: i64) {
        *self.pins.entry(offset).or_insert(0) += 1;
        if self.last.is_none_or(|l| offset > l) {
            self.last = Some(offset);
        }
    }

    /// Releases one pin of `offset`.
    pub fn unpin(&mut self, offset: i64) {
        if let Some(n) = self.pins.get_mut(&offset) {
            *n -= 1;
            if *n == 0 {
                self.pins.remove(&offset);
            }
        }
    }

    /// First and last offset of the events recorded into panes `[first, last]`.
    pub fn range(&self, first: i64, last: i64) -> Option<(i64, i64)> {
        let from = self.by_pane.partition_point(|e| e.0 < first);
        self.by_pane
            .range(from..)
            .take_while(|e| e.0 <= last)
            .map(|(_, r)| *r)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
    }

    /// The next offset to commit, given the oldest pane still needed (`None`: no pane is
    /// needed beyond what is recorded) and `pin`, an offset that must not be committed either.
    pub fn committable(&mut self, oldest_needed: Option<i64>, pin: Option<i64>) -> Option<i64> {
        if let Some(oldest) = oldest_needed {
            while self.by_pane.front().is_some_and(|e| e.0 < oldest) {
                self.by_pane.pop_front();
            }
        }
        let floor = self
            .by_pane
            .iter()
            .map(|e| e.1 .0)
            .chain(self.pins.keys().next().copied())
            .chain(pin)
            .min();
        match (floor, self.last) {
            (Some(f), _) => Some(f),
            (None, Some(l)) => Some(l + 1),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_needed_commits_past_the_last_offset() {
        let mut t = OffsetTracker::default();
        assert_eq!(t.committable(None, None), None);
        for o in 0..10 {
            t.note(None, o);
        }
        assert_eq!(t.committable(None, None), Some(10));
    }

    #[test]
    fn events_in_panes_are_needed_until_their_pane_leaves_the_window() {
        let mut t = OffsetTracker::default();
        // Panes 5, 6, 7 with offsets 0..3, 3..6, 6..9; one event of pane 5 arrives late at 9.
        for o in 0..9 {
            t.note(Some(5 + o / 3), o);
        }
        t.note(Some(5), 9);
        t.note(None, 10);
        assert_eq!(t.range(5, 5), Some((0, 9)));
        assert_eq!(t.range(6, 7), Some((3, 8)));
        assert_eq!(t.committable(Some(5), None), Some(0));
        // Pane 5 left the window: its events, the late one included, are done with.
        assert_eq!(t.committable(Some(6), None), Some(3));
        assert_eq!(t.committable(Some(8), None), Some(11));
        assert_eq!(t.range(5, 7), None);
    }

    #[test]
    fn out_of_order_panes_are_kept_sorted() {
        let mut t = OffsetTracker::default();
        t.note(Some(9), 0);
        t.note(Some(7), 1);
        t.note(Some(8), 2);
        assert_eq!(t.committable(Some(8), None), Some(0));
        assert_eq!(t.range(7, 7), None);
        assert_eq!(t.range(8, 8), Some((2, 2)));
        assert_eq!(t.committable(Some(9), None), Some(0));
        assert_eq!(t.committable(Some(10), None), Some(3));
    }

    #[test]
    fn pins_hold_commits_until_released() {
        let mut t = OffsetTracker::default();
        t.note(None, 0);
        t.pin(1);
        t.pin(1);
        t.note(None, 2);
        assert_eq!(t.committable(None, None), Some(1));
        t.unpin(1);
        assert_eq!(t.committable(None, None), Some(1));
        t.unpin(1);
        assert_eq!(t.committable(None, None), Some(3));
        // An outside pin (a baseline being bootstrapped) holds too.
        assert_eq!(t.committable(None, Some(2)), Some(2));
    }
}
