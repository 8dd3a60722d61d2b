//! Personal data wrapper. Attributes, caller numbers and link codes travel as [`Pii<T>`], whose `Debug`
//! and `Display` print `[redacted]`, so a stray `tracing::debug!("{call:?}")` cannot leak them.
//! Read the value with [`Pii::expose`], only where it is really needed (showing it to an agent,
//! comparing a code).

use std::fmt;

/// A value that is personal data. Formatting never shows it.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pii<T>(T);

impl<T> Pii<T> {
    pub fn new(value: T) -> Self {
        Pii(value)
    }

    /// The value itself. Callers must not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Pii<T> {
    fn from(value: T) -> Self {
        Pii(value)
    }
}

impl<T> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let bsn = Pii::new(String::from("999993653"));
        assert_eq!(format!("{bsn}"), "[redacted]");
        assert_eq!(format!("{bsn:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&bsn)), "Some([redacted])");
        assert_eq!(bsn.expose(), "999993653");
    }
}
