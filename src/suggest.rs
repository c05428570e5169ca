//! "Did you mean" suggestions for misspelled names and fields.

/// Names longer than this get no suggestion, and longer candidates are never suggested: a
/// typo is found in names people type, and the limit keeps one comparison at most
/// `MAX_LEN * (2 * 3 + 1)` steps, however long hostile input makes them.
pub const MAX_LEN: usize = 256;

/// At most this many candidates of plausible length are compared per name, so that one
/// suggestion costs at most `O(MAX_COMPARED * MAX_LEN)`. A name with more plausible candidates
/// than that gets no suggestion: stopping early could suggest a worse candidate than one not
/// yet compared.
pub const MAX_COMPARED: usize = 10_000;

/// Candidates one [`Budget`] lets a stage compare, over all of its suggestions: a stage that
/// reports a finding per object and suggests from the names of every object was quadratic
/// (3,000 unknown task names among 3,000 definitions took 1.3 s, and ten times as many two
/// minutes). A million short comparisons take about a tenth of a second; an honest repository
/// makes a few hundred.
pub const STAGE_BUDGET: usize = 1_000_000;

/// What is left of a stage's [`STAGE_BUDGET`]. Once it is spent, findings get no suggestion,
/// the same for the same input: the stages report in input order.
#[derive(Debug)]
pub struct Budget {
    left: std::cell::Cell<usize>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(STAGE_BUDGET)
    }
}

impl Budget {
    pub fn new(candidates: usize) -> Self {
        Budget {
            left: std::cell::Cell::new(candidates),
        }
    }

    /// Whether nothing is left: candidates listed now would not be compared.
    pub fn spent(&self) -> bool {
        self.left.get() == 0
    }

    /// [`closest`], with the candidates listed only while some budget is left, each one
    /// counted. A suggestion that would spend more than is left is not made: the best
    /// candidate might be among those not compared.
    pub fn closest<'a, I, S>(&self, wanted: &str, candidates: impl FnOnce() -> I) -> Option<&'a str>
    where
        I: IntoIterator<Item = &'a S>,
        S: AsRef<str> + ?Sized + 'a,
    {
        let left = self.left.get();
        if left == 0 {
            return None;
        }
        let seen = std::cell::Cell::new(0usize);
        let counted = candidates()
            .into_iter()
            .take(left.saturating_add(1))
            .inspect(|_| seen.set(seen.get() + 1));
        let found = closest(wanted, counted);
        if seen.get() > left {
            self.left.set(0);
            return None;
        }
        self.left.set(left - seen.get());
        found
    }
}

/// The candidate closest to `wanted`: a case-insensitive match, else the nearest within two
/// edits (three for names of twelve characters or more), else a candidate that differs from
/// the name by whole words at its start or end (`smoke` and `smoke-test`, `inline` and
/// `inlineScript`), the one with the fewest extra characters. A candidate that shares no
/// character position with the name (`ab` vs `cd`) is not a typo of it. Ties go to the
/// first candidate.
pub fn closest<'a, S: AsRef<str> + ?Sized + 'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a S>,
) -> Option<&'a str> {
    nearest(wanted, candidates, true)
}

/// [`closest`] without the whole-word matches: only a case-insensitive match or a typo within
/// the edit bound. For candidates from elsewhere (fields of other objects), where a shared word
/// says little.
pub fn closest_typo<'a, S: AsRef<str> + ?Sized + 'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a S>,
) -> Option<&'a str> {
    nearest(wanted, candidates, false)
}

