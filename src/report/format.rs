//! Numbers for people: thousands separators, currency symbols, percentages,
//! durations. Used in the HTML dashboards and mail text only; the CSV exports
//! never carry separators or symbols (SPEC 2 number formats). Money is
//! formatted from exact scaled integers, never through binary floats. Pure.

use crate::money::{format_scaled, rescale};

/// `1234567` -> `1,234,567`.
pub fn int(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Group the integer part of a plain decimal string (`-1234.5` -> `-1,234.5`).
fn group(text: &str) -> String {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", text),
    };
    let (int_part, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let grouped = int(int_part.parse::<i64>().unwrap_or(0));
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// USD for a dashboard: `$1,234.57`; amounts that would round to a cent or
/// less show up to 6 decimals (`$0.000012`), so no non-zero spend reads $0.00.
pub fn usd(units: i128, scale: i8) -> String {
    let cents = rescale(units, scale, 2);
    let text = if cents.abs() >= 1 || units == 0 {
        format_scaled(cents, 2)
    } else {
        let micro = rescale(units, scale, 6);
        let t = format_scaled(micro, 6);
        let t = t.trim_end_matches('0');
        let t = t.strip_suffix('.').unwrap_or(t).to_string();
        if micro == 0 { "0.00".into() } else { t }
    };
    let grouped = group(&text);
    match grouped.strip_prefix('-') {
        Some(rest) => format!("-${rest}"),
        None => format!("${grouped}"),
    }
}

/// A price or small amount with 6 decimals: `$0.002500`.
pub fn usd6(units: i128, scale: i8) -> String {
    let t = group(&format_scaled(rescale(units, scale, 6), 6));
    match t.strip_prefix('-') {
        Some(rest) => format!("-${rest}"),
        None => format!("${t}"),
    }
}

/// A rate as a percentage with `decimals` decimals: `0.01234` -> `1.23%`.
pub fn percent(rate: f64, decimals: usize) -> String {
    format!("{:.*}%", decimals, rate * 100.0)
}

/// Milliseconds: `1,234 ms` (one decimal under 100 ms).
pub fn ms(v: f64) -> String {
    if v.abs() < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{} ms", int(v.round() as i64))
    }
}

/// Requests per second: 3 significant digits at least.
pub fn qps(v: f64) -> String {
    if v >= 100.0 {
        int(v.round() as i64)
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The relative change from `before` to `now`: `+12.3%`, `-4.0%`; `None`
/// without a base to compare with.
pub fn change(now: f64, before: f64) -> Option<String> {
    if !before.is_finite() || before == 0.0 || !now.is_finite() {
        return None;
    }
    let pct = signed_zero_free((now - before) / before.abs() * 100.0, 1);
    Some(format!("{}{:.1}%", if pct >= 0.0 { "+" } else { "" }, pct))
}

/// The change of a rate in percentage points: `+0.8 pp`.
pub fn change_pp(now: f64, before: f64) -> String {
    let pp = signed_zero_free((now - before) * 100.0, 2);
    format!("{}{:.2} pp", if pp >= 0.0 { "+" } else { "" }, pp)
}

/// `v` rounded to `decimals`, with a negative zero (float noise: `-0.00`)
/// made `0`.
fn signed_zero_free(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    let r = (v * f).round() / f;
    if r == 0.0 { 0.0 } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_money_read_like_a_finance_report() {
        assert_eq!(int(0), "0");
        assert_eq!(int(999), "999");
        assert_eq!(int(1000), "1,000");
        assert_eq!(int(-1234567), "-1,234,567");
        // 34254.151234 at scale 6
        assert_eq!(usd(34_254_151_234, 6), "$34,254.15");
        assert_eq!(usd(12, 6), "$0.000012");
        assert_eq!(usd(0, 6), "$0.00");
        assert_eq!(usd(-1_500_000, 6), "-$1.50");
        // Half a cent rounds (half to even) to 0 cents: shown exactly instead.
        assert_eq!(usd(5_000, 6), "$0.005");
        assert_eq!(usd(15_000, 6), "$0.02");
        assert_eq!(usd6(2_500, 6), "$0.002500");
        assert_eq!(usd6(1_234_567_000_000, 6), "$1,234,567.000000");
    }

    #[test]
    fn rates_durations_and_changes() {
        assert_eq!(percent(0.012345, 2), "1.23%");
        assert_eq!(ms(1234.4), "1,234 ms");
        assert_eq!(ms(12.34), "12.3 ms");
        assert_eq!(qps(0.080625), "0.0806");
        assert_eq!(qps(1.4), "1.40");
        assert_eq!(change(110.0, 100.0).as_deref(), Some("+10.0%"));
        assert_eq!(change(0.1 + 0.2, 0.3).as_deref(), Some("+0.0%"));
        assert_eq!(change_pp(0.3, 0.1 + 0.2), "+0.00 pp");
        assert_eq!(change_pp(0.0769, 0.0701), "+0.68 pp");
        assert_eq!(change(90.0, 100.0).as_deref(), Some("-10.0%"));
        assert_eq!(change(1.0, 0.0), None);
        assert_eq!(change_pp(0.021, 0.013), "+0.80 pp");
    }
}
