//! The counts of `ops_histogram`'s sets keyed by an id and a position on
//! an axis: a route or an hour and its latency ([`ByLatency`]), a
//! (provider, model) pair and its minute ([`ByMinute`]). Pure logic.
//!
//! Most keys fall on a short stretch of their axis: nearly every latency
//! is a whole number of milliseconds below 10 s (the rounding keeps those
//! as they are), and a day's rows fall in at most 1,500 minutes. So an id
//! with many distinct keys gets a dense block of counts over such a
//! stretch, one array index a row instead of a hash-map lookup (hashbrown's
//! `entry` was 10.5% of a 10M-row run's perf samples with maps alone, ~5%
//! of a 5M-row run's while the minutes still had only a map). Every other
//! key (a fractional latency, 10 s and more, null, NaN; a minute outside
//! the block or not a whole minute) and every id before its block is made
//! is counted in a hash map. Each (id, key) is counted in exactly one of
//! the two places: making a block moves the id's entries that fall in it
//! out of the map.
//!
//! A block is made when the map holds as many of the id's entries as
//! would cost about half of it, not after a number of rows: a block then
//! never costs more than twice the map it replaces, however many ids there
//! are, and a busy id gets its block after a few thousand rows. (A bar of
//! 65,536 rows sent the first 65,536 rows of every hour and route of each
//! partition through the map: 60% of a 5M-row day's rows.)

use super::{Counts, FloatKey, Map, map};

/// How a set places its keys on a block: the axis and the block's span.
pub(super) trait Axis {
    type Id: Copy + Eq + std::hash::Hash;
    type Key: Copy + Eq + std::hash::Hash;
    /// Positions in a block.
    const SPAN: i64;
    /// The id's entries in the map at which it gets a block (~40 bytes
    /// each: the block costs about twice what they do).
    const AFTER: u64;
    /// The id's slot among the blocks, if it can have one.
    fn slot(id: Self::Id) -> Option<usize>;
    fn id_of(slot: usize) -> Self::Id;
    /// The key's position on the axis, if it can be in a block.
    fn position(key: Self::Key) -> Option<i64>;
    fn key_at(position: i64) -> Self::Key;
    /// The first position of a block made when `position` came.
    fn base(position: i64) -> i64;
}

/// Ids that can have a block: routes, hours and pairs are few; a larger
/// id (or a negative hour) is counted in the map only.
const DENSE_IDS: usize = 4096;

/// Latency sets: whole milliseconds in [0, 10 s), for route ids (`u32`)
/// and hours (`i32`).
#[derive(Debug)]
pub(super) struct Latency<I>(std::marker::PhantomData<I>);

/// Minute sets: whole minutes (nanoseconds since the epoch) in a window of
/// 3,000 minutes centred on the first one that made the block, so that any
/// minute of a day of up to 25 hours around it fits.
#[derive(Debug)]
pub(super) struct Minutes;

pub(super) type ByLatency<I> = Blocks<Latency<I>>;
pub(super) type ByMinute = Blocks<Minutes>;

/// Nanoseconds in a minute.
const MINUTE_NS: i64 = 60_000_000_000;

/// Tests use a low bar, so that the histogram's tests (`functions::tests`,
/// against `GROUPING SETS`) run with blocks made part way through a
/// partition.
const fn after(production: u64) -> u64 {
    if cfg!(test) { 2 } else { production }
}

macro_rules! latency_ids {
    ($($t:ty),*) => {$(
        impl Axis for Latency<$t> {
            type Id = $t;
            type Key = FloatKey;
            const SPAN: i64 = 10_000;
            const AFTER: u64 = after(512);
            fn slot(id: $t) -> Option<usize> {
                usize::try_from(id).ok().filter(|&s| s < DENSE_IDS)
            }
            fn id_of(slot: usize) -> $t {
                slot as $t
            }
            /// A whole number of milliseconds in [0, 10 s) (`-0` is
            /// already `0` in a key).
            fn position(l: FloatKey) -> Option<i64> {
                let v = f64::from_bits(l?);
                (v >= 0.0 && v < Self::SPAN as f64 && v == v.trunc()).then_some(v as i64)
            }
            fn key_at(ms: i64) -> FloatKey {
                Some((ms as f64).to_bits())
            }
            fn base(_: i64) -> i64 {
                0
            }
        }
    )*};
}
latency_ids!(u32, i32);

impl Axis for Minutes {
    type Id = u32;
    type Key = i64;
    const SPAN: i64 = 3000;
    const AFTER: u64 = after(150);
    fn slot(id: u32) -> Option<usize> {
        usize::try_from(id).ok().filter(|&s| s < DENSE_IDS)
    }
    fn id_of(slot: usize) -> u32 {
        slot as u32
    }
    fn position(t: i64) -> Option<i64> {
        (t % MINUTE_NS == 0).then_some(t / MINUTE_NS)
    }
    fn key_at(minute: i64) -> i64 {
        minute * MINUTE_NS
    }
    fn base(minute: i64) -> i64 {
        minute - Self::SPAN / 2
    }
}

