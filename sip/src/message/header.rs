//! Header names (full and compact forms, RFC 3261 §7.3.3, §20 and later RFCs) and the ordered
//! header list of a message. Values are stored unfolded but otherwise verbatim; typed access lives
//! in [`typed`](super::typed).

use std::fmt;
use std::sync::OnceLock;

use super::lex;
use super::Text;

macro_rules! header_names {
    ($( $var:ident => $name:literal / $lower:literal $(, $compact:literal)? ;)*) => {
        /// A header field name. Known names are matched case-insensitively, compact forms are
        /// mapped to their full name; anything else is [`HeaderName::Other`] with the name as
        /// received.
        ///
        /// Equality and hashing of [`HeaderName::Other`] ignore ASCII case.
        #[derive(Debug, Clone)]
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
                let b = name.as_bytes();
                if b.len() == 1 {
                    let c = b[0].to_ascii_lowercase() as char;
                    $( $( if c == $compact { return Some(HeaderName::$var); } )? )*
                    return None;
                }
                // Fast path: the common headers in their canonical spelling.
                match b {
                    b"Via" => return Some(HeaderName::Via),
                    b"From" => return Some(HeaderName::From),
                    b"To" => return Some(HeaderName::To),
                    b"Call-ID" => return Some(HeaderName::CallId),
                    b"CSeq" => return Some(HeaderName::CSeq),
                    b"Contact" => return Some(HeaderName::Contact),
                    b"Max-Forwards" => return Some(HeaderName::MaxForwards),
                    b"Content-Type" => return Some(HeaderName::ContentType),
                    b"Content-Length" => return Some(HeaderName::ContentLength),
                    b"Route" => return Some(HeaderName::Route),
                    b"Record-Route" => return Some(HeaderName::RecordRoute),
                    b"Allow" => return Some(HeaderName::Allow),
                    b"Supported" => return Some(HeaderName::Supported),
                    b"Expires" => return Some(HeaderName::Expires),
                    b"Accept" => return Some(HeaderName::Accept),
                    b"Authorization" => return Some(HeaderName::Authorization),
                    b"User-Agent" => return Some(HeaderName::UserAgent),
                    b"Server" => return Some(HeaderName::Server),
                    b"P-Asserted-Identity" => return Some(HeaderName::PAssertedIdentity),
                    _ => {}
                }
                let mut buf = [0u8; 24];
                let lower = buf.get_mut(..b.len())?;
                for (d, s) in lower.iter_mut().zip(b) {
                    *d = s.to_ascii_lowercase();
                }
                match &*lower {
                    $( $lower => Some(HeaderName::$var), )*
                    _ => None,
                }
            }
        }
    };
}

