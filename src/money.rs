//! Exact money arithmetic: scaled integers, half-to-even rounding, and the two
//! SQL functions that round money where DataFusion's decimal division cannot.
//!
//! Money flows through the queries as `Decimal128` (exact). Sums and products
//! stay exact in DataFusion; a quotient (cost per 1k tokens) and the final
//! rounding to 6 decimals are done here on the integers, half to even, so no
//! value is ever rounded twice. Pure logic: no I/O.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array};
use arrow::datatypes::{DataType, Decimal128Type, Int64Type};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// Scale of per-token prices: price tables give USD per 1000 tokens with up to
/// 20 decimals (LiteLLM's history has float artifacts such as
/// `0.00030001999999999996`); dividing by 1000 adds 3.
pub const PRICE_SCALE: i8 = 23;
/// Most decimals a per-1k price may have.
pub const MAX_PRICE_DECIMALS: u32 = 20;
/// Scale of logged costs and FX rates after conversion from the inputs.
pub const AMOUNT_SCALE: i8 = 12;
/// Decimals of money in outputs (SPEC 2: "money in USD with 6 decimals").
pub const OUT_SCALE: i8 = 6;

const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `10^n` for `n <= 38`.
pub fn pow10(n: u32) -> i128 {
    POW10[n as usize]
}

/// `num / den` rounded half to even (ties to the even quotient). `den != 0`.
pub fn div_half_even(num: i128, den: i128) -> i128 {
    debug_assert!(den != 0);
    let (mut q, r) = (num / den, num % den);
    if r != 0 {
        // Compare 2|r| with |den| without overflow.
        let r2 = r.unsigned_abs();
        let d = den.unsigned_abs();
        let twice = r2.checked_mul(2);
        let cmp = match twice {
            Some(t) => t.cmp(&d),
            None => std::cmp::Ordering::Greater,
        };
        let away = (num < 0) != (den < 0);
        let step = if away { -1 } else { 1 };
        match cmp {
            std::cmp::Ordering::Greater => q += step,
            std::cmp::Ordering::Equal if q % 2 != 0 => q += step,
            _ => {}
        }
    }
    q
}

/// Re-scale a scaled integer from `from` to `to` decimals, rounding half to even.
pub fn rescale(value: i128, from: i8, to: i8) -> i128 {
    if to >= from {
        value * pow10((to - from) as u32)
    } else {
        div_half_even(value, pow10((from - to) as u32))
    }
}

/// Format a scaled integer with exactly `scale` decimals (`-1.500000`).
pub fn format_scaled(value: i128, scale: i8) -> String {
    if scale <= 0 {
        return (value * pow10((-scale) as u32)).to_string();
    }
    let neg = value < 0;
    let digits = value.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
}

/// Convert a decimal number (as parsed from an input) to a scaled integer at
/// `scale`, exactly; `None` if it has more decimals than `scale` allows.
pub fn to_scaled(d: rust_decimal::Decimal, scale: u32) -> Option<i128> {
    let s = d.scale();
    if s > scale {
        // Trailing zeros do not count.
        let n = d.normalize();
        if n.scale() > scale {
            return None;
        }
        return Some(n.mantissa() * pow10(scale - n.scale()));
    }
    Some(d.mantissa() * pow10(scale - s))
}

/// `round_money(x DECIMAL) -> DECIMAL(38, 6)`: half-to-even rounding to cents
/// of a cent (6 decimals), the one rounding every money output gets.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RoundMoney {
    signature: Signature,
}

/// `div_money(numerator DECIMAL, denominator BIGINT) -> DECIMAL(38, 6)`: the
/// exact quotient rounded half to even; null when the denominator is 0 or null.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DivMoney {
    signature: Signature,
}

fn out_type() -> DataType {
    DataType::Decimal128(38, OUT_SCALE)
}

fn decimal_scale(dt: &DataType) -> DfResult<i8> {
    match dt {
        DataType::Decimal128(_, s) => Ok(*s),
        other => exec_err!("expected a DECIMAL argument, found {other}"),
    }
}

