//! `[links]`: how long a link code lives and how many wrong codes a calling number may give
//! ([`LinkConfig`]). Every key has a default; the defaults are what the README's odds are worked
//! out from.

use std::time::Duration;

use toml::Spanned;

use super::file::{Count, RawLinks};
use super::validate::Checker;
use super::values::duration;
use crate::links::{GuessLimits, LinkConfig};

impl Checker<'_, '_> {
    pub(super) fn links(&mut self, raw: Option<Spanned<RawLinks>>) -> Option<LinkConfig> {
        let raw = raw.map(Spanned::into_inner).unwrap_or_default();
        let defaults = LinkConfig::default();
        let limits = GuessLimits::default();
        let mut time =
            |value: &Option<Spanned<String>>, key: &str, default: Duration, min, max| match value {
                None => Some(default),
                Some(v) => self.parse(v, &format!("links.{key}"), |s| {
                    duration(s, Duration::from_secs(min), Duration::from_secs(max))
                }),
            };
        let code_ttl = time(&raw.code_ttl, "code_ttl", defaults.code_ttl, 60, 3600);
        let call_window = time(
            &raw.call_window,
            "call_window",
            defaults.call_window,
            30,
            3600,
        );
        let week = 7 * 24 * 3600;
        let window = time(
            &raw.wrong_code_window,
            "wrong_code_window",
            limits.window,
            60,
            week,
        );
        let block = time(
            &raw.wrong_code_block,
            "wrong_code_block",
            limits.block,
            60,
            week,
        );
        let max_wrong = self.count(
            &raw.max_wrong_codes,
            "links.max_wrong_codes",
            limits.max_wrong_codes,
            1,
            100,
        );
        let alarm = self.count(
            &raw.wrong_code_alarm,
            "links.wrong_code_alarm",
            limits.alarm_per_minute,
            0,
            1_000_000,
        );
        Some(LinkConfig {
            code_ttl: code_ttl?,
            call_window: call_window?,
            guesses: GuessLimits {
                max_wrong_codes: max_wrong?,
                window: window?,
                block: block?,
                alarm_per_minute: alarm?,
                ..limits
            },
            ..defaults
        })
    }

    /// A whole number in `min..=max` (a TOML integer, or digits from an environment variable);
    /// `default` when absent.
    pub(super) fn count(
        &mut self,
        value: &Option<Spanned<Count>>,
        key: &str,
        default: u32,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        let Some(value) = value else {
            return Some(default);
        };
        let n = match value.get_ref() {
            Count::Int(n) => u32::try_from(*n).ok(),
            Count::Text(s) => s.trim().parse().ok(),
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.invalid(
                    &value.span(),
                    key,
                    format!("must be a whole number from {min} to {max}"),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::load_str;
    use super::super::validate::tests::MINIMAL;
    use std::path::Path;
    use std::time::Duration;

    fn load(extra: &str) -> Result<super::super::Config, String> {
        let text = MINIMAL.replacen("[irma]\n", &format!("{extra}[irma]\n"), 1);
        load_str(&text, Path::new("vb.toml"), Vec::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_fifteen_and_five_minutes_and_five_wrong_codes_an_hour() {
        let links = load("").unwrap().links;
        assert_eq!(links.code_ttl, Duration::from_secs(15 * 60));
        assert_eq!(links.call_window, Duration::from_secs(5 * 60));
        assert_eq!(links.guesses.max_wrong_codes, 5);
        assert_eq!(links.guesses.window, Duration::from_secs(3600));
        assert_eq!(links.guesses.block, Duration::from_secs(3600));
        assert_eq!(links.guesses.alarm_per_minute, 20);
    }

    #[test]
    fn every_key_can_be_set() {
        let config = load(
            "[links]\ncode_ttl = \"10m\"\ncall_window = \"2m\"\nmax_wrong_codes = 3\n\
             wrong_code_window = \"2h\"\nwrong_code_block = \"1d\"\nwrong_code_alarm = 0\n",
        )
        .unwrap();
        let links = config.links.clone();
        assert_eq!(links.code_ttl, Duration::from_secs(600));
        assert_eq!(links.call_window, Duration::from_secs(120));
        assert_eq!(links.guesses.max_wrong_codes, 3);
        assert_eq!(links.guesses.window, Duration::from_secs(7200));
        assert_eq!(links.guesses.block, Duration::from_secs(86_400));
        assert_eq!(links.guesses.alarm_per_minute, 0);
        assert_eq!(config.server_config().links.call_window, links.call_window);
    }

    #[test]
    fn caller_id_binding_names_a_listed_attribute() {
        let mobile = "pbdf.sidn-pbdf.mobilenumber.mobilenumber";
        let disclosure = "disclosure = [[[\"pbdf.gemeente.personalData.bsn\"]]]\n";
        let bound = MINIMAL.replacen(
            disclosure,
            &format!("{disclosure}caller_id_attribute = \"{mobile}\"\n"),
            1,
        );
        let listed = bound.replacen(
            "[[tenants.links]]",
            &format!(
                "[[tenants.attributes]]\nid = \"{mobile}\"\nlabel_nl = \"Mobiel nummer\"\nlabel_en = \"Mobile number\"\n[[tenants.links]]"
            ),
            1,
        );
        let config = load_str(&listed, Path::new("vb.toml"), Vec::new()).unwrap();
        let tenant = config.tenants.iter().next().unwrap();
        assert_eq!(tenant.caller_id_attribute.as_deref(), Some(mobile));
        let e = load_str(&bound, Path::new("vb.toml"), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`tenants[0].caller_id_attribute`")
                && e.contains("not one of this tenant's attributes"),
            "{e}"
        );
        let default = load("").unwrap();
        assert_eq!(
            default.tenants.iter().next().unwrap().caller_id_attribute,
            None
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = load("[links]\nmax_wrong_codes = 0\ncall_window = \"5s\"\n").unwrap_err();
        assert!(
            e.contains("`links.max_wrong_codes`: must be a whole number from 1 to 100"),
            "{e}"
        );
        assert!(e.contains("`links.call_window`"), "{e}");
        let e = load("[links]\nguesses = 3\n").unwrap_err();
        assert!(e.contains("unknown key `links.guesses`"), "{e}");
    }
}
