//! "Did you mean" suggestions for misspelled names and fields.

/// The candidate closest to `wanted`: a case-insensitive match, else the nearest within two
/// edits (three for names of twelve characters or more). A candidate that shares no
/// character position with the name (`ab` vs `cd`) is not a typo of it. Ties go to the
/// first candidate.
pub fn closest<'a, S: AsRef<str> + ?Sized + 'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a S>,
) -> Option<&'a str> {
    let lower = wanted.to_lowercase();
    let len = lower.chars().count();
    let max = if len >= 12 { 3 } else { 2 };
    candidates
        .into_iter()
        .map(AsRef::as_ref)
        .filter(|c| *c != wanted)
        .filter_map(|c| {
            let cl = c.to_lowercase();
            let d = bounded_levenshtein(&lower, &cl, max)?;
            (d == 0 || d < len.max(cl.chars().count())).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance if it is at most `max`. Lengths further apart than `max` are
/// rejected before any work, which keeps a pathological multi-megabyte key cheap.
fn bounded_levenshtein(a: &str, b: &str, max: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[b.len()];
    (d <= max).then_some(d)
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
        assert_eq!(closest("ab", ["cd"]), None);
        assert_eq!(closest(&"x".repeat(1 << 20), ["x"]), None);
    }
}
