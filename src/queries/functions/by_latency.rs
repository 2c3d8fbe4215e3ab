//! The counts of `ops_histogram`'s two latency sets, keyed by (id,
//! latency): a route and its latency, an hour and its latency. Pure logic.
//!
//! Nearly every latency is a whole number of milliseconds below 10 s (the
//! rounding keeps those as they are), so an id with many distinct
//! latencies gets a dense block of 10,000 counts indexed by the
//! millisecond: one array index a row instead of a hash-map lookup, which
//! was most of the histogram's cost (hashbrown's `entry` was 10.5% of a
//! 10M-row run's perf samples, the maps outgrowing the caches). Every
//! other latency (fractional, 10 s and more, null, NaN) and every id
//! before its block is made is counted in a hash map. Each (id, latency)
//! is counted in exactly one of the two places: making a block moves the
//! id's whole-millisecond entries out of the map.
//!
//! A block is made when the id's whole-millisecond entries in the map
//! would cost about half of it (2,048 entries), not after a number of
//! rows: a block then never costs more than twice the map it replaces,
//! however many ids there are, and a busy id gets its block after a few
//! thousand rows. (A bar of 65,536 rows sent the first 65,536 rows of
//! every hour and route of each partition through the map: 60% of a
//! 5M-row day's rows.)

use super::{Counts, FloatKey, Map, map};

/// Whole milliseconds below this index a dense block.
const DENSE_MS: usize = 10_000;

/// An id gets its dense block (160 KB) once the map holds this many of
/// its whole-millisecond entries (~40 bytes each: the block costs about
/// twice what they do). Tests use a low bar, so that the histogram's tests
/// (`functions::tests`, against `GROUPING SETS`) run with blocks made part
/// way through a partition.
#[cfg(not(test))]
const DENSE_AFTER: u64 = 2048;
#[cfg(test)]
const DENSE_AFTER: u64 = 2;

/// Ids that can have a block: routes and hours are few; a larger id (or a
/// negative hour) is counted in the map only.
const DENSE_IDS: usize = 4096;

/// An id of a latency set: its slot among the dense blocks.
pub(super) trait Id: Copy + Eq + std::hash::Hash {
    fn slot(self) -> Option<usize>;
    fn from_slot(slot: usize) -> Self;
}

impl Id for u32 {
    fn slot(self) -> Option<usize> {
        usize::try_from(self).ok().filter(|&s| s < DENSE_IDS)
    }
    fn from_slot(slot: usize) -> Self {
        slot as u32
    }
}

impl Id for i32 {
    fn slot(self) -> Option<usize> {
        usize::try_from(self).ok().filter(|&s| s < DENSE_IDS)
    }
    fn from_slot(slot: usize) -> Self {
        slot as i32
    }
}

/// The block index of a latency key: a whole number of milliseconds in
/// [0, 10 s) (`-0` is already `0` in a key).
fn whole_ms(l: FloatKey) -> Option<usize> {
    let v = f64::from_bits(l?);
    (v >= 0.0 && v < DENSE_MS as f64 && v == v.trunc()).then_some(v as usize)
}

#[derive(Debug)]
pub(super) struct ByLatency<I: Id> {
    /// Per slot: the id's whole-millisecond entries in `sparse` while it
    /// has no block.
    seen: Vec<u64>,
    blocks: Vec<Option<Box<[Counts]>>>,
    sparse: Map<(I, FloatKey), Counts>,
}

impl<I: Id> ByLatency<I> {
    pub(super) fn new() -> Self {
        ByLatency {
            seen: Vec::new(),
            blocks: Vec::new(),
            sparse: map(),
        }
    }