header_names! {
    Via => "Via" / b"via", 'v';
    From => "From" / b"from", 'f';
    To => "To" / b"to", 't';
    CallId => "Call-ID" / b"call-id", 'i';
    CSeq => "CSeq" / b"cseq";
    Contact => "Contact" / b"contact", 'm';
    MaxForwards => "Max-Forwards" / b"max-forwards";
    Route => "Route" / b"route";
    RecordRoute => "Record-Route" / b"record-route";
    ContentLength => "Content-Length" / b"content-length", 'l';
    ContentType => "Content-Type" / b"content-type", 'c';
    ContentEncoding => "Content-Encoding" / b"content-encoding", 'e';
    ContentDisposition => "Content-Disposition" / b"content-disposition";
    ContentLanguage => "Content-Language" / b"content-language";
    Expires => "Expires" / b"expires";
    MinExpires => "Min-Expires" / b"min-expires";
    Authorization => "Authorization" / b"authorization";
    ProxyAuthorization => "Proxy-Authorization" / b"proxy-authorization";
    WwwAuthenticate => "WWW-Authenticate" / b"www-authenticate";
    ProxyAuthenticate => "Proxy-Authenticate" / b"proxy-authenticate";
    AuthenticationInfo => "Authentication-Info" / b"authentication-info";
    Supported => "Supported" / b"supported", 'k';
    Require => "Require" / b"require";
    ProxyRequire => "Proxy-Require" / b"proxy-require";
    Unsupported => "Unsupported" / b"unsupported";
    Allow => "Allow" / b"allow";
    Accept => "Accept" / b"accept";
    AcceptEncoding => "Accept-Encoding" / b"accept-encoding";
    AcceptLanguage => "Accept-Language" / b"accept-language";
    Subject => "Subject" / b"subject", 's';
    Event => "Event" / b"event", 'o';
    AllowEvents => "Allow-Events" / b"allow-events", 'u';
    SubscriptionState => "Subscription-State" / b"subscription-state";
    ReferTo => "Refer-To" / b"refer-to", 'r';
    ReferredBy => "Referred-By" / b"referred-by", 'b';
    Replaces => "Replaces" / b"replaces";
    SessionExpires => "Session-Expires" / b"session-expires", 'x';
    MinSe => "Min-SE" / b"min-se";
    Identity => "Identity" / b"identity", 'y';
    AcceptContact => "Accept-Contact" / b"accept-contact", 'a';
    RejectContact => "Reject-Contact" / b"reject-contact", 'j';
    RequestDisposition => "Request-Disposition" / b"request-disposition", 'd';
    RetryAfter => "Retry-After" / b"retry-after";
    Reason => "Reason" / b"reason";
    Warning => "Warning" / b"warning";
    UserAgent => "User-Agent" / b"user-agent";
    Server => "Server" / b"server";
    Date => "Date" / b"date";
    Timestamp => "Timestamp" / b"timestamp";
    RSeq => "RSeq" / b"rseq";
    RAck => "RAck" / b"rack";
    PAssertedIdentity => "P-Asserted-Identity" / b"p-asserted-identity";
    PPreferredIdentity => "P-Preferred-Identity" / b"p-preferred-identity";
    Privacy => "Privacy" / b"privacy";
    Organization => "Organization" / b"organization";
    InReplyTo => "In-Reply-To" / b"in-reply-to";
    ReplyTo => "Reply-To" / b"reply-to";
    Priority => "Priority" / b"priority";
    AlertInfo => "Alert-Info" / b"alert-info";
    CallInfo => "Call-Info" / b"call-info";
    ErrorInfo => "Error-Info" / b"error-info";
    MimeVersion => "MIME-Version" / b"mime-version";
    Path => "Path" / b"path";
    ServiceRoute => "Service-Route" / b"service-route";
}

impl HeaderName {
    /// Map a received name (full or compact, any case). Unknown names keep their text.
    pub fn parse(name: &str) -> HeaderName {
        HeaderName::lookup(name).unwrap_or_else(|| HeaderName::Other(Text::from(name)))
    }