fn nearest<'a, S: AsRef<str> + ?Sized + 'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a S>,
    affixes: bool,
) -> Option<&'a str> {
    // Bytes bound characters from above: a cheap first cut before anything is counted.
    if wanted.len() > 4 * MAX_LEN {
        return None;
    }
    let lower: Vec<char> = wanted.to_lowercase().chars().collect();
    let len = lower.len();
    if len > MAX_LEN {
        return None;
    }
    // ASCII names (nearly all) are compared as bytes, lowercased on the fly: no allocation
    // per candidate.
    let lower_ascii: Option<Vec<u8>> = wanted
        .is_ascii()
        .then(|| wanted.bytes().map(|b| b.to_ascii_lowercase()).collect());
    let max = if len >= 12 { 3 } else { 2 };
    let mut best: Option<(usize, &str)> = None;
    // Word-affix matches, by extra characters: used only when no candidate is within `max`.
    let mut best_affix: Option<(usize, &str)> = None;
    let mut compared = 0;
    for c in candidates.into_iter().map(AsRef::as_ref) {
        if c == wanted || c.len() > 4 * MAX_LEN {
            continue;
        }
        let edit = match &lower_ascii {
            Some(a) if c.is_ascii() => {
                (c.len() <= MAX_LEN && c.len().abs_diff(len) <= max).then(|| {
                    let eq = |x: &u8, y: &u8| *x == y.to_ascii_lowercase();
                    (bounded_levenshtein(a, c.as_bytes(), max, eq), c.len())
                })
            }
            _ => {
                let cl: Vec<char> = c.to_lowercase().chars().collect();
                (cl.len() <= MAX_LEN && cl.len().abs_diff(len) <= max)
                    .then(|| (bounded_levenshtein(&lower, &cl, max, char::eq), cl.len()))
            }
        };
        let affix = affixes && best.is_none() && may_be_word_affix(wanted, c);
        if edit.is_none() && !affix {
            continue;
        }
        compared += 1;
        if compared > MAX_COMPARED {
            return None;
        }
        if let Some((Some(d), c_len)) = edit
            && (d == 0 || d < len.max(c_len))
            && best.is_none_or(|(b, _)| d < b)
        {
            best = Some((d, c));
        }
        if affix
            && let Some(extra) = word_affix(wanted, c)
            && best_affix.is_none_or(|(b, _)| extra < b)
        {
            best_affix = Some((extra, c));
        }
    }
    best.or(best_affix).map(|(_, c)| c)
}

/// The cheap first cut of [`word_affix`]: the shorter name is long enough to mean something
/// and the two share their first or their last character.
fn may_be_word_affix(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let same = |x: Option<u8>, y: Option<u8>| matches!((x, y), (Some(x), Some(y)) if x.eq_ignore_ascii_case(&y));
    short.len() >= 3
        && long.len() > short.len()
        && long.len() <= MAX_LEN
        && (same(short.bytes().next(), long.bytes().next())
            || same(short.bytes().last(), long.bytes().last()))
}

/// How many characters the longer of `a` and `b` adds, when the shorter one is its first or
/// last words (ASCII case ignored): the rest starts or ends at a separator (`-`, `_`, `.`,
/// `/`) or at a camelCase step. `None` otherwise.
fn word_affix(a: &str, b: &str) -> Option<usize> {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.chars().count() < 3 || long.len() == short.len() || long.len() > MAX_LEN {
        return None;
    }
    let sep = |c: char| matches!(c, '-' | '_' | '.' | '/');
    let camel = |before: char, after: char| {
        (before.is_ascii_lowercase() || before.is_ascii_digit()) && after.is_ascii_uppercase()
    };
    // Longer in bytes need not be longer in characters (`ñ` is two bytes); a match below
    // makes it so, and until then nothing may subtract the counts.
    let extra = long.chars().count().saturating_sub(short.chars().count());
    let split = long.len() - short.len();
    if long.is_char_boundary(short.len()) && long[..short.len()].eq_ignore_ascii_case(short) {
        let rest = &long[short.len()..];
        let last = long[..short.len()].chars().next_back()?;
        let next = rest.chars().next()?;
        if sep(next) || camel(last, next) {
            return Some(extra);
        }
    }
    if long.is_char_boundary(split) && long[split..].eq_ignore_ascii_case(short) {
        let rest = &long[..split];
        let before = rest.chars().next_back()?;
        let first = long[split..].chars().next()?;
        if sep(before) || camel(before, first) {
            return Some(extra);
        }
    }
    None
}

