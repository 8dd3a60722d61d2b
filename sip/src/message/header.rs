//! Header names (full and compact forms, RFC 3261 §7.3.3, §20 and later RFCs) and the ordered
//! header list of a message. Values are stored unfolded but otherwise verbatim; typed access lives
//! in [`typed`](super::typed).

use std::fmt;

use super::lex;
use super::Text;

macro_rules! header_names {
    ($( $var:ident => $name:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Known names are matched case-insensitively, compact forms are
        /// mapped to their full name; anything else is [`HeaderName::Other`] with the name as
        /// received.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $var, )*
            Other(Text),
        }

        impl HeaderName {
            /// The canonical name, as written on output.
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$var => $name, )*
                    HeaderName::Other(t) => t,
                }
            }

            /// The single-letter compact form, if there is one.
            pub fn compact(&self) -> Option<char> {
                match self {
                    $( $( HeaderName::$var => Some($compact), )? )*
                    _ => None,
                }
            }

            fn lookup(name: &str) -> Option<HeaderName> {
                if name.len() == 1 {
                    let c = name.as_bytes()[0].to_ascii_lowercase() as char;
                    $( $( if c == $compact { return Some(HeaderName::$var); } )? )*
                    return None;
                }
                $( if name.len() == $name.len() && name.eq_ignore_ascii_case($name) {
                    return Some(HeaderName::$var);
                } )*
                None
            }
        }
    };
}

header_names! {
    Via => "Via", 'v';
    From => "From", 'f';
    To => "To", 't';
    CallId => "Call-ID", 'i';
    CSeq => "CSeq";
    Contact => "Contact", 'm';
    MaxForwards => "Max-Forwards";
    Route => "Route";
    RecordRoute => "Record-Route";
    ContentLength => "Content-Length", 'l';
    ContentType => "Content-Type", 'c';
    ContentEncoding => "Content-Encoding", 'e';
    ContentDisposition => "Content-Disposition";
    ContentLanguage => "Content-Language";
    Expires => "Expires";
    MinExpires => "Min-Expires";
    Authorization => "Authorization";
    ProxyAuthorization => "Proxy-Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    AuthenticationInfo => "Authentication-Info";
    Supported => "Supported", 'k';
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Unsupported => "Unsupported";
    Allow => "Allow";
    Accept => "Accept";
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    Subject => "Subject", 's';
    Event => "Event", 'o';
    AllowEvents => "Allow-Events", 'u';
    SubscriptionState => "Subscription-State";
    ReferTo => "Refer-To", 'r';
    ReferredBy => "Referred-By", 'b';
    Replaces => "Replaces";
    SessionExpires => "Session-Expires", 'x';
    MinSe => "Min-SE";
    Identity => "Identity", 'y';
    AcceptContact => "Accept-Contact", 'a';
    RejectContact => "Reject-Contact", 'j';
    RequestDisposition => "Request-Disposition", 'd';
    RetryAfter => "Retry-After";
    Reason => "Reason";
    Warning => "Warning";
    UserAgent => "User-Agent";
    Server => "Server";
    Date => "Date";
    Timestamp => "Timestamp";
    RSeq => "RSeq";
    RAck => "RAck";
    PAssertedIdentity => "P-Asserted-Identity";
    PPreferredIdentity => "P-Preferred-Identity";
    Privacy => "Privacy";
    Organization => "Organization";
    InReplyTo => "In-Reply-To";
    ReplyTo => "Reply-To";
    Priority => "Priority";
    AlertInfo => "Alert-Info";
    CallInfo => "Call-Info";
    ErrorInfo => "Error-Info";
    MimeVersion => "MIME-Version";
    Path => "Path";
    ServiceRoute => "Service-Route";
}

impl HeaderName {
    /// Map a received name (full or compact, any case). Unknown names keep their text.
    pub fn parse(name: &str) -> HeaderName {
        HeaderName::lookup(name).unwrap_or_else(|| HeaderName::Other(Text::from(name)))
    }

    pub(crate) fn from_text(name: Text) -> HeaderName {
        HeaderName::lookup(&name).unwrap_or(HeaderName::Other(name))
    }

    /// True for headers whose value is a comma-separated list that may be split across several
    /// header lines (RFC 3261 §7.3.1). Unknown headers are not split.
    pub fn is_list(&self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | Supported
                | Require
                | ProxyRequire
                | Unsupported
                | Allow
                | Accept
                | AcceptEncoding
                | AcceptLanguage
                | AllowEvents
                | ContentEncoding
                | ContentLanguage
                | Warning
                | Path
                | ServiceRoute
                | PAssertedIdentity
                | Reason
                | AlertInfo
                | CallInfo
                | ErrorInfo
                | InReplyTo
                | AcceptContact
                | RejectContact
                | RequestDisposition
                | Privacy
        )
    }

    /// Case-insensitive comparison with a name as text (`"v"` matches `Via`).
    pub fn matches(&self, name: &str) -> bool {
        match HeaderName::lookup(name) {
            Some(known) => &known == self,
            None => matches!(self, HeaderName::Other(t) if t.eq_ignore_ascii_case(name)),
        }
    }
}

