//! Request methods (RFC 3261 §7.1, §27.4 and the extension RFCs) and response status codes with
//! their standard reason phrases (RFC 3261 §21 and later RFCs).

use std::fmt;

/// A SIP method. Methods are case-sensitive (RFC 3261 §7.1): `invite` is an extension method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Refer,
    Notify,
    Update,
    Prack,
    Subscribe,
    Message,
    Publish,
    /// Any other token, kept as received (e.g. `RE%47IST%45R` is not REGISTER).
    Extension(String),
}

impl Method {
    /// Map a method token. Does not check token syntax; [`Method::is_valid_token`] does.
    pub fn parse(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(other.to_owned()),
        }
    }

    /// True if `s` is a syntactically valid method token.
    pub fn is_valid_token(s: &str) -> bool {
        super::lex::is_token(s)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }

    /// The standard methods, in the order used for a default `Allow` header.
    pub const STANDARD: [Method; 14] = [
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Options,
        Method::Register,
        Method::Info,
        Method::Refer,
        Method::Notify,
        Method::Update,
        Method::Prack,
        Method::Subscribe,
        Method::Message,
        Method::Publish,
    ];
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Method {
    fn from(s: &str) -> Self {
        Method::parse(s)
    }
}

/// A response status code, 100..=699.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

macro_rules! status_codes {
    ($( $konst:ident = $code:literal, $phrase:literal; )*) => {
        impl StatusCode {
            $( pub const $konst: StatusCode = StatusCode($code); )*

            /// The standard reason phrase, or a class default for unknown codes.
            pub fn reason(&self) -> &'static str {
                match self.0 {
                    $( $code => $phrase, )*
                    100..=199 => "Trying",
                    200..=299 => "OK",
                    300..=399 => "Multiple Choices",
                    400..=499 => "Bad Request",
                    500..=599 => "Server Internal Error",
                    _ => "Global Failure",
                }
            }
        }
    };
}