/// Levenshtein distance if it is at most `max` (and `b` at most [`MAX_LEN`] long): only the
/// diagonal band of width `2 * max + 1` is computed, and the comparison stops as soon as a
/// whole row is beyond `max`.
fn bounded_levenshtein<A, B>(
    a: &[A],
    b: &[B],
    max: usize,
    eq: impl Fn(&A, &B) -> bool,
) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max || b.len() > MAX_LEN {
        return None;
    }
    // Cells outside the band stand for "more than max".
    let over = max + 1;
    let width = b.len() + 1;
    let mut rows = vec![over; 2 * width];
    let (row_a, row_b) = rows.split_at_mut(width);
    let (mut prev, mut cur) = (row_a, row_b);
    for (j, cell) in prev.iter_mut().enumerate() {
        *cell = j.min(over);
    }
    for (i, ca) in a.iter().enumerate() {
        let row = i + 1;
        let lo = row.saturating_sub(max).max(1);
        let hi = (row + max).min(b.len());
        // Only the band is written. Its left neighbour (read for this row's first cell) and
        // right neighbour (read by the next row) hold a row from two rows ago: reset them.
        cur[lo - 1] = over;
        if hi < b.len() {
            cur[hi + 1] = over;
        }
        cur[0] = row.min(over);
        let mut row_min = cur[0];
        for j in lo..=hi {
            let subst = prev[j - 1] + usize::from(!eq(ca, &b[j - 1]));
            let v = subst.min(prev[j] + 1).min(cur[j - 1] + 1).min(over);
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max {
            return None;
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
    fn a_budget_counts_every_candidate_and_refuses_past_its_end() {
        let names = ["notify-slack", "pre-check", "deploy-gate"];
        let budget = Budget::new(7);
        assert_eq!(
            budget.closest("notify-slak", || names),
            Some("notify-slack")
        );
        assert_eq!(budget.closest("pre-chek", || names), Some("pre-check"));
        // One left, three to compare: no suggestion, and none after, not even from one name.
        assert_eq!(budget.closest("deploy-gat", || names), None);
        let listed = std::cell::Cell::new(false);
        let none = budget.closest("deploy-gat", || {
            listed.set(true);
            ["deploy-gate"]
        });
        assert_eq!((none, listed.get()), (None, false));
        // Exactly what is left is enough.
        assert!(budget.spent());
        let exact = Budget::new(3);
        assert_eq!(exact.closest("deploy-gat", || names), Some("deploy-gate"));
        assert!(exact.spent());
        assert_eq!(exact.closest("deploy-gat", || names), None);
    }

    #[test]
    fn suggests_typos_only() {
        let names = ["notify-slack", "pre-check", "deploy-gate"];
        assert_eq!(closest("notify-slak", names), Some("notify-slack"));
        assert_eq!(closest("Pre-Check", names), Some("pre-check"));
        assert_eq!(closest("something-else", names), None);
        assert_eq!(closest("ab", ["cd"]), None);
        assert_eq!(closest(&"x".repeat(1 << 20), ["x"]), None);
    }

    #[test]
    fn whole_words_at_either_end_are_suggested() {
        let names = ["smoke-test", "notify", "inline", "deploy_gate"];
        assert_eq!(closest("smoke", names), Some("smoke-test"));
        assert_eq!(closest("notify-slack", names), Some("notify"));
        assert_eq!(closest("inlineScript", names), Some("inline"));
        assert_eq!(closest_typo("inlineScript", names), None);
        assert_eq!(closest_typo("notfy", names), Some("notify"));
        assert_eq!(closest("gate", names), Some("deploy_gate"));
        assert_eq!(closest("pre-smoke-test", names), Some("smoke-test"));
        // Not at a word boundary, or too short to mean something.
        assert_eq!(closest("smoketest", ["smoke"]), None);
        assert_eq!(closest("inlines", ["inlineScript"]), None);
        assert_eq!(closest("ab", ["ab-cdefg"]), None);
        assert_eq!(closest("abc", ["abc-defgh"]), Some("abc-defgh"));
        // A typo within the edit bound wins over a word match; among word matches the one
        // adding least.
        assert_eq!(closest("smoke", ["smoke-test", "smoky"]), Some("smoky"));
        assert_eq!(
            closest("smoke", ["smoke-test-long", "smoke-test"]),
            Some("smoke-test")
        );
        // More bytes but fewer characters (a fuzzer's find): no match, no overflow.
        let lossy = "KeptnTaskDef\u{fffd}\u{fffd}\u{fffd}\u{fffd}ion";
        assert_eq!(closest(lossy, ["KeptnWorkloadVersion"]), None);
        assert_eq!(closest("ñññññ", ["ñbcdefgh"]), None);
        assert_eq!(closest("ñbcdefgh", ["ñññññ"]), None);
        // Over the length limit: nothing, whichever side is long.
        let long = format!("smoke-{}", "x".repeat(MAX_LEN));
        assert_eq!(closest("smoke", [long.as_str()]), None);
        assert_eq!(closest(&long, ["smoke"]), None);
    }

    #[test]
    fn the_band_gives_the_full_distance() {
        let full = |a: &str, b: &str| {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            let mut prev: Vec<usize> = (0..=b.len()).collect();
            for (i, ca) in a.iter().enumerate() {
                let mut cur = vec![i + 1; b.len() + 1];
                for (j, cb) in b.iter().enumerate() {
                    cur[j + 1] = (prev[j] + usize::from(ca != cb))
                        .min(prev[j + 1] + 1)
                        .min(cur[j] + 1);
                }
                prev = cur;
            }
            prev[b.len()]
        };
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "abc",
            "acb",
            "kitten",
            "sitting",
            "notify-slack",
            "notify-slak",
            "slack-notify",
            "pre-check",
            "prec-heck",
            "ñandú",
            "nandu",
        ];
        // And many short strings over a small alphabet, where edits overlap most.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as usize
        };
        let mut random: Vec<String> = Vec::new();
        for _ in 0..300 {
            let n = next() % 9;
            random.push((0..n).map(|_| ['a', 'b', 'c', 'ñ'][next() % 4]).collect());
        }
        for pair in random.chunks(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let (ca, cb): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            for max in 0..5 {
                let d = full(a, b);
                assert_eq!(
                    bounded_levenshtein(&ca, &cb, max, char::eq),
                    (d <= max).then_some(d),
                    "{a:?} {b:?} {max}"
                );
            }
        }
        for a in words {
            for b in words {
                for max in 0..4 {
                    let (ca, cb): (Vec<char>, Vec<char>) =
                        (a.chars().collect(), b.chars().collect());
                    let d = full(a, b);
                    assert_eq!(
                        bounded_levenshtein(&ca, &cb, max, char::eq),
                        (d <= max).then_some(d),
                        "{a:?} {b:?} {max}"
                    );
                }
            }
        }
    }

    #[test]
    fn very_long_names_get_no_suggestion_and_return() {
        // Equal lengths pass the length cut; without a bound this is 10^10 steps.
        let long = "a".repeat(100_000);
        let typo = format!("{}b", "a".repeat(99_999));
        assert_eq!(closest(&long, [typo.as_str()]), None);
        assert_eq!(closest(&typo, [long.as_str(), "x"]), None);
        // Long candidates are skipped, short ones still found.
        let at_limit = "n".repeat(MAX_LEN);
        let over = "n".repeat(MAX_LEN + 1);
        assert_eq!(closest(&at_limit, [over.as_str()]), None);
        let near = format!("{}m", "n".repeat(MAX_LEN - 1));
        assert_eq!(closest(&at_limit, [near.as_str()]), Some(near.as_str()));
        assert_eq!(
            closest("notify-slak", [long.as_str(), "notify-slack"]),
            Some("notify-slack")
        );
    }

    #[test]
    fn too_many_plausible_candidates_give_no_suggestion() {
        let many: Vec<String> = (0..MAX_COMPARED).map(|i| format!("zzzz-{i:06}")).collect();
        let mut names: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(closest("notify-slak", names.iter().copied()), None);
        names.push("notify-slack");
        // One more than the cap: not even the first candidates' best is offered.
        assert_eq!(closest("notify-slak", names.iter().copied()), None);
        names.remove(0);
        assert_eq!(
            closest("notify-slak", names.iter().copied()),
            Some("notify-slack")
        );
        // Implausible lengths do not count.
        let mut with_short: Vec<&str> = vec!["a"; 2 * MAX_COMPARED];
        with_short.push("notify-slack");
        assert_eq!(closest("notify-slak", with_short), Some("notify-slack"));
        // Word-affix candidates count as compared too.
        let affixes: Vec<String> = (0..=MAX_COMPARED)
            .map(|i| format!("smoke-test-{i:05}"))
            .collect();
        let all = affixes.iter().map(String::as_str);
        assert_eq!(closest("smoke", all.clone()), None);
        assert_eq!(closest("smoke", all.skip(1)), Some("smoke-test-00001"));
    }
}