impl ScalarUDFImpl for RoundMoney {
    fn name(&self) -> &str {
        "round_money"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        decimal_scale(&args[0])?;
        Ok(out_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = &arrays[0];
        let scale = decimal_scale(input.data_type())?;
        let input = input.as_primitive::<Decimal128Type>();
        let out: Decimal128Array = input
            .iter()
            .map(|v| v.map(|v| rescale(v, scale, OUT_SCALE)))
            .collect();
        let out = out.with_precision_and_scale(38, OUT_SCALE)?;
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

impl ScalarUDFImpl for DivMoney {
    fn name(&self) -> &str {
        "div_money"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        decimal_scale(&args[0])?;
        Ok(out_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let scale = decimal_scale(arrays[0].data_type())?;
        let num = arrays[0].as_primitive::<Decimal128Type>();
        let den = arrow::compute::cast(&arrays[1], &DataType::Int64)?;
        let den = den.as_primitive::<Int64Type>();
        let out: Decimal128Array = num
            .iter()
            .zip(den.iter())
            .map(|(n, d)| match (n, d) {
                (Some(n), Some(d)) if d != 0 => {
                    // n * 10^(6 - scale) / d, exactly, then half-even.
                    if scale <= OUT_SCALE {
                        Some(div_half_even(
                            n * pow10((OUT_SCALE - scale) as u32),
                            d as i128,
                        ))
                    } else {
                        Some(div_half_even(
                            n,
                            d as i128 * pow10((scale - OUT_SCALE) as u32),
                        ))
                    }
                }
                _ => None,
            })
            .collect();
        let out = out.with_precision_and_scale(38, OUT_SCALE)?;
        Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
    }
}

/// The money functions the SQL files use, for registration in a session.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(RoundMoney {
            signature: Signature::new(TypeSignature::Any(1), Volatility::Immutable),
        }),
        ScalarUDF::new_from_impl(DivMoney {
            signature: Signature::new(TypeSignature::Any(2), Volatility::Immutable),
        }),
    ]
}

/// A scalar decimal as a scaled integer and scale.
pub fn scalar_decimal(v: &ScalarValue) -> Option<(i128, i8)> {
    match v {
        ScalarValue::Decimal128(Some(x), _, s) => Some((*x, *s)),
        _ => None,
    }
}

/// Read a Decimal128 cell as (value, scale).
pub fn decimal_at(arr: &dyn Array, row: usize) -> Result<Option<(i128, i8)>, DataFusionError> {
    let scale = decimal_scale(arr.data_type())?;
    let a = arr.as_primitive::<Decimal128Type>();
    Ok(if a.is_null(row) {
        None
    } else {
        Some((a.value(row), scale))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn half_even_ties_go_to_even() {
        assert_eq!(div_half_even(25, 10), 2);
        assert_eq!(div_half_even(35, 10), 4);
        assert_eq!(div_half_even(-25, 10), -2);
        assert_eq!(div_half_even(-35, 10), -4);
        assert_eq!(div_half_even(26, 10), 3);
        assert_eq!(div_half_even(24, 10), 2);
        assert_eq!(div_half_even(-26, 10), -3);
        assert_eq!(div_half_even(7, -2), -4); // -3.5 -> -4 (even)
        assert_eq!(div_half_even(5, -2), -2); // -2.5 -> -2
        assert_eq!(div_half_even(0, 7), 0);
    }

    #[test]
    fn rescale_and_format() {
        // 0.0000125 at scale 7 -> 0.000012 (tie, 2 is even)
        assert_eq!(format_scaled(rescale(125, 7, 6), 6), "0.000012");
        // 0.0000135 -> 0.000014 (tie, 4 is even)
        assert_eq!(format_scaled(rescale(135, 7, 6), 6), "0.000014");
        assert_eq!(format_scaled(-1_500_000, 6), "-1.500000");
        assert_eq!(format_scaled(5, 6), "0.000005");
        assert_eq!(format_scaled(0, 6), "0.000000");
        assert_eq!(format_scaled(123, 0), "123");
    }

    #[test]
    fn decimals_convert_exactly_or_not_at_all() {
        let d = rust_decimal::Decimal::from_str("0.00030001999999999996").unwrap();
        // per-1k with 20 decimals -> per-token at scale 23
        assert_eq!(to_scaled(d, 20), Some(30_001_999_999_999_996));
        let d = rust_decimal::Decimal::from_str("1.50000000000000000000000").unwrap();
        assert_eq!(to_scaled(d, 2), Some(150));
        let d = rust_decimal::Decimal::from_str("0.123").unwrap();
        assert_eq!(to_scaled(d, 2), None);
    }
}
