//! A `u64` in decimal, written digit by digit into a buffer on the stack:
//! for text made on every request (a log field, a header value, a Redis
//! key), where `format!` and `Display` go through the formatting machinery
//! and its padding logic for a handful of digits.

/// The digits of one number; [`Decimal::as_str`] reads them.
#[derive(Clone, Copy)]
pub struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    /// `n`'s digits, no sign, no padding (`u64::MAX` has 20).
    #[inline]
    pub fn new(mut n: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            // n % 10 < 10: the cast cannot truncate.
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Self { digits, start }
    }

    /// The digits, as ASCII bytes (no UTF-8 check to pay).
    #[inline]
    pub fn digits(&self) -> &[u8] {
        &self.digits[self.start..]
    }

    /// The digits as text.
    pub fn as_str(&self) -> &str {
        // ASCII digits only.
        std::str::from_utf8(&self.digits[self.start..]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_what_format_writes() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            255,
            12_345,
            1_000_000,
            u64::MAX / 3,
            u64::MAX,
        ] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
            assert_eq!(Decimal::new(n).digits(), n.to_string().as_bytes());
        }
    }
}