    /// Map a name that is a slice of `buf` without touching the buffer's refcount for known
    /// names.
    pub(crate) fn from_slice(buf: &Text, name: &str) -> HeaderName {
        HeaderName::lookup(name).unwrap_or_else(|| HeaderName::Other(buf.slice_ref(name)))
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

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for HeaderName {}

impl std::hash::Hash for HeaderName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        if let HeaderName::Other(t) = self {
            for b in t.bytes() {
                state.write_u8(b.to_ascii_lowercase());
            }
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
///
/// The headers every message carries and every receiver reads (Via, From, To, Call-ID, CSeq,
/// Contact, Content-Length, Max-Forwards, Content-Type) are indexed as lines are added: where
/// the first line of each is and how many there are. A lookup of one of them goes straight to
/// its line instead of comparing every name, and stops after its last line. Every method that
/// changes the list keeps the index in step.
///
/// A received message keeps its values as positions in the received head: a value becomes a
/// [`Text`] of its own (a share of the message buffer, whose reference count every share
/// touches) only when it is asked for as one ([`Headers::get`], [`Headers::iter`], …). The
/// typed accessors parse straight from the head, so a message read only through them never
/// makes the values it does not return.
#[derive(Clone, Default)]
pub struct Headers {
    lines: Vec<Line>,
    /// The received head that [`Value::Slice`] lines are positions in (empty when built).
    text: Text,
    index: Index,
    /// The lines as [`Header`]s for [`Headers::iter`], made on its first call after a change.
    view: OnceLock<Box<[Header]>>,
}

/// One header line as stored.
#[derive(Clone)]
struct Line {
    name: HeaderName,
    value: Value,
}

/// A stored value.
#[derive(Clone)]
enum Value {
    /// `text[start..end]` of the received head, made into its own [`Text`] on first request.
    Slice {
        start: u32,
        end: u32,
        shared: OnceLock<Text>,
    },
    Owned(Text),
}

/// Indexed names, in slot order.
const INDEXED: usize = 9;

/// Slot of an indexed name.
#[inline]
fn slot(name: &HeaderName) -> Option<usize> {
    Some(match name {
        HeaderName::Via => 0,
        HeaderName::From => 1,
        HeaderName::To => 2,
        HeaderName::CallId => 3,
        HeaderName::CSeq => 4,
        HeaderName::Contact => 5,
        HeaderName::ContentLength => 6,
        HeaderName::MaxForwards => 7,
        HeaderName::ContentType => 8,
        _ => return None,
    })
}

/// Per indexed name: position of its first line (meaningless when `count` is 0) and its number
/// of lines; a `count` of [`UNINDEXED`] when either does not fit (lookups of that name then look
/// at every line, as for names that are not indexed).
#[derive(Clone, Copy, Default)]
struct Index {
    first: [u16; INDEXED],
    count: [u16; INDEXED],
}

/// [`Index::count`] of a name whose lines are too many or too far down to note.
const UNINDEXED: u16 = u16::MAX;

impl Index {
    /// Note a line called `name` added at position `at`, after every other line.
    #[inline]
    fn appended(&mut self, name: &HeaderName, at: usize) {
        if let Some(s) = slot(name) {
            let n = self.count[s];
            if n == UNINDEXED {
                return;
            }
            if n == 0 {
                match u16::try_from(at) {
                    Ok(at) if at != UNINDEXED => self.first[s] = at,
                    _ => {
                        self.count[s] = UNINDEXED;
                        return;
                    }
                }
            }
            // Reaching UNINDEXED turns the index off for this name: still a right answer.
            self.count[s] = n + 1;
        }
    }

    /// Where the lines called `name` start and how many there are, when the index knows.
    #[inline]
    fn lookup(&self, name: &HeaderName) -> Option<(usize, usize)> {
        let s = slot(name)?;
        let n = self.count[s];
        (n != UNINDEXED).then_some((usize::from(self.first[s]), usize::from(n)))
    }

    fn rebuild(lines: &[Line]) -> Index {
        let mut index = Index::default();
        for (at, l) in lines.iter().enumerate() {
            index.appended(&l.name, at);
        }
        index
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        // The index follows from the lines; where a value is kept does not matter.
        self.lines.len() == other.lines.len()
            && self
                .lines
                .iter()
                .zip(&other.lines)
                .all(|(a, b)| a.name == b.name && self.str_of(a) == other.str_of(b))
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[derive(Debug)]
        #[allow(dead_code)] // read by Debug
        struct Header<'a> {
            name: &'a HeaderName,
            value: &'a str,
        }
        let list: Vec<Header<'_>> = self
            .lines
            .iter()
            .map(|l| Header {
                name: &l.name,
                value: self.str_of(l),
            })
            .collect();
        f.debug_struct("Headers").field("list", &list).finish()
    }
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_capacity(n: usize) -> Self {
        Headers {
            lines: Vec::with_capacity(n),
            ..Headers::default()
        }
    }

    /// Set the received head that the values added with [`Headers::push_slice`] are positions in.
    pub(crate) fn set_head(&mut self, text: Text) {
        self.text = text;
    }

    /// The received head (empty for a built list).
    pub(crate) fn head(&self) -> &Text {
        &self.text
    }

    /// Append a line whose value is `head()[start..end]` (the head as set with
    /// [`Headers::set_head`]).
    #[inline]
    pub(crate) fn push_slice(&mut self, name: HeaderName, start: usize, end: usize) {
        self.index.appended(&name, self.lines.len());
        self.lines.push(Line {
            name,
            value: Value::Slice {
                start: start as u32,
                end: end as u32,
                shared: OnceLock::new(),
            },
        });
    }

    /// The value of `line` as text.
    #[inline]
    fn str_of<'a>(&'a self, line: &'a Line) -> &'a str {
        match &line.value {
            Value::Slice { start, end, .. } => {
                self.text.get(*start as usize..*end as usize).unwrap_or("")
            }
            Value::Owned(t) => t,
        }
    }

    /// The value of `line` with the shared text it is a slice of, for parsers that keep parts
    /// of it (`src.slice_ref(part of value)`).
    #[inline]
    fn source_of<'a>(&'a self, line: &'a Line) -> (&'a Text, &'a str) {
        match &line.value {
            Value::Slice { .. } => (&self.text, self.str_of(line)),
            Value::Owned(t) => (t, t),
        }
    }

    /// The value of `line` as its own [`Text`] (made now if it is a slice not yet asked for).
    #[inline]
    fn text_of<'a>(&'a self, line: &'a Line) -> &'a Text {
        match &line.value {
            Value::Slice { shared, .. } => {
                shared.get_or_init(|| self.text.slice_ref(self.str_of(line)))
            }
            Value::Owned(t) => t,
        }
    }

    /// A new [`Text`] of the value of `line` (no [`OnceLock`] involved).
    fn text_owned(&self, line: &Line) -> Text {
        match &line.value {
            Value::Slice { shared, .. } => match shared.get() {
                Some(t) => t.clone(),
                None => self.text.slice_ref(self.str_of(line)),
            },
            Value::Owned(t) => t.clone(),
        }
    }

    /// The lines to look at for `name`: from its first line on and at most how many match.
    #[inline]
    fn span(&self, name: &HeaderName) -> (&[Line], usize) {
        match self.index.lookup(name) {
            Some((_, 0)) => (&[], 0),
            Some((from, n)) => (self.lines.get(from..).unwrap_or(&[]), n),
            None => (&self.lines, usize::MAX),
        }
    }

    /// The lines called `name`, in order.
    #[inline]
    fn lines_named<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Line> + 'a {
        let (lines, n) = self.span(name);
        lines.iter().filter(move |l| &l.name == name).take(n)
    }

