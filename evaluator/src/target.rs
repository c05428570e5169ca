//! An objective's `evaluationTarget` and the comparison, as Keptn's evaluation controller does
//! it (lifecycle-operator/controllers/lifecycle/keptnevaluation/common.go `checkValue`): the
//! first character is the operator, `>` or `<` only, the rest a float; the value passes when it
//! is strictly greater / less. A NaN value never passes. Keptn has no `>=`, `<=` or `=`: there
//! `<=0.5` fails every attempt with a float parse error; here it is a configuration error.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Greater,
    Less,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub op: Op,
    pub bound: f64,
    /// The target as written, for messages.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("evaluationTarget is empty (Keptn needs `>` or `<` and a number, e.g. >1)")]
    Empty,
    #[error(
        "evaluationTarget {0:?}: the operator must be `>` or `<` (Keptn supports no other; e.g. >1, <0.5)"
    )]
    Operator(String),
    #[error("evaluationTarget {0:?}: {1:?} after the operator is not a number (e.g. >1, <0.5)")]
    Number(String, String),
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        let mut chars = text.chars();
        let op = match chars.next() {
            None => return Err(TargetError::Empty),
            Some('>') => Op::Greater,
            Some('<') => Op::Less,
            Some(_) => return Err(TargetError::Operator(text.to_string())),
        };
        let rest = chars.as_str();
        let number_err = || TargetError::Number(text.to_string(), rest.to_string());
        if rest.starts_with('=') {
            return Err(TargetError::Operator(text.to_string()));
        }
        let bound = crate::gofloat::parse(rest).ok_or_else(number_err)?;
        // Keptn: `math.IsNaN(compareValue)` fails the objective on every attempt.
        if bound.is_nan() {
            return Err(number_err());
        }
        Ok(Target {
            op,
            bound,
            text: text.to_string(),
        })
    }

    /// Keptn's comparison: strict, NaN never passes.
    pub fn met_by(&self, value: f64) -> bool {
        !value.is_nan()
            && match self.op {
                Op::Greater => value > self.bound,
                Op::Less => value < self.bound,
            }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keptn_operators_are_strict() {
        let gt = Target::parse(">1").unwrap();
        assert!(gt.met_by(1.5) && !gt.met_by(1.0) && !gt.met_by(0.2));
        let lt = Target::parse("<0.01").unwrap();
        assert!(lt.met_by(0.001) && !lt.met_by(0.01));
        assert!(Target::parse(">-2").unwrap().met_by(-1.0));
        assert!(Target::parse("<1e3").unwrap().met_by(999.0));
        assert!(!gt.met_by(f64::NAN));
        assert!(gt.met_by(f64::INFINITY));
    }

    #[test]
    fn unparsable_targets() {
        assert_eq!(Target::parse(""), Err(TargetError::Empty));
        for bad in ["<=0.5", ">=1", "=1", "1", " >1", "!=3"] {
            assert_eq!(
                Target::parse(bad),
                Err(TargetError::Operator(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            Target::parse("> 1"),
            Err(TargetError::Number("> 1".into(), " 1".into()))
        );
        assert_eq!(
            Target::parse(">"),
            Err(TargetError::Number(">".into(), "".into()))
        );
        assert_eq!(
            Target::parse(">NaN"),
            Err(TargetError::Number(">NaN".into(), "NaN".into()))
        );
        assert_eq!(
            Target::parse("<=0.5").unwrap_err().to_string(),
            "evaluationTarget \"<=0.5\": the operator must be `>` or `<` (Keptn supports no other; e.g. >1, <0.5)"
        );
    }
}
