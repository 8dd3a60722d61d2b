//! SIP dialogs (RFC 3261 §12–§15, RFC 3515 REFER/NOTIFY, RFC 4028 session timers).

pub mod ack_wait;
pub mod glare;
pub mod session_timer;
