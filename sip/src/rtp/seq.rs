//! Receive-side sequence tracking for one SSRC (RFC 3550 §6.4.1 and Appendix A.1 `update_seq`,
//! Appendix A.3 loss, Appendix A.8 interarrival jitter), plus duplicate detection in a 128-packet
//! window.

/// RFC 3550 A.1 constants.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const WINDOW: u64 = 128;

/// What a sequence number means for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SeqOutcome {
    /// Newer than anything seen (possibly after a gap): use it.
    InOrder,
    /// Older than the highest seen but not seen before (reordered): usable, late.
    Late,
    /// Seen before.
    Duplicate,
    /// A jump larger than MAX_DROPOUT: ignored until the next packet confirms it (A.1 `bad_seq`).
    Jump,
}

#[derive(Debug, Clone)]
pub(super) struct SeqTracker {
    max_seq: u16,
    /// Count of sequence wraps, shifted left 16 (A.1 `cycles`).
    cycles: u64,
    base_seq: u64,
    bad_seq: Option<u16>,
    received: u64,
    duplicates: u64,
    late: u64,
    /// Bit i set: extended sequence `extended_max - i` was received.
    window: u128,
    jitter: f64,
    last_transit: Option<i64>,
}

impl SeqTracker {
    pub fn new(seq: u16) -> Self {
        SeqTracker {
            max_seq: seq,
            cycles: 0,
            base_seq: u64::from(seq),
            bad_seq: None,
            received: 1,
            duplicates: 0,
            late: 0,
            window: 1,
            jitter: 0.0,
            last_transit: None,
        }
    }

    /// Updates with a new sequence number; returns its meaning and its extended (32+ bit) value.
    pub fn update(&mut self, seq: u16) -> (SeqOutcome, u64) {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta == 0 {
            self.duplicates += 1;
            return (SeqOutcome::Duplicate, self.extended_max());
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
            self.bad_seq = None;
            self.shift_window(u64::from(udelta));
            self.window |= 1;
            self.received += 1;
            return (SeqOutcome::InOrder, self.extended_max());
        }
        if udelta <= u16::MAX - MAX_MISORDER {
            // A very large jump: the sender restarted or this is garbage. Accept only when the next
            // packet follows on (A.1 `bad_seq`), then treat it as a new sequence.
            if self.bad_seq == Some(seq) {
                let keep = (self.duplicates, self.late, self.jitter);
                *self = SeqTracker::new(seq);
                (self.duplicates, self.late, self.jitter) = keep;
                return (SeqOutcome::InOrder, self.extended_max());
            }
            self.bad_seq = Some(seq.wrapping_add(1));
            return (SeqOutcome::Jump, self.extended_max());
        }
        // Behind the highest: reordered or duplicate.
        let behind = u64::from(self.max_seq.wrapping_sub(seq));
        let extended = self.extended_max().saturating_sub(behind);
        if behind < WINDOW {
            let bit = 1u128 << behind;
            if self.window & bit != 0 {
                self.duplicates += 1;
                return (SeqOutcome::Duplicate, extended);
            }
            self.window |= bit;
        }
        self.late += 1;
        self.received += 1;
        (SeqOutcome::Late, extended)
    }

    /// A.8 jitter; `arrival` and `timestamp` in RTP clock units.
    pub fn update_jitter(&mut self, arrival: u32, timestamp: u32) {
        let transit = i64::from(arrival.wrapping_sub(timestamp) as i32);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    pub fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn late(&self) -> u64 {
        self.late
    }

    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// A.3 cumulative number of packets lost (negative when duplicates outnumber losses in the
    /// RFC's definition; ours excludes duplicates, so it is >= 0 unless late packets from before the
    /// base arrive).
    pub fn lost(&self) -> i64 {
        let expected = self.extended_max() + 1 - self.base_seq;
        expected as i64 - self.received as i64
    }

    fn shift_window(&mut self, by: u64) {
        self.window = if by >= 128 { 0 } else { self.window << by };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_extends_the_sequence_and_counts_nothing_lost() {
        let mut t = SeqTracker::new(65_534);
        assert_eq!(t.update(65_535), (SeqOutcome::InOrder, 65_535));
        assert_eq!(t.update(0), (SeqOutcome::InOrder, 65_536));
        assert_eq!(t.update(1), (SeqOutcome::InOrder, 65_537));
        assert_eq!(t.lost(), 0);
        assert_eq!(t.received(), 4);
    }

    #[test]
    fn gaps_are_lost_until_late_packets_fill_them() {
        let mut t = SeqTracker::new(10);
        t.update(13); // 11, 12 missing
        assert_eq!(t.lost(), 2);
        assert_eq!(t.update(11).0, SeqOutcome::Late);
        assert_eq!(t.lost(), 1);
        assert_eq!(t.update(11).0, SeqOutcome::Duplicate);
        assert_eq!(t.update(13).0, SeqOutcome::Duplicate);
        assert_eq!((t.duplicates(), t.late(), t.lost()), (2, 1, 1));
    }

    #[test]
    fn late_packet_across_the_wrap_gets_the_previous_cycle() {
        let mut t = SeqTracker::new(65_535);
        t.update(1);
        assert_eq!(t.update(0), (SeqOutcome::Late, 65_536));
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn huge_jump_needs_a_second_packet_to_restart() {
        let mut t = SeqTracker::new(100);
        assert_eq!(t.update(40_000).0, SeqOutcome::Jump);
        assert_eq!(
            t.update(101).0,
            SeqOutcome::InOrder,
            "stream went on as before"
        );
        assert_eq!(t.update(50_000).0, SeqOutcome::Jump);
        assert_eq!(t.update(50_001).0, SeqOutcome::InOrder, "restart confirmed");
        assert_eq!(t.extended_max(), 50_001);
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn constant_transit_has_zero_jitter_and_varying_transit_does_not() {
        let mut t = SeqTracker::new(0);
        for i in 0..10u32 {
            t.update_jitter(1000 + i * 160, i * 160);
        }
        assert_eq!(t.jitter(), 0.0);
        t.update_jitter(1000 + 10 * 160 + 80, 10 * 160);
        assert!(
            (t.jitter() - 5.0).abs() < 1e-9,
            "80/16 = 5, got {}",
            t.jitter()
        );
    }
}
