//! Objects by app key (lookup namespace, app name): KeptnApps, contexts and workloads are
//! listed as they are read and sorted once, by packed keys.
//!
//! B-tree maps keyed by the names did the same job with a search from the root through the
//! names for every object (1.5% of a 10,000-app render, in cache misses).

use crate::sort_key::{self, Packed};

/// An app's lookup namespace and name.
pub type AppKey = (String, String);

/// Values in app key order, one per key.
#[derive(Debug)]
pub struct ByApp<V> {
    items: Vec<(AppKey, V)>,
}

impl<V> Default for ByApp<V> {
    fn default() -> Self {
        ByApp { items: Vec::new() }
    }
}

impl<V> ByApp<V> {
    /// Of values read in input order, the last of each key, as a later insert into a map
    /// replaces the earlier.
    pub fn last_of_each(mut items: Vec<(AppKey, V)>) -> Self {
        // Among equal keys the later goes first, and the first of equal keys stays.
        let ranks = key_ranks(&items, |a, b| b.cmp(&a));
        sort_key::arrange(&mut items, ranks);
        items.dedup_by(|later, kept| later.0 == kept.0);
        ByApp { items }
    }

    /// Every value of each key, in input order.
    pub fn grouped(mut items: Vec<(AppKey, V)>) -> ByApp<Vec<V>> {
        let ranks = key_ranks(&items, |a, b| a.cmp(&b));
        sort_key::arrange(&mut items, ranks);
        let mut groups: Vec<(AppKey, Vec<V>)> = Vec::new();
        for (key, value) in items {
            match groups.last_mut() {
                Some((k, values)) if *k == key => values.push(value),
                _ => groups.push((key, vec![value])),
            }
        }
        ByApp { items: groups }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&AppKey, &V)> {
        self.items.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.items.iter_mut().map(|(_, v)| v)
    }
}

/// Ranks of the items by key, equal keys by `tie` of their positions.
fn key_ranks<V>(
    items: &[(AppKey, V)],
    tie: impl FnMut(usize, usize) -> std::cmp::Ordering,
) -> Vec<u32> {
    let keys = Packed::new(
        items
            .iter()
            .map(|((ns, name), _)| [ns.as_bytes(), name.as_bytes()]),
    );
    keys.ranks(tie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn key(ns: &str, name: &str) -> AppKey {
        (ns.to_string(), name.to_string())
    }

    fn read() -> Vec<(AppKey, u32)> {
        vec![
            (key("b", "x"), 1),
            (key("a", "y"), 2),
            (key("", "z"), 3),
            (key("a", "y"), 4),
            (key("a", ""), 5),
            (key("b", "x"), 6),
        ]
    }

    #[test]
    fn the_last_of_each_key_stays_as_in_a_map() {
        let map: BTreeMap<AppKey, u32> = read().into_iter().collect();
        let by_app = ByApp::last_of_each(read());
        let listed: Vec<(AppKey, u32)> = by_app.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(listed, map.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn groups_keep_the_input_order() {
        let mut map: BTreeMap<AppKey, Vec<u32>> = BTreeMap::new();
        for (k, v) in read() {
            map.entry(k).or_default().push(v);
        }
        let by_app = ByApp::grouped(read());
        let listed: Vec<(AppKey, Vec<u32>)> =
            by_app.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(listed, map.into_iter().collect::<Vec<_>>());
    }
}
