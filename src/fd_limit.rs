//! The open-files limit (`RLIMIT_NOFILE`) a server needs for its calls.
//!
//! Every live call holds up to three RTP sockets (the caller's, an agent's, one being replaced),
//! each media thread's io_uring registers a file table as large as its share of them, and the
//! SIP, HTTP and database connections come on top. A shell's default soft limit (1,024) would
//! refuse sockets at about 300 calls, far below `calls.max_calls`: so `serve` and `demo` raise the
//! soft limit at start, up to the hard limit (as far as the calls need; never lowered), and say in
//! the log when even the hard limit is too low for `calls.max_calls` (systemd's `LimitNOFILE`,
//! Docker's `--ulimit nofile`).

/// Descriptors besides the calls' RTP sockets: listeners, SIP over TCP/TLS, HTTP clients and
/// portal connections, the store, log files.
const RESERVE: u64 = 4096;

/// Sockets a call may hold at once.
const SOCKETS_PER_CALL: u64 = 3;

/// What to do with the limit, decided from the present one (pure, for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The soft limit to set, when it must go up.
    pub raise_to: Option<u64>,
    /// When the hard limit is too low for `max_calls`: about how many calls it allows.
    pub calls_allowed: Option<u64>,
}

/// The plan for `max_calls` calls under the limits `soft` and `hard`.
pub fn plan(soft: u64, hard: u64, max_calls: usize) -> Plan {
    let wanted = (max_calls as u64)
        .saturating_mul(SOCKETS_PER_CALL)
        .saturating_add(RESERVE);
    let target = wanted.min(hard);
    Plan {
        raise_to: (target > soft).then_some(target),
        calls_allowed: (hard < wanted)
            .then(|| hard.saturating_sub(RESERVE.min(hard / 2)) / SOCKETS_PER_CALL),
    }
}

/// Raises the soft limit as [`plan`] says, logging what it did and any shortfall.
pub fn raise_for(max_calls: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let plan = plan(soft, hard, max_calls);
    if let Some(to) = plan.raise_to {
        match setrlimit(Resource::RLIMIT_NOFILE, to, hard) {
            Ok(()) => tracing::debug!("open-files limit raised from {soft} to {to}"),
            Err(e) => tracing::warn!("cannot raise the open-files limit from {soft} to {to}: {e}"),
        }
    }
    if let Some(calls) = plan.calls_allowed {
        tracing::warn!(
            "the open-files hard limit ({hard}) allows about {calls} calls at once, fewer than \
             calls.max_calls ({max_calls}): raise it (systemd LimitNOFILE, docker --ulimit nofile) \
             or lower calls.max_calls"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shells_1024_goes_up_to_what_the_calls_need_within_the_hard_limit() {
        // 2,500 calls (the default) need 7,500 sockets and the reserve.
        assert_eq!(
            plan(1024, 524_288, 2500),
            Plan {
                raise_to: Some(11_596),
                calls_allowed: None
            }
        );
        // Already enough (systemd unit's 65,536): left alone.
        assert_eq!(
            plan(65_536, 65_536, 2500),
            Plan {
                raise_to: None,
                calls_allowed: None
            }
        );
    }

    #[test]
    fn a_hard_limit_below_max_calls_is_used_in_full_and_reported() {
        let p = plan(1024, 4096, 2500);
        assert_eq!(p.raise_to, Some(4096));
        // Half of it kept for the rest, the other half three sockets a call.
        assert_eq!(p.calls_allowed, Some(682));
        // A soft limit above what the calls need is never lowered.
        assert_eq!(plan(200_000, 1_000_000, 10).raise_to, None);
    }
}
