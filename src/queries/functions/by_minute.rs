//! The counts of `ops_histogram`'s minute set, keyed by (pair, minute): a
//! (provider, model) pair and a UTC minute. Pure logic.
//!
//! A day's rows fall in at most 1,500 minutes, so a pair with many
//! distinct minutes gets a dense window of 3,000 counts, one per minute,
//! centred on the first minute it saw (so any minute of a day of up to 25
//! hours around it fits): one array index a row instead of a hash-map
//! lookup (hashbrown's `entry` was ~2.5% of a 5M-row run's perf samples).
//! A minute outside the window, or not a whole minute, and every pair
//! before its window is made is counted in a hash map; each (pair,
//! minute) is counted in exactly one of the two places: making a window
//! moves the pair's entries that fall in it out of the map.

use super::{Counts, Map, map};

/// Minutes in a window (48 KB of counts).
const SPAN: i64 = 3000;

/// Nanoseconds in a minute.
const MINUTE_NS: i64 = 60_000_000_000;

/// A pair gets its window once the map holds this many of its minutes
/// (~40 bytes each: the window costs about twice what they do). Tests use
/// a low bar, so that the histogram's tests run with windows made part way
/// through a partition.
#[cfg(not(test))]
const WINDOW_AFTER: u64 = 600;
#[cfg(test)]
const WINDOW_AFTER: u64 = 2;

/// Pairs that can have a window; a larger id is counted in the map only.
const WINDOW_IDS: usize = 4096;

#[derive(Debug)]
struct Window {
    /// Minute number (minutes since the epoch) of the first count.
    base: i64,
    counts: Box<[Counts]>,
}

impl Window {
    /// The index of `t` (nanoseconds) in this window, if it has one.
    fn index(&self, t: i64) -> Option<usize> {
        if t % MINUTE_NS != 0 {
            return None;
        }
        let i = t / MINUTE_NS - self.base;
        (0..SPAN).contains(&i).then_some(i as usize)
    }
}

#[derive(Debug)]
pub(super) struct ByMinute {
    /// Per pair: its entries in `sparse` while it has no window.
    seen: Vec<u64>,
    windows: Vec<Option<Window>>,
    sparse: Map<(u32, i64), Counts>,
}

impl ByMinute {
    pub(super) fn new() -> Self {
        ByMinute {
            seen: Vec::new(),
            windows: Vec::new(),
            sparse: map(),
        }
    }

    /// Count `requests` and `errors` for (pair, minute `t` in nanoseconds).
    pub(super) fn add(&mut self, pair: u32, t: i64, requests: i64, errors: i64) {
        let slot = pair as usize;
        if let Some(Some(w)) = self.windows.get_mut(slot)
            && let Some(i) = w.index(t)
        {
            w.counts[i].add(requests, errors);
            return;
        }
        match self.sparse.entry((pair, t)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut().add(requests, errors),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Counts { requests, errors });
                if slot < WINDOW_IDS && t % MINUTE_NS == 0 {
                    if slot >= self.seen.len() {
                        self.seen.resize(slot + 1, 0);
                        self.windows.resize_with(slot + 1, || None);
                    }
                    if self.windows[slot].is_none() {
                        self.seen[slot] += 1;
                        if self.seen[slot] >= WINDOW_AFTER {
                            self.make_window(pair, t);
                        }
                    }
                }
            }
        }
    }

    /// Give `pair` its window around minute `t`, moving its entries that
    /// fall in it out of the map.
    fn make_window(&mut self, pair: u32, t: i64) {
        let mut w = Window {
            base: t / MINUTE_NS - SPAN / 2,
            counts: vec![Counts::default(); SPAN as usize].into_boxed_slice(),
        };
        self.sparse.retain(|(p, t), c| match w.index(*t) {
            Some(i) if *p == pair => {
                w.counts[i].add(c.requests, c.errors);
                false
            }
            _ => true,
        });
        self.windows[pair as usize] = Some(w);
    }

    /// Every counted (pair, minute) with its counts, in no fixed order.
    pub(super) fn iter(&self) -> impl Iterator<Item = ((u32, i64), Counts)> + '_ {
        let dense = self
            .windows
            .iter()
            .enumerate()
            .filter_map(|(pair, w)| w.as_ref().map(|w| (pair as u32, w)))
            .flat_map(|(pair, w)| {
                w.counts
                    .iter()
                    .enumerate()
                    // every count adds at least one request: an untouched
                    // minute is all zero
                    .filter(|(_, c)| c.requests != 0 || c.errors != 0)
                    .map(move |(i, c)| ((pair, (w.base + i as i64) * MINUTE_NS), *c))
            });
        self.sparse.iter().map(|(k, c)| (*k, *c)).chain(dense)
    }

    /// Bytes held, for the memory pool.
    pub(super) fn size(&self) -> usize {
        use std::mem::size_of;
        let windows = self.windows.iter().flatten().count();
        self.sparse.capacity() * (size_of::<(u32, i64)>() + size_of::<Counts>() + 1)
            + windows * SPAN as usize * size_of::<Counts>()
            + self.seen.capacity() * size_of::<u64>()
            + self.windows.capacity() * size_of::<Option<Window>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same counts whether a pair has a window or not, and none twice:
    /// minutes inside and outside the window, before the epoch, not whole.
    #[test]
    fn a_window_counts_what_the_map_would() {
        let mut dense = ByMinute::new();
        let mut plain: std::collections::BTreeMap<(u32, i64), (i64, i64)> = Default::default();
        let day = 1_792_022_400_000_000_000;
        let minutes = [
            day,
            day + MINUTE_NS,
            day + 1439 * MINUTE_NS,
            // outside a window centred on `day`
            day + 2000 * MINUTE_NS,
            day - 2000 * MINUTE_NS,
            // not a whole minute
            day + 1,
            // before the epoch
            -7 * MINUTE_NS,
        ];
        for i in 0..500usize {
            // pair 0 gets a window part way; pair 5000 cannot have one
            let pair = match i % 4 {
                0..=2 => 0,
                _ => 5000,
            };
            let t = minutes[i % minutes.len()];
            let err = (i % 3 == 0) as i64;
            dense.add(pair, t, 1, err);
            let e = plain.entry((pair, t)).or_default();
            e.0 += 1;
            e.1 += err;
        }
        assert!(
            matches!(dense.windows.first(), Some(Some(_))),
            "pair 0 has a window"
        );
        let mut got: Vec<((u32, i64), (i64, i64))> = dense
            .iter()
            .map(|(k, c)| (k, (c.requests, c.errors)))
            .collect();
        got.sort_unstable_by_key(|(k, _)| *k);
        let want: Vec<_> = plain.into_iter().collect();
        assert_eq!(got, want);
    }
}
