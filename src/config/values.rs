//! Single values of the config file, each parsed into what the program uses or refused with a
//! one-line reason: addresses, CIDRs, E.164 numbers, durations, identifiers, browser origins, the
//! IRMA server URL, agent-link URL templates and argon2id password hashes.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

use crate::tenant::{PasswordHash, TenantId};

pub(super) fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:5060 or [::]:5060"))
}

pub(super) fn cidr(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{s:?} is not a CIDR like 192.0.2.10/32 or 2001:db8::/64"))
}

pub(super) fn host(s: &str) -> Result<String, String> {
    let hostname = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        });
    if hostname || s.parse::<IpAddr>().is_ok() {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?} is not a host name or IP address"))
    }
}

pub(super) fn media_ip(s: &str) -> Result<IpAddr, String> {
    match s.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => Ok(ip),
        _ => Err(format!(
            "{s:?} is not an IP address the trunk can send RTP to"
        )),
    }
}

pub(super) fn realm(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        Err("must be non-empty, without quotes, backslashes or control characters".into())
    } else {
        Ok(s.to_owned())
    }
}

/// A duration like `5s`, `1m30s`, `10m`, within `min..=max`.
pub(super) fn duration(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = crate::time::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 5s or 10m: {e}"))?;
    if d < min || d > max {
        return Err(format!(
            "must lie between {} and {}",
            crate::time::format_duration(min),
            crate::time::format_duration(max)
        ));
    }
    Ok(d)
}

/// `+` and 8 to 15 digits, not starting with 0 (ITU-T E.164).
pub(super) fn e164(s: &str) -> Result<String, String> {
    let digits = s.strip_prefix('+').unwrap_or("");
    let ok = s.starts_with('+')
        && (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an E.164 number like +31263770000 (+ and 8 to 15 digits)"
        ))
    }
}

pub(super) fn tenant_id(s: &str) -> Result<TenantId, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(TenantId(s.to_owned()))
    } else {
        Err(format!(
            "{s:?}: use lowercase letters, digits and `-` (it appears in URLs)"
        ))
    }
}

pub(super) fn username(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?}: use letters, digits, `.`, `_` and `-` (it is the SIP username)"
        ))
    }
}

/// `scheme.issuer.credential.attribute`, as irmago names attributes.
pub(super) fn attribute_id(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('.').collect();
    let ok = parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an attribute id like pbdf.gemeente.personalData.bsn"
        ))
    }
}

/// A browser origin: `https://host[:port]`, nothing after it (http only for loopback hosts).
pub(super) fn origin(s: &str) -> Result<String, String> {
    let url = Url::parse(s)
        .map_err(|e| format!("{s:?} is not an origin like https://www.arnhem.nl: {e}"))?;
    let serialized = url.origin().ascii_serialization();
    if serialized != s {
        return Err(format!(
            "{s:?} is not an origin: write it as {serialized:?} (no path, no trailing /)"
        ));
    }
    match url.scheme() {
        "https" => Ok(serialized),
        "http" if is_loopback_host(&url) => Ok(serialized),
        "http" => Err(format!(
            "{s:?}: a citizen's website is https (http only on loopback)"
        )),
        other => Err(format!("{s:?}: scheme {other} is not http(s)")),
    }
}

/// irmago's requestor API base URL: https, or http on a loopback host only.
pub(super) fn irma_url(s: &str) -> Result<String, String> {
    let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if url.host().is_none() || url.cannot_be_a_base() {
        return Err(format!("{s:?} has no host"));
    }
    match url.scheme() {
        "https" => Ok(s.to_owned()),
        "http" if is_loopback_host(&url) => Ok(s.to_owned()),
        "http" => Err(format!(
            "{s:?}: plain http is refused for a non-loopback IRMA server (disclosed attributes would cross the network unprotected); use https"
        )),
        other => Err(format!("{s:?}: scheme {other} is not http(s)")),
    }
}

pub(super) fn is_loopback_host(url: &Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// An http(s) URL with `{attribute-id}` placeholders, each naming one of `known`.
pub(super) fn url_template(s: &str, known: &HashSet<String>) -> Result<String, String> {
    let mut filled = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!("{s:?}: `}}` without `{{`"));
        }
        filled.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find(['{', '}'])
            .filter(|&i| after[i..].starts_with('}'))
            .ok_or_else(|| format!("{s:?}: `{{` without `}}`"))?;
        let name = &after[..close];
        if !known.contains(name) {
            return Err(format!(
                "{s:?} names {{{name}}}, which is not one of this tenant's attributes"
            ));
        }
        filled.push('x');
        rest = &after[close + 1..];
    }
    filled.push_str(rest);
    let url = Url::parse(&filled).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{s:?} is not an http(s) URL"));
    }
    Ok(s.to_owned())
}

/// An argon2id PHC string with usable parameters (`veilig-bellen agent hash-password`).
pub(super) fn argon2id(s: &str) -> Result<PasswordHash, String> {
    PasswordHash::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_bare_https_origins() {
        assert!(origin("https://www.arnhem.nl").is_ok());
        assert!(origin("https://www.arnhem.nl/").is_err());
        assert!(origin("http://www.arnhem.nl").is_err());
        assert!(origin("http://127.0.0.1:8080").is_ok());
    }

    #[test]
    fn templates_need_balanced_braces_and_an_http_url() {
        let known = HashSet::from(["a.b.c.d".to_owned()]);
        assert!(url_template("https://x.nl/{a.b.c.d", &known).is_err());
        assert!(url_template("https://x.nl/}", &known).is_err());
        assert!(url_template("ftp://x.nl/{a.b.c.d}", &known).is_err());
        assert!(url_template("https://x.nl/p?q={a.b.c.d}&r={a.b.c.d}", &known).is_ok());
        assert!(url_template("https://x.nl/{e.f.g.h}", &known).is_err());
    }

    #[test]
    fn e164_is_a_plus_and_8_to_15_digits() {
        assert!(e164("+31263770").is_ok(), "8 digits");
        assert!(e164("+312637").is_err(), "too short");
        assert!(e164("+3126377000012345").is_err(), "too long");
        assert!(e164("+0263770000").is_err());
        assert!(e164("0263770000").is_err());
    }

    #[test]
    fn trunks_are_cidrs_or_single_addresses() {
        assert_eq!(cidr("192.0.2.10").unwrap().to_string(), "192.0.2.10/32");
        assert_eq!(cidr("192.0.2.77/24").unwrap().to_string(), "192.0.2.0/24");
        assert!(cidr("2001:db8::/64").is_ok());
        assert!(cidr("192.0.2.0/33").is_err());
    }
}