    /// The first line called `name`.
    #[inline]
    fn first_line(&self, name: &HeaderName) -> Option<&Line> {
        let (lines, _) = self.span(name);
        lines.iter().find(|l| &l.name == name)
    }

    /// The first line called `name` and how many lines carry it.
    #[inline]
    fn first_line_and_count(&self, name: &HeaderName) -> (Option<&Line>, usize) {
        match self.index.lookup(name) {
            Some((_, 0)) => (None, 0),
            Some((from, n)) => (self.lines.get(from), n),
            None => {
                let mut it = self.lines.iter().filter(|l| &l.name == name);
                let first = it.next();
                (first, first.map_or(0, |_| 1 + it.count()))
            }
        }
    }

    /// The first value of `name` and how many lines carry it.
    #[inline]
    pub(crate) fn first_and_count(&self, name: &HeaderName) -> (Option<&Text>, usize) {
        let (first, n) = self.first_line_and_count(name);
        (first.map(|l| self.text_of(l)), n)
    }

    /// [`Headers::first_and_count`] as the value's source (see [`Headers::source`]).
    #[inline]
    pub(crate) fn first_source_and_count(
        &self,
        name: &HeaderName,
    ) -> (Option<(&Text, &str)>, usize) {
        let (first, n) = self.first_line_and_count(name);
        (first.map(|l| self.source_of(l)), n)
    }

    /// The first value of `name` with the shared text it is part of: parsers keep parts of the
    /// value as `src.slice_ref(part)` without making the value a text of its own.
    #[inline]
    pub(crate) fn source(&self, name: &HeaderName) -> Option<(&Text, &str)> {
        self.first_line(name).map(|l| self.source_of(l))
    }