impl PartialEq<&str> for HeaderName {
    fn eq(&self, other: &&str) -> bool {
        self.matches(other)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for HeaderName {
    fn from(s: &str) -> Self {
        HeaderName::parse(s)
    }
}

/// One header line: name and (unfolded, trimmed) value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    pub name: HeaderName,
    pub value: Text,
}

/// The ordered header fields of a message. Order is kept exactly; several lines with the same
/// name stay separate lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    list: Vec<Header>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_capacity(n: usize) -> Self {
        Headers {
            list: Vec::with_capacity(n),
        }
    }

    /// All header lines in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The value of the first line called `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&Text> {
        self.list.iter().find(|h| &h.name == name).map(|h| &h.value)
    }

    /// The first value of an unknown header by name (case-insensitive).
    pub fn get_by_name(&self, name: &str) -> Option<&Text> {
        self.list
            .iter()
            .find(|h| h.name.matches(name))
            .map(|h| &h.value)
    }

    /// Every line called `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Text> + 'a {
        self.list
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| &h.value)
    }

    /// Number of lines called `name`.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.list.iter().filter(|h| &h.name == name).count()
    }

    /// Every comma-separated element of every line called `name` (quotes and `<>` respected),
    /// trimmed, as shared [`Text`]. Empty elements are yielded as empty text so that strict
    /// typed parsers can reject them.
    pub fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = Text> + 'a {
        self.get_all(name)
            .flat_map(|v| lex::split_top(v, b',').map(move |piece| v.slice_ref(lex::trim(piece))))
    }

    /// Append a line.
    pub fn push(&mut self, name: HeaderName, value: impl Into<Text>) {
        self.list.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Insert a line before all others (e.g. a new top Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<Text>) {
        self.list.insert(
            0,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Insert a line before the first line called `name` (or at the end if there is none).
    pub fn insert_before(&mut self, name: HeaderName, value: impl Into<Text>) {
        let at = self
            .list
            .iter()
            .position(|h| h.name == name)
            .unwrap_or(self.list.len());
        self.list.insert(
            at,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replace all lines called `name` by one line at the position of the first (appended if
    /// there was none).
    pub fn replace(&mut self, name: HeaderName, value: impl Into<Text>) {
        let value = value.into();
        match self.list.iter().position(|h| h.name == name) {
            Some(first) => {
                self.list[first].value = value;
                let mut i = 0;
                self.list.retain(|h| {
                    let keep = i <= first || h.name != name;
                    i += 1;
                    keep
                });
            }
            None => self.list.push(Header { name, value }),
        }
    }

    /// Remove all lines called `name`; returns how many were removed.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.list.len();
        self.list.retain(|h| &h.name != name);
        before - self.list.len()
    }

    /// Remove the first element of a list header (e.g. the top Via or top Route), dropping the
    /// line when it becomes empty. Returns the removed element.
    pub fn pop_first_value(&mut self, name: &HeaderName) -> Option<Text> {
        let idx = self.list.iter().position(|h| &h.name == name)?;
        let v = self.list[idx].value.clone();
        match lex::find_top(&v, b',') {
            Some(comma) => {
                let first = v.slice_ref(lex::trim(&v[..comma]));
                self.list[idx].value = v.slice_ref(lex::trim(&v[comma + 1..]));
                Some(first)
            }
            None => {
                self.list.remove(idx);
                Some(v)
            }
        }
    }

    pub(crate) fn push_header(&mut self, h: Header) {
        self.list.push(h);
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        for (raw, want) in [
            ("i", HeaderName::CallId),
            ("M", HeaderName::Contact),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("o", HeaderName::Event),
            ("u", HeaderName::AllowEvents),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("y", HeaderName::Identity),
            ("a", HeaderName::AcceptContact),
            ("j", HeaderName::RejectContact),
            ("d", HeaderName::RequestDisposition),
            ("MaX-fOrWaRdS", HeaderName::MaxForwards),
            ("call-id", HeaderName::CallId),
        ] {
            assert_eq!(HeaderName::parse(raw), want, "{raw}");
        }
        assert_eq!(
            HeaderName::parse("C%6Fntact"),
            HeaderName::Other(Text::from("C%6Fntact"))
        );
        assert!(HeaderName::Via.matches("V"));
    }

    #[test]
    fn list_values_span_lines_and_respect_quotes() {
        let mut h = Headers::new();
        h.push(HeaderName::Contact, r#""a, b" <sip:a@h>, <sip:b@h>"#);
        h.push(HeaderName::Contact, "<sip:c@h>");
        let v: Vec<_> = h.values(&HeaderName::Contact).collect();
        assert_eq!(v, vec![r#""a, b" <sip:a@h>"#, "<sip:b@h>", "<sip:c@h>"]);
    }

    #[test]
    fn replace_remove_and_pop() {
        let mut h = Headers::new();
        h.push(HeaderName::Via, "SIP/2.0/UDP a, SIP/2.0/UDP b");
        h.push(HeaderName::To, "<sip:x@y>");
        h.push(HeaderName::Via, "SIP/2.0/UDP c");
        assert_eq!(
            h.pop_first_value(&HeaderName::Via).unwrap(),
            "SIP/2.0/UDP a"
        );
        assert_eq!(h.get(&HeaderName::Via).unwrap(), "SIP/2.0/UDP b");
        h.replace(HeaderName::Via, "SIP/2.0/TCP z");
        assert_eq!(h.count(&HeaderName::Via), 1);
        assert_eq!(h.iter().next().unwrap().name, HeaderName::Via);
        assert_eq!(h.remove(&HeaderName::Via), 1);
        assert_eq!(h.len(), 1);
    }
}
