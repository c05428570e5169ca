//! Sort keys of many objects packed into one buffer, in an encoding whose byte order is the
//! order of the fields they were made from.
//!
//! Sorting objects by their names compares each name through two or three pointers (the
//! object, its string, the source text it borrows). At monorepo scale those are cache misses
//! on every comparison: sorting 27,000 input objects took 180 ms at 10,000 apps against 10 ms
//! at 1,000. Packed, each comparison reads two slices of one buffer that fits in the cache.

use std::cmp::Ordering;

/// Field keys of objects, object `i`'s at `ends[i - 1]..ends[i]`.
#[derive(Debug, Default)]
pub struct Packed {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Packed {
    /// The keys of `objects`, each given by its fields. Sized in a first pass: these keys are
    /// made while the render holds the most, and a doubled buffer would raise its peak.
    pub fn new<'a, const N: usize, I>(objects: I) -> Self
    where
        I: IntoIterator<Item = [&'a [u8]; N]>,
        I::IntoIter: Clone + ExactSizeIterator,
    {
        let objects = objects.into_iter();
        let bytes = objects
            .clone()
            .map(|fields| fields.iter().map(|f| f.len() + 2).sum::<usize>());
        let mut keys = Packed {
            bytes: Vec::with_capacity(bytes.sum()),
            ends: Vec::with_capacity(objects.len()),
        };
        for fields in objects {
            keys.push(fields);
        }
        keys
    }

    /// Adds the next object's key. Byte-wise, keys compare as their field lists do
    /// element by element: a NUL byte is written as `00 ff` and every field ends in `00 00`,
    /// so a field that is a prefix of another sorts first.
    fn push<'a>(&mut self, fields: impl IntoIterator<Item = &'a [u8]>) {
        for field in fields {
            let mut rest = field;
            while let Some(nul) = rest.iter().position(|b| *b == 0) {
                self.bytes.extend_from_slice(&rest[..nul]);
                self.bytes.extend_from_slice(&[0, 0xff]);
                rest = &rest[nul + 1..];
            }
            self.bytes.extend_from_slice(rest);
            self.bytes.extend_from_slice(&[0, 0]);
        }
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Each object's position in key order; `tie` orders objects of equal keys, and objects
    /// it finds equal keep their own order. Positions are `u32`s, half the size of indices:
    /// four billion objects would need a terabyte of input.
    pub fn ranks(&self, mut tie: impl FnMut(usize, usize) -> Ordering) -> Vec<u32> {
        let n = u32::try_from(self.len()).expect("fewer than 2^32 objects");
        let mut order: Vec<u32> = (0..n).collect();
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            self.key(a)
                .cmp(self.key(b))
                .then_with(|| tie(a, b))
                .then(a.cmp(&b))
        });
        let mut ranks = vec![0; order.len()];
        for (rank, i) in (0..n).zip(order) {
            ranks[i as usize] = rank;
        }
        ranks
    }
}

/// Puts each item in the place its rank names (`ranks` from [`Packed::ranks`] over the
/// items' keys): in place, each item moved once.
pub fn arrange<T>(items: &mut [T], mut ranks: Vec<u32>) {
    assert_eq!(items.len(), ranks.len(), "one rank per item");
    for i in 0..items.len() {
        while ranks[i] as usize != i {
            let r = ranks[i] as usize;
            items.swap(i, r);
            ranks.swap(i, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packed<const N: usize>(objects: &[Vec<Vec<u8>>]) -> Packed {
        let keys = Packed::new(
            objects
                .iter()
                .map(|fields| std::array::from_fn::<_, N, _>(|i| fields[i].as_slice())),
        );
        // A NUL takes a byte more than counted: only keys without one fill their buffer.
        if !objects.iter().flatten().flatten().any(|b| *b == 0) {
            assert_eq!(keys.bytes.capacity(), keys.bytes.len());
        }
        keys
    }

    #[test]
    fn a_field_that_is_a_prefix_sorts_first_even_before_a_nul() {
        let objects = vec![
            vec![b"ab".to_vec(), b"z".to_vec()],
            vec![b"a".to_vec(), b"zz".to_vec()],
            vec![b"a\0".to_vec(), b"".to_vec()],
            vec![b"a".to_vec(), b"".to_vec()],
        ];
        assert_eq!(
            packed::<2>(&objects).ranks(|_, _| Ordering::Equal),
            [3, 1, 2, 0]
        );
    }

    #[test]
    fn equal_keys_go_by_the_tie_break_then_by_position() {
        let objects = vec![vec![b"k".to_vec()]; 3];
        let by_tie = packed::<1>(&objects).ranks(|a, b| b.cmp(&a));
        assert_eq!(by_tie, [2, 1, 0]);
        assert_eq!(
            packed::<1>(&objects).ranks(|_, _| Ordering::Equal),
            [0, 1, 2]
        );
    }

    proptest! {
        /// Ranks are the positions of a stable sort by the field lists themselves.
        #[test]
        fn ranks_follow_the_order_of_the_fields(
            objects in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(b'a'), Just(0xff)], 0..4), 3),
                0..40,
            )
        ) {
            let mut expected: Vec<usize> = (0..objects.len()).collect();
            expected.sort_by(|&a, &b| objects[a].cmp(&objects[b]));
            let mut want = vec![0u32; objects.len()];
            for (rank, i) in (0..).zip(expected) {
                want[i] = rank;
            }
            prop_assert_eq!(packed::<3>(&objects).ranks(|_, _| Ordering::Equal), want);
        }

        /// Arranged by their ranks, items are sorted stably by their fields.
        #[test]
        fn arranged_by_rank_is_a_stable_sort_by_the_fields(
            objects in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 0..3), 2),
                0..40,
            )
        ) {
            let mut items: Vec<(Vec<Vec<u8>>, usize)> = objects.iter().cloned().zip(0..).collect();
            arrange(&mut items, packed::<2>(&objects).ranks(|_, _| Ordering::Equal));
            let mut want: Vec<(Vec<Vec<u8>>, usize)> = objects.into_iter().zip(0..).collect();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            prop_assert_eq!(items, want);
        }
    }
}
