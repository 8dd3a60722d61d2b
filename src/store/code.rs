//! Link codes and frontend tokens: the two random identifiers a session gets.
//!
//! A [`LinkCode`] is the 8-digit number the Yivi app dials as DTMF after the municipality's number. It
//! is personal data in the sense of the house rules (it unlocks a citizen's attributes), so its
//! `Debug`/`Display` print `[redacted]`. A [`FrontendToken`] names the session towards the browser;
//! it is neither the link code nor the IRMA requestor token.
//!
//! Both come from `rand::rng()`, rand's thread-local CSPRNG (ChaCha12, seeded and periodically
//! reseeded from the operating system).

use std::fmt;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// Number of digits in a link code.
pub const CODE_DIGITS: usize = 8;

/// An 8-digit link code. Always exactly [`CODE_DIGITS`] ASCII digits (leading zeros allowed).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LinkCode(String);

/// Why a string is not a link code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("no digits")]
    Empty,
    #[error("fewer than 8 digits")]
    TooShort,
    #[error("more than 8 digits")]
    TooLong,
    #[error("not a digit")]
    NotDigits,
}

impl LinkCode {
    /// A fresh code, uniform over `00000000..=99999999`.
    pub fn generate() -> LinkCode {
        let n: u32 = rand::rng().random_range(0..100_000_000);
        LinkCode(format!("{n:08}"))
    }

    /// Parse digits received from a caller. Only `0-9` are accepted; `*`, `#`, `A-D` are not
    /// part of a code.
    pub fn parse(digits: &str) -> Result<LinkCode, CodeError> {
        if digits.is_empty() {
            return Err(CodeError::Empty);
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::NotDigits);
        }
        match digits.len() {
            n if n < CODE_DIGITS => Err(CodeError::TooShort),
            n if n > CODE_DIGITS => Err(CodeError::TooLong),
            _ => Ok(LinkCode(digits.to_owned())),
        }
    }

    /// The digits. Callers must not log them.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LinkCode {
    type Error = CodeError;
    fn try_from(s: String) -> Result<Self, CodeError> {
        LinkCode::parse(&s)
    }
}

impl From<LinkCode> for String {
    fn from(c: LinkCode) -> String {
        c.0
    }
}

impl fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkCode([redacted])")
    }
}

impl fmt::Display for LinkCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The browser's name for a session: 128 random bits as 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FrontendToken(String);

/// Length of a frontend token in hex digits.
const TOKEN_HEX: usize = 32;

impl FrontendToken {
    pub fn generate() -> FrontendToken {
        let mut bytes = [0u8; TOKEN_HEX / 2];
        rand::rng().fill_bytes(&mut bytes);
        let mut s = String::with_capacity(TOKEN_HEX);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        FrontendToken(s)
    }

    /// Parse a token from a URL path; anything but 32 lowercase hex digits is rejected.
    pub fn parse(s: &str) -> Option<FrontendToken> {
        let ok = s.len() == TOKEN_HEX
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| FrontendToken(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FrontendToken {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, &'static str> {
        FrontendToken::parse(&s).ok_or("not a frontend token")
    }
}

impl From<FrontendToken> for String {
    fn from(t: FrontendToken) -> String {
        t.0
    }
}

impl fmt::Display for FrontendToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_eight_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..200)
            .map(|_| LinkCode::generate().expose().to_owned())
            .collect();
        assert!(codes
            .iter()
            .all(|c| c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit())));
        // 200 draws from 10^8 values: a repeat has probability ~2e-4; 190 distinct is a safe floor.
        assert!(codes.len() > 190, "only {} distinct codes", codes.len());
    }

    #[test]
    fn parse_accepts_exactly_eight_digits() {
        assert_eq!(
            LinkCode::parse("01234567").map(|c| c.expose().to_owned()),
            Ok("01234567".into())
        );
        assert_eq!(LinkCode::parse(""), Err(CodeError::Empty));
        assert_eq!(LinkCode::parse("1234"), Err(CodeError::TooShort));
        assert_eq!(LinkCode::parse("123456789"), Err(CodeError::TooLong));
        assert_eq!(LinkCode::parse("1234#678"), Err(CodeError::NotDigits));
        assert_eq!(
            LinkCode::parse("１２３４５６７８"),
            Err(CodeError::NotDigits)
        );
    }

    #[test]
    fn code_formatting_is_redacted() {
        let c = LinkCode::parse("12345678").unwrap();
        assert!(!format!("{c} {c:?}").contains("12345678"));
    }

    #[test]
    fn tokens_are_hex_and_parse_back() {
        let t = FrontendToken::generate();
        assert_eq!(FrontendToken::parse(t.as_str()), Some(t.clone()));
        assert_ne!(FrontendToken::generate(), t);
        assert_eq!(FrontendToken::parse("../../etc/passwd"), None);
        assert_eq!(FrontendToken::parse(&t.as_str().to_uppercase()), None);
    }
}
