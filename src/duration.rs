//! Ages given on the command line (`--older-than 90d`): a whole number and one unit.
//!
//! Deliberately small: minutes, hours, days and weeks cover key rotation policies, and a
//! format without months or years has no calendar ambiguity (a day is 86 400 seconds).

use crate::error::{Error, Result};

/// The longest age accepted: 100 years, far beyond any rotation policy but far from overflow.
const MAX_SECONDS: u64 = 100 * 365 * 86_400;

/// Parses `90d`, `12h`, `2w` or `30m` into seconds.
///
/// # Errors
/// [`Error::Usage`] naming the option and the value, with the accepted forms.
pub(crate) fn parse_seconds(option: &str, text: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::Usage(format!(
            "`{option} {}` is not an age{why}: give a whole number and a unit, e.g. `90d`, `12h` or `2w` (units: m, h, d, w)",
            text.escape_debug()
        ))
    };
    let unit_at = text.len().checked_sub(1).filter(|&i| text.is_char_boundary(i)).ok_or_else(|| bad(""))?;
    let (number, unit) = text.split_at(unit_at);
    let scale: u64 = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad("")),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(""));
    }
    let n: u64 = number.parse().map_err(|_| bad(" (too large)"))?;
    match n.checked_mul(scale) {
        Some(0) => Err(bad(" (it must be more than zero)")),
        Some(s) if s <= MAX_SECONDS => Ok(s),
        _ => Err(bad(" (at most 100 years)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_scale_and_everything_else_is_refused() {
        assert_eq!(parse_seconds("--older-than", "90d").ok(), Some(90 * 86_400));
        assert_eq!(parse_seconds("--older-than", "12h").ok(), Some(12 * 3_600));
        assert_eq!(parse_seconds("--older-than", "2w").ok(), Some(14 * 86_400));
        assert_eq!(parse_seconds("--older-than", "30m").ok(), Some(1_800));
        for bad in ["", "d", "90", "90x", "-1d", "+1d", "1.5d", "0d", "90 d", "9999999999999w", "99999999999999999999d", "9é"] {
            assert!(parse_seconds("--older-than", bad).is_err(), "{bad:?}");
        }
    }
}