    /// Count `requests` and `errors` for (id, latency).
    pub(super) fn add(&mut self, id: I, lat: FloatKey, requests: i64, errors: i64) {
        let slot = id.slot();
        let ms = whole_ms(lat);
        if let (Some(slot), Some(ms)) = (slot, ms)
            && let Some(Some(block)) = self.blocks.get_mut(slot)
        {
            block[ms].add(requests, errors);
            return;
        }
        match self.sparse.entry((id, lat)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut().add(requests, errors),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Counts { requests, errors });
                // a new whole-millisecond entry of an id without a block
                if let (Some(slot), Some(_)) = (slot, ms) {
                    if slot >= self.seen.len() {
                        self.seen.resize(slot + 1, 0);
                        self.blocks.resize_with(slot + 1, || None);
                    }
                    self.seen[slot] += 1;
                    if self.seen[slot] >= DENSE_AFTER {
                        self.make_block(id, slot);
                    }
                }
            }
        }
    }

    /// Give `id` its block, moving its whole-millisecond entries into it.
    fn make_block(&mut self, id: I, slot: usize) {
        let mut block = vec![Counts::default(); DENSE_MS].into_boxed_slice();
        self.sparse.retain(|(i, l), c| match whole_ms(*l) {
            Some(ms) if *i == id => {
                block[ms].add(c.requests, c.errors);
                false
            }
            _ => true,
        });
        self.blocks[slot] = Some(block);
    }

    /// Every counted (id, latency) with its counts, in no fixed order.
    pub(super) fn iter(&self) -> impl Iterator<Item = ((I, FloatKey), Counts)> + '_ {
        let dense = self
            .blocks
            .iter()
            .enumerate()
            .filter_map(|(slot, b)| b.as_ref().map(|b| (slot, b)))
            .flat_map(|(slot, block)| {
                block
                    .iter()
                    .enumerate()
                    // every count adds at least one request: an untouched
                    // slot is all zero
                    .filter(|(_, c)| c.requests != 0 || c.errors != 0)
                    .map(move |(ms, c)| ((I::from_slot(slot), Some((ms as f64).to_bits())), *c))
            });
        self.sparse.iter().map(|(k, c)| (*k, *c)).chain(dense)
    }

    /// Bytes held, for the memory pool.
    pub(super) fn size(&self) -> usize {
        use std::mem::size_of;
        let blocks = self.blocks.iter().flatten().count();
        self.sparse.capacity() * (size_of::<(I, FloatKey)>() + size_of::<Counts>() + 1)
            + blocks * DENSE_MS * size_of::<Counts>()
            + self.seen.capacity() * size_of::<u64>()
            + self.blocks.capacity() * size_of::<Option<Box<[Counts]>>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same counts whether an id has a block or not, and none twice.
    #[test]
    fn a_block_counts_what_the_map_would() {
        let mut dense = ByLatency::<u32>::new();
        let mut plain: std::collections::BTreeMap<(u32, FloatKey), (i64, i64)> = Default::default();
        let lats = [
            Some(0.0f64.to_bits()),
            Some(12.0f64.to_bits()),
            Some(9999.0f64.to_bits()),
            Some(10000.0f64.to_bits()),
            Some(12.5f64.to_bits()),
            Some(f64::NAN.to_bits()),
            None,
        ];
        let n = 500;
        for i in 0..n {
            // id 0 gets a block part way; ids from 5000 up cannot have one
            let id = match i % 5 {
                0..=2 => 0,
                3 => 1 + (i as u32 % 200) * 5000,
                _ => 5000,
            };
            let lat = lats[i % lats.len()];
            let err = (i % 3 == 0) as i64;
            dense.add(id, lat, 1, err);
            let e = plain.entry((id, lat)).or_default();
            e.0 += 1;
            e.1 += err;
        }
        assert!(
            matches!(dense.blocks.first(), Some(Some(_))),
            "id 0 has a block"
        );
        assert!(dense.blocks.len() <= DENSE_IDS, "no block beyond the slots");
        let mut got: Vec<((u32, FloatKey), (i64, i64))> = dense
            .iter()
            .map(|(k, c)| (k, (c.requests, c.errors)))
            .collect();
        got.sort_unstable_by_key(|(k, _)| *k);
        let want: Vec<_> = plain.into_iter().collect();
        assert_eq!(got, want);
    }
}
