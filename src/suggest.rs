//! "Did you mean" suggestions for misspelled names.

/// The candidate closest to `wanted` by edit distance, if it is close enough to be a typo
/// (at most 2 edits, or a third of the name) or differs only in case.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wanted.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .map(|c| {
            let d = if c.eq_ignore_ascii_case(wanted) {
                0
            } else {
                levenshtein(wanted, c)
            };
            (d, c)
        })
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_typos_only() {
        let names = ["notify-slack", "pre-check", "deploy-gate"];
        assert_eq!(closest("notify-slak", names), Some("notify-slack"));
        assert_eq!(closest("Pre-Check", names), Some("pre-check"));
        assert_eq!(closest("something-else", names), None);
    }
}
