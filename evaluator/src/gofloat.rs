//! Floats as Go reads and prints them, so values look exactly as Keptn reports them: Prometheus
//! sample values go through `model.SampleValue.String()` (`strconv.FormatFloat(v, 'f', -1, 64)`),
//! aggregated values through `fmt.Sprintf("%v", v)`; both sides are parsed with
//! `strconv.ParseFloat`. Datadog values go through `strconv.FormatFloat(v, 'g', 5, 64)` and
//! `fmt.Sprintf("%f", v)`.

/// `strconv.ParseFloat(s, 64)` for the decimal forms (and Inf/NaN spellings Go accepts).
pub fn parse(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let special = matches!(
        unsigned.to_ascii_lowercase().as_str(),
        "inf" | "infinity" | "nan"
    );
    let plain = !unsigned.is_empty()
        && unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if !(special || plain) {
        return None;
    }
    text.parse().ok()
}

/// `strconv.FormatFloat(v, 'f', -1, 64)`: shortest round-trip digits, never an exponent.
pub fn format_f(v: f64) -> String {
    match special(v) {
        Some(s) => s.to_string(),
        None => format!("{v}"),
    }
}

/// `fmt.Sprintf("%v", v)`: like `format_f`, but with an exponent (`1e+21`, `1.5e-05`) when the
/// decimal exponent is below -4 or at least 21.
pub fn format_v(v: f64) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let e = format!("{v:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    format!("{v}")
}

/// `strconv.FormatFloat(v, 'g', precision, 64)`: `precision` significant digits, trailing
/// zeros dropped, an exponent when it is below -4 or at least `precision`.
pub fn format_g(v: f64, precision: usize) -> String {
    if let Some(s) = special(v) {
        return s.to_string();
    }
    if v == 0.0 {
        return "0".into();
    }
    let precision = precision.max(1);
    let e = format!("{:.*e}", precision - 1, v);
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs());
    }
    let decimals = (precision as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

/// `fmt.Sprintf("%f", v)`: six decimals.
pub fn format_fixed6(v: f64) -> String {
    match special(v) {
        Some(s) => s.to_string(),
        None => format!("{v:.6}"),
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn special(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("+Inf")
    } else if v == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        assert_eq!(parse("1.2"), Some(1.2));
        assert_eq!(parse("-3"), Some(-3.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse(".5"), Some(0.5));
        assert_eq!(parse("+Inf"), Some(f64::INFINITY));
        assert!(parse("NaN").unwrap().is_nan());
        for bad in ["", " 1", "1 ", "=0.5", "abc", "0x10", "1,5"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_f(1.2), "1.2");
        assert_eq!(format_f(3.0), "3");
        assert_eq!(format_f(1e21), "1000000000000000000000");
        assert_eq!(format_f(f64::INFINITY), "+Inf");
        assert_eq!(format_f(f64::NAN), "NaN");
        assert_eq!(format_v(9.0), "9");
        assert_eq!(format_v(0.25), "0.25");
        assert_eq!(format_v(1e21), "1e+21");
        assert_eq!(format_v(1.5e-5), "1.5e-05");
        assert_eq!(format_v(-2.5e300), "-2.5e+300");
        assert_eq!(format_v(0.0), "0");
    }

    #[test]
    fn formats_g5_like_go() {
        // Keptn's datadog test: the average of its recorded points is "89.116".
        assert_eq!(format_g(89.11582718767439, 5), "89.116");
        assert_eq!(format_g(1.5, 5), "1.5");
        assert_eq!(format_g(100000.0, 5), "1e+05");
        assert_eq!(format_g(123456.0, 5), "1.2346e+05");
        assert_eq!(format_g(0.0001234567, 5), "0.00012346");
        assert_eq!(format_g(0.00001234567, 5), "1.2346e-05");
        assert_eq!(format_g(-42.0, 5), "-42");
        assert_eq!(format_g(0.0, 5), "0");
        assert_eq!(format_fixed6(92.37997436523438), "92.379974");
    }
}