status_codes! {
    TRYING = 100, "Trying";
    RINGING = 180, "Ringing";
    CALL_IS_BEING_FORWARDED = 181, "Call Is Being Forwarded";
    QUEUED = 182, "Queued";
    SESSION_PROGRESS = 183, "Session Progress";
    EARLY_DIALOG_TERMINATED = 199, "Early Dialog Terminated";
    OK = 200, "OK";
    ACCEPTED = 202, "Accepted";
    NO_NOTIFICATION = 204, "No Notification";
    MULTIPLE_CHOICES = 300, "Multiple Choices";
    MOVED_PERMANENTLY = 301, "Moved Permanently";
    MOVED_TEMPORARILY = 302, "Moved Temporarily";
    USE_PROXY = 305, "Use Proxy";
    ALTERNATIVE_SERVICE = 380, "Alternative Service";
    BAD_REQUEST = 400, "Bad Request";
    UNAUTHORIZED = 401, "Unauthorized";
    PAYMENT_REQUIRED = 402, "Payment Required";
    FORBIDDEN = 403, "Forbidden";
    NOT_FOUND = 404, "Not Found";
    METHOD_NOT_ALLOWED = 405, "Method Not Allowed";
    NOT_ACCEPTABLE = 406, "Not Acceptable";
    PROXY_AUTHENTICATION_REQUIRED = 407, "Proxy Authentication Required";
    REQUEST_TIMEOUT = 408, "Request Timeout";
    GONE = 410, "Gone";
    CONDITIONAL_REQUEST_FAILED = 412, "Conditional Request Failed";
    REQUEST_ENTITY_TOO_LARGE = 413, "Request Entity Too Large";
    REQUEST_URI_TOO_LONG = 414, "Request-URI Too Long";
    UNSUPPORTED_MEDIA_TYPE = 415, "Unsupported Media Type";
    UNSUPPORTED_URI_SCHEME = 416, "Unsupported URI Scheme";
    UNKNOWN_RESOURCE_PRIORITY = 417, "Unknown Resource-Priority";
    BAD_EXTENSION = 420, "Bad Extension";
    EXTENSION_REQUIRED = 421, "Extension Required";
    SESSION_INTERVAL_TOO_SMALL = 422, "Session Interval Too Small";
    INTERVAL_TOO_BRIEF = 423, "Interval Too Brief";
    BAD_LOCATION_INFORMATION = 424, "Bad Location Information";
    USE_IDENTITY_HEADER = 428, "Use Identity Header";
    PROVIDE_REFERRER_IDENTITY = 429, "Provide Referrer Identity";
    FLOW_FAILED = 430, "Flow Failed";
    ANONYMITY_DISALLOWED = 433, "Anonymity Disallowed";
    BAD_IDENTITY_INFO = 436, "Bad Identity-Info";
    UNSUPPORTED_CERTIFICATE = 437, "Unsupported Certificate";
    INVALID_IDENTITY_HEADER = 438, "Invalid Identity Header";
    FIRST_HOP_LACKS_OUTBOUND_SUPPORT = 439, "First Hop Lacks Outbound Support";
    MAX_BREADTH_EXCEEDED = 440, "Max-Breadth Exceeded";
    BAD_INFO_PACKAGE = 469, "Bad Info Package";
    CONSENT_NEEDED = 470, "Consent Needed";
    TEMPORARILY_UNAVAILABLE = 480, "Temporarily Unavailable";
    CALL_TRANSACTION_DOES_NOT_EXIST = 481, "Call/Transaction Does Not Exist";
    LOOP_DETECTED = 482, "Loop Detected";
    TOO_MANY_HOPS = 483, "Too Many Hops";
    ADDRESS_INCOMPLETE = 484, "Address Incomplete";
    AMBIGUOUS = 485, "Ambiguous";
    BUSY_HERE = 486, "Busy Here";
    REQUEST_TERMINATED = 487, "Request Terminated";
    NOT_ACCEPTABLE_HERE = 488, "Not Acceptable Here";
    BAD_EVENT = 489, "Bad Event";
    REQUEST_PENDING = 491, "Request Pending";
    UNDECIPHERABLE = 493, "Undecipherable";
    SECURITY_AGREEMENT_REQUIRED = 494, "Security Agreement Required";
    SERVER_INTERNAL_ERROR = 500, "Server Internal Error";
    NOT_IMPLEMENTED = 501, "Not Implemented";
    BAD_GATEWAY = 502, "Bad Gateway";
    SERVICE_UNAVAILABLE = 503, "Service Unavailable";
    SERVER_TIMEOUT = 504, "Server Time-out";
    VERSION_NOT_SUPPORTED = 505, "Version Not Supported";
    MESSAGE_TOO_LARGE = 513, "Message Too Large";
    PRECONDITION_FAILURE = 580, "Precondition Failure";
    BUSY_EVERYWHERE = 600, "Busy Everywhere";
    DECLINE = 603, "Decline";
    DOES_NOT_EXIST_ANYWHERE = 604, "Does Not Exist Anywhere";
    NOT_ACCEPTABLE_GLOBAL = 606, "Not Acceptable";
    UNWANTED = 607, "Unwanted";
    REJECTED = 608, "Rejected";
}

impl StatusCode {
    /// A status code in 100..=699, else `None`.
    pub fn new(code: u16) -> Option<StatusCode> {
        (100..=699).contains(&code).then_some(StatusCode(code))
    }

    pub fn as_u16(&self) -> u16 {
        self.0
    }

    /// 1xx.
    pub fn is_provisional(&self) -> bool {
        self.0 < 200
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.0)
    }

    /// 200..=699.
    pub fn is_final(&self) -> bool {
        self.0 >= 200
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::parse("INVITE"), Method::Invite);
        assert_eq!(Method::parse("invite"), Method::Extension("invite".into()));
        assert_eq!(
            Method::parse("RE%47IST%45R"),
            Method::Extension("RE%47IST%45R".into())
        );
        for m in Method::STANDARD {
            assert_eq!(Method::parse(m.as_str()), m);
        }
    }

    #[test]
    fn status_codes_have_reasons_and_bounds() {
        assert_eq!(StatusCode::BAD_EXTENSION.reason(), "Bad Extension");
        assert_eq!(StatusCode::new(299).unwrap().reason(), "OK");
        assert_eq!(StatusCode::new(700), None);
        assert_eq!(StatusCode::new(99), None);
        assert!(StatusCode::RINGING.is_provisional());
        assert!(StatusCode::OK.is_success() && StatusCode::OK.is_final());
    }
}