/// A block's counts: per position, requests and errors as two 16-bit
/// halves of one `u32` (4 bytes a position, so a route's 10,000
/// milliseconds take 40 KB: perf put ~7% of a 5M-row day's samples on the
/// one add into 16-byte counts, a cache miss a row once a partition's
/// blocks outgrew the core's cache). A count that would pass 16 bits
/// moves the position's counts into `wide` (made on the first such), so
/// a position's count is always `narrow` plus `wide`.
#[derive(Debug)]
struct Block {
    base: i64,
    narrow: Box<[u32]>,
    wide: Option<Box<[Counts]>>,
}

/// One half of a narrow cell.
const HALF: u32 = 0xFFFF;

impl Block {
    fn new(base: i64, span: i64) -> Self {
        Block {
            base,
            narrow: vec![0; span as usize].into_boxed_slice(),
            wide: None,
        }
    }

    fn index(&self, position: i64, span: i64) -> Option<usize> {
        let i = position.checked_sub(self.base)?;
        (0..span).contains(&i).then_some(i as usize)
    }

    fn add(&mut self, i: usize, requests: i64, errors: i64) {
        let cell = &mut self.narrow[i];
        let (r, e) = (*cell & HALF, *cell >> 16);
        if (0..=i64::from(HALF - r)).contains(&requests)
            && (0..=i64::from(HALF - e)).contains(&errors)
        {
            *cell += requests as u32 | (errors as u32) << 16;
            return;
        }
        *cell = 0;
        let span = self.narrow.len();
        let wide = self
            .wide
            .get_or_insert_with(|| vec![Counts::default(); span].into_boxed_slice());
        wide[i].add(i64::from(r) + requests, i64::from(e) + errors);
    }

    /// The counts at position `i`.
    fn at(&self, i: usize) -> Counts {
        let cell = self.narrow[i];
        let mut c = self.wide.as_ref().map_or_else(Counts::default, |w| w[i]);
        c.add(i64::from(cell & HALF), i64::from(cell >> 16));
        c
    }

    fn bytes(&self) -> usize {
        use std::mem::size_of;
        self.narrow.len() * size_of::<u32>()
            + self
                .wide
                .as_ref()
                .map_or(0, |w| w.len() * size_of::<Counts>())
    }
}

#[derive(Debug)]
pub(super) struct Blocks<A: Axis> {
    /// Per slot: the id's entries in `sparse` that could be in a block,
    /// while it has none.
    seen: Vec<u64>,
    blocks: Vec<Option<Block>>,
    sparse: Map<(A::Id, A::Key), Counts>,
}

impl<A: Axis> Blocks<A> {
    pub(super) fn new() -> Self {
        Blocks {
            seen: Vec::new(),
            blocks: Vec::new(),
            sparse: map(),
        }
    }