    /// [`Headers::source`] for every line called `name`.
    pub(crate) fn sources<'a>(
        &'a self,
        name: &'a HeaderName,
    ) -> impl Iterator<Item = (&'a Text, &'a str)> + 'a {
        self.lines_named(name).map(|l| self.source_of(l))
    }

    /// The first value of `name` as text.
    #[inline]
    pub(crate) fn get_str(&self, name: &HeaderName) -> Option<&str> {
        self.first_line(name).map(|l| self.str_of(l))
    }

    /// Every line as name and value text, in order.
    pub(crate) fn lines_str(&self) -> impl Iterator<Item = (&HeaderName, &str)> + '_ {
        self.lines.iter().map(|l| (&l.name, self.str_of(l)))
    }

    /// Every line whose name passes `keep` as name and a new [`Text`] of its value, in order.
    pub(crate) fn lines_text<'a>(
        &'a self,
        keep: impl Fn(&HeaderName) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a HeaderName, Text)> + 'a {
        self.lines
            .iter()
            .filter(move |l| keep(&l.name))
            .map(|l| (&l.name, self.text_owned(l)))
    }

    /// All header lines in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.view
            .get_or_init(|| {
                self.lines
                    .iter()
                    .map(|l| Header {
                        name: l.name.clone(),
                        value: self.text_owned(l),
                    })
                    .collect()
            })
            .iter()
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The value of the first line called `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&Text> {
        self.first_line(name).map(|l| self.text_of(l))
    }

    /// The first value of an unknown header by name (case-insensitive).
    pub fn get_by_name(&self, name: &str) -> Option<&Text> {
        self.lines
            .iter()
            .find(|l| l.name.matches(name))
            .map(|l| self.text_of(l))
    }

    /// Every line called `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a Text> + 'a {
        self.lines_named(name).map(|l| self.text_of(l))
    }

    /// Number of lines called `name`.
    pub fn count(&self, name: &HeaderName) -> usize {
        match self.index.lookup(name) {
            Some((_, n)) => n,
            None => self.lines.iter().filter(|l| &l.name == name).count(),
        }
    }

    /// Every comma-separated element of every line called `name` (quotes and `<>` respected),
    /// trimmed, as shared [`Text`]. Empty elements are yielded as empty text so that strict
    /// typed parsers can reject them.
    pub fn values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = Text> + 'a {
        self.sources(name).flat_map(|(src, v)| {
            lex::split_top(v, b',').map(move |piece| src.slice_ref(lex::trim(piece)))
        })
    }

    /// Append a line.
    pub fn push(&mut self, name: HeaderName, value: impl Into<Text>) {
        self.push_header(Header {
            name,
            value: value.into(),
        });
    }

    /// Insert a line before all others (e.g. a new top Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<Text>) {
        self.lines.insert(
            0,
            Line {
                name,
                value: Value::Owned(value.into()),
            },
        );
        self.reindex();
    }

    /// Insert a line before the first line called `name` (or at the end if there is none).
    pub fn insert_before(&mut self, name: HeaderName, value: impl Into<Text>) {
        let at = self
            .lines
            .iter()
            .position(|l| l.name == name)
            .unwrap_or(self.lines.len());
        self.lines.insert(
            at,
            Line {
                name,
                value: Value::Owned(value.into()),
            },
        );
        self.reindex();
    }

    /// Replace all lines called `name` by one line at the position of the first (appended if
    /// there was none).
    pub fn replace(&mut self, name: HeaderName, value: impl Into<Text>) {
        let value = value.into();
        match self.lines.iter().position(|l| l.name == name) {
            Some(first) => {
                self.lines[first].value = Value::Owned(value);
                let mut i = 0;
                self.lines.retain(|l| {
                    let keep = i <= first || l.name != name;
                    i += 1;
                    keep
                });
                self.reindex();
            }
            None => self.push_header(Header { name, value }),
        }
    }

    /// Remove all lines called `name`; returns how many were removed.
    pub fn remove(&mut self, name: &HeaderName) -> usize {
        let before = self.lines.len();
        self.lines.retain(|l| &l.name != name);
        let removed = before - self.lines.len();
        if removed > 0 {
            self.reindex();
        }
        removed
    }

    /// Remove the first element of a list header (e.g. the top Via or top Route), dropping the
    /// line when it becomes empty. Returns the removed element.
    pub fn pop_first_value(&mut self, name: &HeaderName) -> Option<Text> {
        let idx = self.lines.iter().position(|l| &l.name == name)?;
        let (src, v) = self.source_of(&self.lines[idx]);
        match lex::find_top(v, b',') {
            Some(comma) => {
                let first = src.slice_ref(lex::trim(&v[..comma]));
                let rest = Value::Owned(src.slice_ref(lex::trim(&v[comma + 1..])));
                self.lines[idx].value = rest;
                self.changed();
                Some(first)
            }
            None => {
                let line = self.lines.remove(idx);
                let v = self.text_owned(&line);
                self.reindex();
                Some(v)
            }
        }
    }

    pub(crate) fn push_header(&mut self, h: Header) {
        self.index.appended(&h.name, self.lines.len());
        self.lines.push(Line {
            name: h.name,
            value: Value::Owned(h.value),
        });
        self.changed();
    }

    /// Recompute the index after lines were inserted or removed.
    fn reindex(&mut self) {
        self.index = Index::rebuild(&self.lines);
        self.changed();
    }

    /// Forget the [`Headers::iter`] view after a change.
    #[inline]
    fn changed(&mut self) {
        if self.view.get().is_some() {
            self.view = OnceLock::new();
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
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
        assert_eq!(HeaderName::parse("X-Foo"), HeaderName::parse("x-fOO"));
        assert_ne!(HeaderName::parse("X-Foo"), HeaderName::parse("X-Bar"));
    }

    #[test]
    fn list_values_span_lines_and_respect_quotes() {
        let mut h = Headers::new();
        h.push(HeaderName::Contact, r#""a, b" <sip:a@h>, <sip:b@h>"#);
        h.push(HeaderName::Contact, "<sip:c@h>");
        let v: Vec<_> = h.values(&HeaderName::Contact).collect();
        assert_eq!(v, vec![r#""a, b" <sip:a@h>"#, "<sip:b@h>", "<sip:c@h>"]);
    }

    /// After every kind of edit, indexed lookups answer what a scan of the lines answers.
    #[test]
    fn index_follows_every_edit() {
        fn agrees(h: &Headers) {
            for name in [
                HeaderName::Via,
                HeaderName::From,
                HeaderName::CallId,
                HeaderName::Contact,
                HeaderName::ContentLength,
                HeaderName::Subject,
            ] {
                let scan: Vec<&Text> = h
                    .iter()
                    .filter(|l| l.name == name)
                    .map(|l| &l.value)
                    .collect();
                assert_eq!(h.get_all(&name).collect::<Vec<_>>(), scan, "{name}");
                assert_eq!(h.get(&name), scan.first().copied(), "{name}");
                assert_eq!(h.count(&name), scan.len(), "{name}");
                assert_eq!(
                    h.first_and_count(&name),
                    (scan.first().copied(), scan.len())
                );
            }
        }
        let mut h = Headers::new();
        h.push(HeaderName::From, "<sip:a@b>;tag=1");
        h.push(HeaderName::Via, "SIP/2.0/UDP a, SIP/2.0/UDP b");
        h.push(HeaderName::Subject, "s");
        h.push(HeaderName::Via, "SIP/2.0/UDP c");
        agrees(&h);
        h.push_front(HeaderName::Via, "SIP/2.0/UDP z");
        agrees(&h);
        h.insert_before(HeaderName::Contact, "<sip:c@d>");
        h.insert_before(HeaderName::From, "<sip:x@y>");
        agrees(&h);
        assert!(h.single(&HeaderName::From).is_err());
        h.replace(HeaderName::From, "<sip:only@one>");
        agrees(&h);
        assert_eq!(h.single(&HeaderName::From).unwrap(), "<sip:only@one>");
        h.pop_first_value(&HeaderName::Via);
        h.pop_first_value(&HeaderName::Via);
        agrees(&h);
        h.remove(&HeaderName::Via);
        h.replace(HeaderName::ContentLength, "0");
        agrees(&h);
        let copy = h.clone();
        assert_eq!(copy, h);
        agrees(&copy);
    }

    /// A received list answers the same whichever way a value is asked for (as positions in
    /// the head or as text of its own), equals the same list built by hand, and shows edits in
    /// `iter()` after `iter()` was called once.
    #[test]
    fn received_values_are_made_on_request() {
        let raw = "OPTIONS sip:a@b SIP/2.0\r\n\
            Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b\r\n\
            X-Foo:  bar \r\n\
            Subject: one\r\n two\r\n\
            i: c@h\r\n\
            l: 0\r\n\r\n";
        let m = crate::message::Message::parse(raw).unwrap();
        let h = m.headers();
        let mut built = Headers::new();
        for (name, value) in [
            (
                HeaderName::Via,
                "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b",
            ),
            (HeaderName::parse("X-Foo"), "bar"),
            (HeaderName::Subject, "one  two"),
            (HeaderName::CallId, "c@h"),
            (HeaderName::ContentLength, "0"),
        ] {
            built.push(name, value);
        }
        assert_eq!(h, &built);
        assert_eq!(format!("{h:?}"), format!("{built:?}"));
        let pairs = |h: &Headers| {
            h.iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(h), pairs(&built));
        assert_eq!(h.get_by_name("x-foo").unwrap(), "bar");
        assert_eq!(h.get(&HeaderName::Subject).unwrap(), "one  two");
        assert_eq!(h.get_all(&HeaderName::CallId).collect::<Vec<_>>(), ["c@h"]);
        let vias: Vec<Text> = h.values(&HeaderName::Via).collect();
        assert_eq!(vias, ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b"]);
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK1"));

        let mut edited = h.clone();
        assert_eq!(edited.iter().count(), 5);
        assert_eq!(
            edited.pop_first_value(&HeaderName::Via).unwrap(),
            "SIP/2.0/UDP a;branch=z9hG4bK1"
        );
        assert_eq!(edited.iter().next().unwrap().value, "SIP/2.0/UDP b");
        edited.push_front(HeaderName::Via, "SIP/2.0/TCP z");
        edited.replace(HeaderName::Subject, "new");
        edited.remove(&HeaderName::ContentLength);
        assert_eq!(
            pairs(&edited),
            [
                ("Via", "SIP/2.0/TCP z"),
                ("Via", "SIP/2.0/UDP b"),
                ("X-Foo", "bar"),
                ("Subject", "new"),
                ("Call-ID", "c@h"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert_eq!(h.len(), 5, "the original is untouched");
        let again = crate::message::Message::parse(m.to_bytes()).unwrap();
        assert_eq!(again.headers(), h);
    }

    /// More lines of an indexed name than the index can count, or one too far down to note:
    /// lookups still see every line.
    #[test]
    fn index_overflow_falls_back_to_looking_at_every_line() {
        let mut h = Headers::new();
        for i in 0..70_000u32 {
            h.push(HeaderName::Via, i.to_string());
        }
        h.push(HeaderName::From, "<sip:a@b>;tag=1");
        assert_eq!(h.count(&HeaderName::Via), 70_000);
        assert_eq!(h.get_all(&HeaderName::Via).last().unwrap(), "69999");
        assert_eq!(h.count(&HeaderName::From), 1);
        assert_eq!(h.from().unwrap().tag(), Some("1"));
        h.replace(HeaderName::Via, "only");
        assert_eq!((h.count(&HeaderName::Via), h.len()), (1, 2));
        assert_eq!(h.single(&HeaderName::From).unwrap(), "<sip:a@b>;tag=1");
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
