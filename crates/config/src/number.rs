//! Numbers as Dante reads them: strtoll with base 0, so `0x50` is hex and `010` is octal (8).

/// Why a number token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberError {
    NotANumber,
    TooLarge,
}

/// Parses a number token in Dante's forms.
pub(crate) fn parse(text: &str) -> Result<u64, NumberError> {
    let (digits, radix) =
        if let Some(h) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (h, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(NumberError::NotANumber);
    }
    u64::from_str_radix(digits, radix).map_err(|_| NumberError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dante_forms() {
        assert_eq!(parse("80"), Ok(80));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("0x50"), Ok(80));
        assert_eq!(parse("010"), Ok(8));
        assert_eq!(parse("08"), Err(NumberError::NotANumber));
        assert_eq!(parse("12a"), Err(NumberError::NotANumber));
        assert_eq!(parse("0x"), Err(NumberError::NotANumber));
        assert_eq!(parse("99999999999999999999999"), Err(NumberError::TooLarge));
    }
}