    /// Count `requests` and `errors` for (id, key).
    pub(super) fn add(&mut self, id: A::Id, key: A::Key, requests: i64, errors: i64) {
        let slot = A::slot(id);
        let position = A::position(key);
        if let (Some(slot), Some(p)) = (slot, position)
            && let Some(Some(block)) = self.blocks.get_mut(slot)
            && let Some(i) = block.index(p, A::SPAN)
        {
            block.add(i, requests, errors);
            return;
        }
        match self.sparse.entry((id, key)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut().add(requests, errors),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Counts { requests, errors });
                if let (Some(slot), Some(p)) = (slot, position) {
                    if slot >= self.seen.len() {
                        self.seen.resize(slot + 1, 0);
                        self.blocks.resize_with(slot + 1, || None);
                    }
                    if self.blocks[slot].is_none() {
                        self.seen[slot] += 1;
                        if self.seen[slot] >= A::AFTER {
                            self.make_block(id, slot, p);
                        }
                    }
                }
            }
        }
    }

    /// Give `id` its block from `A::base(position)`, moving its entries
    /// that fall in it out of the map.
    fn make_block(&mut self, id: A::Id, slot: usize, position: i64) {
        let mut block = Block::new(A::base(position), A::SPAN);
        self.sparse.retain(|(i, k), c| {
            match A::position(*k).and_then(|p| block.index(p, A::SPAN)) {
                Some(at) if *i == id => {
                    block.add(at, c.requests, c.errors);
                    false
                }
                _ => true,
            }
        });
        self.blocks[slot] = Some(block);
    }

    /// Every counted (id, key) with its counts, in no fixed order.
    pub(super) fn iter(&self) -> impl Iterator<Item = ((A::Id, A::Key), Counts)> + '_ {
        let dense = self
            .blocks
            .iter()
            .enumerate()
            .filter_map(|(slot, b)| b.as_ref().map(|b| (A::id_of(slot), b)))
            .flat_map(|(id, block)| {
                (0..block.narrow.len())
                    .map(|i| (i, block.at(i)))
                    // every count adds at least one request: an untouched
                    // position is all zero
                    .filter(|(_, c)| c.requests != 0 || c.errors != 0)
                    .map(move |(i, c)| ((id, A::key_at(block.base + i as i64)), c))
            });
        self.sparse.iter().map(|(k, c)| (*k, *c)).chain(dense)
    }

    /// Bytes held, for the memory pool.
    pub(super) fn size(&self) -> usize {
        use std::mem::size_of;
        self.sparse.capacity() * (size_of::<(A::Id, A::Key)>() + size_of::<Counts>() + 1)
            + self
                .blocks
                .iter()
                .flatten()
                .map(Block::bytes)
                .sum::<usize>()
            + self.seen.capacity() * size_of::<u64>()
            + self.blocks.capacity() * size_of::<Option<Block>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Counts `keys` in turn under the ids `id_of(i)` in a `Blocks` and in
    /// a plain map; both must give the same counts, none twice.
    fn same_as_a_map<A: Axis>(keys: &[A::Key], id_of: impl Fn(usize) -> A::Id) -> Blocks<A>
    where
        A::Id: Ord + std::fmt::Debug,
        A::Key: Ord + std::fmt::Debug,
    {
        let mut dense = Blocks::<A>::new();
        let mut plain: BTreeMap<(A::Id, A::Key), (i64, i64)> = BTreeMap::new();
        for i in 0..500usize {
            let (id, key) = (id_of(i), keys[i % keys.len()]);
            let err = (i % 3 == 0) as i64;
            dense.add(id, key, 1, err);
            let e = plain.entry((id, key)).or_default();
            e.0 += 1;
            e.1 += err;
        }
        let got: BTreeMap<(A::Id, A::Key), (i64, i64)> = dense
            .iter()
            .map(|(k, c)| (k, (c.requests, c.errors)))
            .collect();
        assert_eq!(dense.iter().count(), got.len(), "no key counted twice");
        assert_eq!(got, plain);
        dense
    }

    /// Latencies in and out of a block; id 0 gets one part way, ids from
    /// 5000 up cannot have one.
    #[test]
    fn a_latency_block_counts_what_the_map_would() {
        let lats = [
            Some(0.0f64.to_bits()),
            Some(12.0f64.to_bits()),
            Some(9999.0f64.to_bits()),
            Some(10000.0f64.to_bits()),
            Some(12.5f64.to_bits()),
            Some(f64::NAN.to_bits()),
            None,
        ];
        let dense = same_as_a_map::<Latency<u32>>(&lats, |i| match i % 5 {
            0..=2 => 0,
            3 => 1 + (i as u32 % 200) * 5000,
            _ => 5000,
        });
        assert!(
            matches!(dense.blocks.first(), Some(Some(_))),
            "id 0 has a block"
        );
        assert!(dense.blocks.len() <= DENSE_IDS, "no block beyond the slots");
    }

    /// A position counted past 16 bits, by rows and by merged counts
    /// (requests and errors apart), keeps every count.
    #[test]
    fn a_block_counts_past_sixteen_bits() {
        let ms = |v: f64| Some(v.to_bits());
        let mut dense = Blocks::<Latency<u32>>::new();
        let mut plain: BTreeMap<(u32, FloatKey), (i64, i64)> = BTreeMap::new();
        let mut add = |dense: &mut Blocks<Latency<u32>>, key, r, e| {
            dense.add(7, key, r, e);
            let c = plain.entry((7, key)).or_default();
            c.0 += r;
            c.1 += e;
        };
        for i in 0..70_000i64 {
            add(&mut dense, ms(250.0), 1, i64::from(i % 2 == 0));
            add(&mut dense, ms((i % 3) as f64), 1, 0);
        }
        add(&mut dense, ms(1.0), 1_000_000, 3);
        add(&mut dense, ms(2.0), 5, 70_000);
        add(&mut dense, ms(250.0), 1, 1);
        let block = dense.blocks[7].as_ref().expect("id 7 has a block");
        assert!(block.wide.is_some(), "the counts outgrew 16 bits");
        let got: BTreeMap<(u32, FloatKey), (i64, i64)> = dense
            .iter()
            .map(|(k, c)| (k, (c.requests, c.errors)))
            .collect();
        assert_eq!(got, plain);
        assert_eq!(got[&(7, ms(250.0))], (70_001, 35_001));
        assert_eq!(got[&(7, ms(1.0))], (1_023_333, 3));
    }

    /// Minutes inside and outside a window, before the epoch, not whole;
    /// pair 0 gets a window part way, pair 5000 cannot have one.
    #[test]
    fn a_minute_window_counts_what_the_map_would() {
        let day = 1_792_022_400_000_000_000;
        let minutes = [
            day,
            day + MINUTE_NS,
            day + 1439 * MINUTE_NS,
            day + 2000 * MINUTE_NS,
            day - 2000 * MINUTE_NS,
            day + 1,
            -7 * MINUTE_NS,
        ];
        let dense = same_as_a_map::<Minutes>(&minutes, |i| if i % 4 < 3 { 0 } else { 5000 });
        assert!(
            matches!(dense.blocks.first(), Some(Some(_))),
            "pair 0 has a window"
        );
    }
}
