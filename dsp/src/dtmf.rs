//! Streaming in-band DTMF detector (ITU-T Q.23 frequencies, Q.24 / ETSI ES 201 235-3 receiver limits).
//!
//! # How it works
//!
//! Samples are cut into *sub-blocks* of 40 samples (5 ms). For every sub-block the detector computes the
//! complex DFT at the eight DTMF frequencies (one fixed table, one 16-lane multiply–add per sample, which
//! LLVM vectorises) plus the sub-block energy. Each DFT value is rotated to an absolute time reference, so
//! the DFT of any run of consecutive sub-blocks is just their sum.
//!
//! Every sub-block the detector looks at the *window* made of the last three sub-blocks (120 samples,
//! 15 ms, main-lobe null at ±67 Hz, so adjacent rows are resolved). A window *qualifies* for a digit when
//! the strongest row and column tone are both loud enough, their twist is within limits, each beats the
//! runner-up in its group clearly, and together they carry most of the window energy.
//!
//! A digit **starts** when five consecutive windows (35 ms of signal, i.e. Started ≤ 40 ms after the onset)
//! qualify for the same digit and, over those windows:
//! * the frequency of both tones, measured from the phase advance of the window DFT between windows 40
//!   and 120 samples apart, is within ±2.5 % (accept ±1.5 %, reject ±3.5 %);
//! * the tone pair, corrected for the window loss at the measured frequency offset, still carries most of
//!   the energy in every window, and no window is much weaker than the strongest one. A 40 ms tone always
//!   fills five windows completely; a 20 ms tone cannot fill five windows more than half each, so it fails.
//!
//! A digit **ends** after five consecutive windows (25 ms) in which its tone pair has dropped more than
//! 10 dB below its level at the start (or another digit qualifies): a 40 ms pause leaves at least five
//! windows fully silent, a 20 ms drop-out at most four windows mostly silent.
//!
//! Onset and end positions are refined from the sub-block energies to a few milliseconds.
//!
//! # Use
//!
//! One [`DtmfDetector`] per call. Feed it linear 8 kHz samples with [`DtmfDetector::push`] (any length;
//! one RTP frame is 160 samples), then drain [`DtmfDetector::poll_event`]. At the end of the stream call
//! [`DtmfDetector::finish`] and drain again. The detector never allocates per sample; its event queue only
//! grows if the caller pushes minutes of audio without polling.

use std::collections::VecDeque;
use std::f64::consts::PI;
use std::sync::LazyLock;

/// Sample rate the detector works at.
pub const SAMPLE_RATE: u32 = 8000;
/// Row (low-group) frequencies in Hz.
pub const ROW_FREQS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high-group) frequencies in Hz.
pub const COL_FREQS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Keypad layout: `KEYS[row][col]`.
pub const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The row and column frequency (Hz) of a DTMF digit, or `None` for a character that is no digit.
pub fn digit_freqs(digit: char) -> Option<(f64, f64)> {
    let d = digit.to_ascii_uppercase();
    for (r, row) in KEYS.iter().enumerate() {
        for (c, &k) in row.iter().enumerate() {
            if k == d {
                return Some((ROW_FREQS[r], COL_FREQS[c]));
            }
        }
    }
    None
}

/// What the detector reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A digit was recognised; `start` is the sample position of its onset (estimated).
    Started { digit: char, start: u64 },
    /// The digit stopped; `end` is the sample position just after its last tone sample (estimated).
    Ended { digit: char, start: u64, end: u64 },
}

/// Samples per sub-block (5 ms).
const SUB: usize = 40;
/// Sub-blocks per analysis window (120 samples, 15 ms).
const WIN_SUBS: usize = 3;
/// Samples per analysis window.
const WIN: usize = SUB * WIN_SUBS;
/// Consecutive qualifying windows needed to start a digit.
const START_WINDOWS: usize = 5;
/// Consecutive windows without the tone pair that end a digit.
const END_WINDOWS: u32 = 5;
/// Sub-block history kept for onset/end refinement.
const SUB_RING: usize = 16;
/// Window history kept for the start rule.
const WIN_RING: usize = 8;

/// Power (mean square, linear sample units) of a 0 dBm0 sine: peak 32768·10^(−3.14/20).
const DBM0_POWER: f32 = 2.605_1e8;
/// Lowest accepted per-tone level, −45 dBm0 (spec: accept −36, reject −55).
const MIN_TONE_POWER: f32 = DBM0_POWER * 3.162_277_7e-5;
/// Per-window limits (loose: a mobile codec makes twist and purity jump from window to window).
/// Largest normal twist (row stronger) in one window, 14 dB.
const WIN_NORMAL_TWIST: f32 = 25.1;
/// Largest reverse twist (column stronger) in one window, 12 dB.
const WIN_REVERSE_TWIST: f32 = 15.8;
/// Each chosen tone must beat the runner-up of its group in one window by this power ratio (4 dB).
const WIN_REL_PEAK: f32 = 2.51;
/// Share of the window energy the pair must carry in one window (uncorrected).
const WIN_RATIO: f32 = 0.40;

/// Start limits, over the five start windows together.
/// Largest normal twist of the summed powers, 9 dB (spec: accept 8 dB).
const START_NORMAL_TWIST: f32 = 7.943;
/// Largest reverse twist of the summed powers, 6 dB (spec: accept 4 dB).
const START_REVERSE_TWIST: f32 = 3.98;
/// Summed power of each tone over summed power of its group's runner-up, 8 dB.
const START_REL_PEAK: f32 = 6.31;
/// Share of energy the pair must carry in *every* start window after loss correction (a 20 ms tone
/// cannot fill five consecutive windows more than half each).
const MIN_RATIO_START: f32 = 0.64;
/// Mean share of energy the pair must carry over the start windows after loss correction.
const MIN_MEAN_RATIO_START: f32 = 0.80;
/// Largest accepted frequency error, relative (spec: accept 1.5 %, reject 3.5 %).
const MAX_FREQ_ERROR: f64 = 0.022;
/// No start window may be weaker than this fraction of the strongest one (−8 dB).
const MIN_CONSISTENCY: f32 = 0.158;
/// A digit in progress is present while its pair stays above this fraction of its start level (−10 dB)…
const PRESENT_FRACTION: f32 = 0.1;
/// …each tone stays above this fraction of its own start level (−20 dB; a codec may fade one tone)…
const PRESENT_SINGLE: f32 = 0.01;
/// …and the pair carries at least this share of the window energy.
const PRESENT_RATIO: f32 = 0.15;
/// A sub-block counts as fully toned when its energy reaches this fraction of the tone's energy.
const FULL_SUB: f32 = 0.7;

/// Per-position DFT coefficients: `[n][k]` = cos(ω_k n) for k < 8, −sin(ω_{k−8} n) for k ≥ 8.
struct Tables {
    dft: [[f32; 16]; SUB],
    /// Rotation e^{−jω_k·SUB} from one sub-block start to the next: (re, im).
    step: [(f64, f64); 8],
    /// ω_k in radians per sample.
    omega: [f64; 8],
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let mut omega = [0.0; 8];
    for k in 0..4 {
        omega[k] = 2.0 * PI * ROW_FREQS[k] / f64::from(SAMPLE_RATE);
        omega[k + 4] = 2.0 * PI * COL_FREQS[k] / f64::from(SAMPLE_RATE);
    }
    let mut dft = [[0.0f32; 16]; SUB];
    for (n, row) in dft.iter_mut().enumerate() {
        for k in 0..8 {
            let a = omega[k] * n as f64;
            row[k] = a.cos() as f32;
            row[k + 8] = -(a.sin() as f32);
        }
    }
    let mut step = [(0.0, 0.0); 8];
    for k in 0..8 {
        let a = omega[k] * SUB as f64;
        step[k] = (a.cos(), -a.sin());
    }
    Tables { dft, step, omega }
});

/// One analysed sub-block: absolute-phase DFT (re 0..8, im 8..16) and energy.
#[derive(Clone, Copy, Default)]
struct SubBlock {
    dft: [f32; 16],
    energy: f32,
    start: u64,
}

/// One analysed window.
#[derive(Clone, Copy, Default)]
struct Window {
    dft: [f32; 16],
    /// Per-bin mean power of the tone the bin sees (A²/2 for a sine of amplitude A at the bin).
    power: [f32; 8],
    /// Mean power of the whole window.
    mean_power: f32,
    /// Digit index (row·4 + col) this window qualifies for, if any.
    candidate: Option<u8>,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Idle,
    Active {
        digit: u8,
        start: u64,
        ref_row: f32,
        ref_col: f32,
        absent: u32,
        /// Index (sub-block counter) of the last sub-block of the last window where the pair was present.
        last_present: u64,
    },
}

/// Streaming DTMF detector for one 8 kHz audio stream. See the module docs.
///
/// Polling order: `push` → drain `poll_event` → … → `finish` → drain `poll_event`.
pub struct DtmfDetector {
    /// Samples of the sub-block being filled.
    buf: [f32; SUB],
    fill: usize,
    /// Samples pushed since new/reset.
    position: u64,
    /// Sub-blocks analysed since new/reset.
    subs_done: u64,
    /// e^{−jω_k·n0} for the next sub-block start n0: (re, im).
    phasor: [(f64, f64); 8],
    subs: [SubBlock; SUB_RING],
    wins: [Window; WIN_RING],
    state: State,
    events: VecDeque<DtmfEvent>,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl DtmfDetector {
    /// A detector for 8 kHz audio with the default (specification) thresholds.
    pub fn new() -> Self {
        DtmfDetector {
            buf: [0.0; SUB],
            fill: 0,
            position: 0,
            subs_done: 0,
            phasor: [(1.0, 0.0); 8],
            subs: [SubBlock::default(); SUB_RING],
            wins: [Window::default(); WIN_RING],
            state: State::Idle,
            events: VecDeque::with_capacity(16),
        }
    }

    /// Feed linear 16-bit samples at 8 kHz. Any length.
    pub fn push(&mut self, samples: &[i16]) {
        let mut rest = samples;
        if self.fill > 0 {
            let take = (SUB - self.fill).min(rest.len());
            for (d, &s) in self.buf[self.fill..self.fill + take]
                .iter_mut()
                .zip(&rest[..take])
            {
                *d = f32::from(s);
            }
            self.fill += take;
            self.position += take as u64;
            rest = &rest[take..];
            if self.fill < SUB {
                return;
            }
            self.fill = 0;
            let block = self.buf;
            self.analyse(&block);
        }
        let mut chunks = rest.chunks_exact(SUB);
        for chunk in &mut chunks {
            let mut block = [0.0f32; SUB];
            for (d, &s) in block.iter_mut().zip(chunk) {
                *d = f32::from(s);
            }
            self.position += SUB as u64;
            self.analyse(&block);
        }
        let tail = chunks.remainder();
        for (d, &s) in self.buf.iter_mut().zip(tail) {
            *d = f32::from(s);
        }
        self.fill = tail.len();
        self.position += tail.len() as u64;
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        self.events.pop_front()
    }

    /// End of stream: a digit still sounding is closed (its `Ended` is queued).
    pub fn finish(&mut self) {
        if let State::Active {
            digit,
            start,
            ref_row,
            ref_col,
            last_present,
            ..
        } = self.state
        {
            let end = self
                .estimate_end(last_present, ref_row + ref_col)
                .max(start + 1);
            self.events.push_back(DtmfEvent::Ended {
                digit: key(digit),
                start,
                end,
            });
            self.state = State::Idle;
        }
    }

    /// Forget everything, as if newly created (queued events are dropped too).
    pub fn reset(&mut self) {
        let events = std::mem::take(&mut self.events);
        *self = DtmfDetector {
            events,
            ..DtmfDetector::new()
        };
        self.events.clear();
    }

    /// Samples pushed since `new` or `reset`.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// DFT + energy of one full sub-block, then the per-sub-block decision logic.
    #[inline]
    fn analyse(&mut self, block: &[f32; SUB]) {
        let t = &*TABLES;
        // Two accumulator sets (even/odd samples) halve the add-latency chain.
        let mut a0 = [0.0f32; 16];
        let mut a1 = [0.0f32; 16];
        for (pair, coef) in block.chunks_exact(2).zip(t.dft.chunks_exact(2)) {
            let (x0, x1) = (pair[0], pair[1]);
            for k in 0..16 {
                a0[k] += x0 * coef[0][k];
                a1[k] += x1 * coef[1][k];
            }
        }
        let mut e = [0.0f32; 8];
        for chunk in block.chunks_exact(8) {
            for i in 0..8 {
                e[i] += chunk[i] * chunk[i];
            }
        }
        let energy: f32 = e.iter().sum();
        let mut dft = [0.0f32; 16];
        for k in 0..8 {
            let re = f64::from(a0[k] + a1[k]);
            let im = f64::from(a0[k + 8] + a1[k + 8]);
            let (pr, pi) = self.phasor[k];
            dft[k] = (re * pr - im * pi) as f32;
            dft[k + 8] = (re * pi + im * pr) as f32;
            let (sr, si) = t.step[k];
            let (nr, ni) = (pr * sr - pi * si, pr * si + pi * sr);
            // Keep |phasor| = 1 against rounding drift.
            let g = 1.5 - 0.5 * (nr * nr + ni * ni);
            self.phasor[k] = (nr * g, ni * g);
        }
        let start = self.position - SUB as u64 - self.fill as u64;
        let idx = self.subs_done;
        self.subs[(idx % SUB_RING as u64) as usize] = SubBlock { dft, energy, start };
        self.subs_done += 1;
        if self.subs_done >= WIN_SUBS as u64 {
            self.decide();
        }
    }

    /// Sub-block number `i` (must be within the ring).
    fn sub(&self, i: u64) -> &SubBlock {
        &self.subs[(i % SUB_RING as u64) as usize]
    }

    /// Window ending with sub-block `last` (window counter = sub-block counter of its last sub-block).
    fn win(&self, last: u64) -> &Window {
        &self.wins[(last % WIN_RING as u64) as usize]
    }

    /// Build the newest window and run the state machine.
    fn decide(&mut self) {
        let last = self.subs_done - 1;
        let mut dft = [0.0f32; 16];
        let mut energy = 0.0f32;
        for i in 0..WIN_SUBS as u64 {
            let s = self.sub(last - i);
            for k in 0..16 {
                dft[k] += s.dft[k];
            }
            energy += s.energy;
        }
        let scale = 2.0 / (WIN as f32 * WIN as f32);
        let mut power = [0.0f32; 8];
        for k in 0..8 {
            power[k] = (dft[k] * dft[k] + dft[k + 8] * dft[k + 8]) * scale;
        }
        let mean_power = energy / WIN as f32;
        let candidate = qualify(&power, mean_power);
        self.wins[(last % WIN_RING as u64) as usize] = Window {
            dft,
            power,
            mean_power,
            candidate,
        };

        match self.state {
            State::Idle => self.try_start(last),
            State::Active {
                digit,
                start,
                ref_row,
                ref_col,
                absent,
                last_present,
            } => {
                let (r, c) = split(digit);
                let p_row = power[r];
                let p_col = power[c + 4];
                let other = candidate.is_some_and(|d| d != digit);
                let present = !other
                    && p_row + p_col >= PRESENT_FRACTION * (ref_row + ref_col)
                    && p_row >= PRESENT_SINGLE * ref_row
                    && p_col >= PRESENT_SINGLE * ref_col
                    && p_row + p_col >= PRESENT_RATIO * mean_power;
                if present {
                    self.state = State::Active {
                        digit,
                        start,
                        ref_row,
                        ref_col,
                        absent: 0,
                        last_present: last,
                    };
                } else if absent + 1 >= END_WINDOWS {
                    let end = self
                        .estimate_end(last_present, ref_row + ref_col)
                        .max(start + 1);
                    self.events.push_back(DtmfEvent::Ended {
                        digit: key(digit),
                        start,
                        end,
                    });
                    self.state = State::Idle;
                } else {
                    self.state = State::Active {
                        digit,
                        start,
                        ref_row,
                        ref_col,
                        absent: absent + 1,
                        last_present,
                    };
                }
            }
        }
    }

    /// Start rule over the last `START_WINDOWS` windows (see module docs).
    fn try_start(&mut self, last: u64) {
        let first_window = WIN_SUBS as u64 - 1;
        if last < first_window + START_WINDOWS as u64 - 1 {
            return;
        }
        let Some(digit) = self.win(last).candidate else {
            return;
        };
        let oldest = last + 1 - START_WINDOWS as u64;
        if (oldest..last).any(|w| self.win(w).candidate != Some(digit)) {
            return;
        }
        let (r, c) = split(digit);
        let t = &*TABLES;
        let mut corrected = [[0.0f32; 2]; START_WINDOWS];
        for (slot, bin) in [r, c + 4].into_iter().enumerate() {
            let Some(offset) = self.frequency_offset(bin, oldest, last) else {
                return;
            };
            let f0 = t.omega[bin];
            if (offset / f0).abs() > MAX_FREQ_ERROR {
                return;
            }
            let loss = window_loss(offset).max(0.2);
            for (i, w) in (oldest..=last).enumerate() {
                corrected[i][slot] = self.win(w).power[bin] / loss;
            }
        }
        let (mut sum_row, mut sum_col, mut max_pair) = (0.0f32, 0.0f32, 0.0f32);
        let (mut runner_row, mut runner_col) = (0.0f32, 0.0f32);
        let mut ratio_sum = 0.0f32;
        for (i, w) in (oldest..=last).enumerate() {
            let win = self.win(w);
            let pair = corrected[i][0] + corrected[i][1];
            if pair < MIN_RATIO_START * win.mean_power {
                return;
            }
            ratio_sum += pair / win.mean_power;
            sum_row += corrected[i][0];
            sum_col += corrected[i][1];
            runner_row += runner_up(&win.power[..4], r);
            runner_col += runner_up(&win.power[4..], c);
            max_pair = max_pair.max(win.power[r] + win.power[c + 4]);
        }
        if sum_row > START_NORMAL_TWIST * sum_col
            || sum_col > START_REVERSE_TWIST * sum_row
            || ratio_sum < MIN_MEAN_RATIO_START * START_WINDOWS as f32
            || sum_row < START_REL_PEAK * runner_row
            || sum_col < START_REL_PEAK * runner_col
        {
            return;
        }
        for w in oldest..=last {
            let win = self.win(w);
            if win.power[r] + win.power[c + 4] < MIN_CONSISTENCY * max_pair {
                return;
            }
        }
        let n = START_WINDOWS as f32;
        let ref_row = (oldest..=last).map(|w| self.win(w).power[r]).sum::<f32>() / n;
        let ref_col = (oldest..=last)
            .map(|w| self.win(w).power[c + 4])
            .sum::<f32>()
            / n;
        let start = self.estimate_onset(last, ref_row + ref_col);
        self.events.push_back(DtmfEvent::Started {
            digit: key(digit),
            start,
        });
        self.state = State::Active {
            digit,
            start,
            ref_row,
            ref_col,
            absent: 0,
            last_present: last,
        };
    }

    /// Frequency offset (radians/sample) of the tone in `bin` over windows `oldest..=last`, from the phase
    /// advance of the window DFT over 40 samples (coarse, unambiguous to ±100 Hz) refined over 120 samples.
    fn frequency_offset(&self, bin: usize, oldest: u64, last: u64) -> Option<f64> {
        let lag_sum = |lag: u64| {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            for w in oldest + lag..=last {
                let a = &self.win(w).dft;
                let b = &self.win(w - lag).dft;
                let (ar, ai) = (f64::from(a[bin]), f64::from(a[bin + 8]));
                let (br, bi) = (f64::from(b[bin]), f64::from(b[bin + 8]));
                re += ar * br + ai * bi;
                im += ai * br - ar * bi;
            }
            (re, im)
        };
        let (re1, im1) = lag_sum(1);
        if re1 == 0.0 && im1 == 0.0 {
            return None;
        }
        let coarse = im1.atan2(re1) / SUB as f64;
        let (re3, im3) = lag_sum(WIN_SUBS as u64);
        if re3 == 0.0 && im3 == 0.0 {
            return Some(coarse);
        }
        let lag = WIN as f64;
        let fine = im3.atan2(re3);
        let turns = ((coarse * lag - fine) / (2.0 * PI)).round();
        Some((fine + turns * 2.0 * PI) / lag)
    }

    /// Onset estimate: walk back over sub-blocks that carry the full tone energy, then add the covered
    /// part of the sub-block before them.
    fn estimate_onset(&self, last: u64, tone_power: f32) -> u64 {
        let tone_energy = tone_power * SUB as f32;
        let oldest_kept = self.subs_done.saturating_sub(SUB_RING as u64);
        let mut k = last;
        while k > oldest_kept && self.sub(k - 1).energy >= FULL_SUB * tone_energy {
            k -= 1;
        }
        let full_start = self.sub(k).start;
        if k == oldest_kept || k == 0 {
            return full_start;
        }
        let partial = self.sub(k - 1).energy;
        let floor = if k >= oldest_kept + 2 {
            self.sub(k - 2).energy.min(partial)
        } else {
            0.0
        };
        let frac = ((partial - floor) / tone_energy).clamp(0.0, 1.0);
        full_start - (frac * SUB as f32).round() as u64
    }

    /// End estimate: from the first sub-block of the last window where the pair was present, walk forward
    /// over fully toned sub-blocks, then add the covered part of the next one.
    fn estimate_end(&self, last_present: u64, tone_power: f32) -> u64 {
        let tone_energy = tone_power * SUB as f32;
        let newest = self.subs_done.saturating_sub(1);
        let oldest_kept = self.subs_done.saturating_sub(SUB_RING as u64);
        let mut k = last_present
            .saturating_sub(WIN_SUBS as u64 - 1)
            .max(oldest_kept);
        if self.subs_done == 0 {
            return self.position;
        }
        while k <= newest && self.sub(k).energy >= FULL_SUB * tone_energy {
            k += 1;
        }
        if k > newest {
            return self.sub(newest).start + SUB as u64;
        }
        let partial = self.sub(k).energy;
        let floor = if k < newest {
            self.sub(k + 1).energy.min(partial)
        } else {
            0.0
        };
        let frac = ((partial - floor) / tone_energy).clamp(0.0, 1.0);
        self.sub(k).start + (frac * SUB as f32).round() as u64
    }
}

/// Single-window test: the digit index this window's spectrum looks like, if any.
#[inline]
fn qualify(power: &[f32; 8], mean_power: f32) -> Option<u8> {
    let (r, p_row, r2) = best_two(&power[..4]);
    let (c, p_col, c2) = best_two(&power[4..]);
    let ok = p_row >= MIN_TONE_POWER
        && p_col >= MIN_TONE_POWER
        && p_row <= WIN_NORMAL_TWIST * p_col
        && p_col <= WIN_REVERSE_TWIST * p_row
        && p_row >= WIN_REL_PEAK * r2
        && p_col >= WIN_REL_PEAK * c2
        && p_row + p_col >= WIN_RATIO * mean_power;
    ok.then_some((r * 4 + c) as u8)
}

/// Index and value of the largest of four powers, and the second largest value.
#[inline]
fn best_two(p: &[f32]) -> (usize, f32, f32) {
    let mut best = 0;
    for i in 1..p.len() {
        if p[i] > p[best] {
            best = i;
        }
    }
    (best, p[best], runner_up(p, best))
}

/// Largest of `p` other than index `skip`.
#[inline]
fn runner_up(p: &[f32], skip: usize) -> f32 {
    p.iter()
        .enumerate()
        .filter(|&(i, _)| i != skip)
        .fold(0.0f32, |m, (_, &v)| m.max(v))
}

/// Power response of a `WIN`-sample rectangular window to a tone `offset` rad/sample off the bin.
fn window_loss(offset: f64) -> f32 {
    let half = offset / 2.0;
    if half.abs() < 1e-9 {
        return 1.0;
    }
    let r = (half * WIN as f64).sin() / (WIN as f64 * half.sin());
    (r * r) as f32
}

fn split(digit: u8) -> (usize, usize) {
    (usize::from(digit / 4), usize::from(digit % 4))
}

fn key(digit: u8) -> char {
    let (r, c) = split(digit);
    KEYS[r][c]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(digit: char, amp: f64, len: usize, phase: u64) -> Vec<i16> {
        let (fr, fc) = digit_freqs(digit).unwrap();
        (0..len)
            .map(|n| {
                let t = (n as u64 + phase) as f64 / 8000.0;
                (amp * ((2.0 * PI * fr * t).sin() + (2.0 * PI * fc * t).sin())) as i16
            })
            .collect()
    }

    fn run(samples: &[i16]) -> Vec<DtmfEvent> {
        let mut d = DtmfDetector::new();
        for chunk in samples.chunks(160) {
            d.push(chunk);
        }
        d.finish();
        std::iter::from_fn(|| d.poll_event()).collect()
    }

    #[test]
    fn every_key_is_detected_with_its_timing() {
        for row in KEYS {
            for k in row {
                let mut s = vec![0i16; 403];
                s.extend(tone(k, 5000.0, 640, 0));
                s.extend(vec![0i16; 800]);
                let ev = run(&s);
                assert_eq!(ev.len(), 2, "{k}: {ev:?}");
                let DtmfEvent::Ended { digit, start, end } = ev[1] else {
                    panic!("{ev:?}")
                };
                assert_eq!(digit, k);
                assert!(start.abs_diff(403) <= 16, "{k} start {start}");
                assert!(end.abs_diff(403 + 640) <= 16, "{k} end {end}");
            }
        }
    }

    #[test]
    fn chunking_does_not_change_results() {
        let mut s = vec![0i16; 97];
        for k in ['1', '5', '9', '#'] {
            s.extend(tone(k, 3000.0, 480, 7));
            s.extend(vec![0i16; 480]);
        }
        let whole = run(&s);
        let mut d = DtmfDetector::new();
        for chunk in s.chunks(7) {
            d.push(chunk);
        }
        d.finish();
        let bits: Vec<_> = std::iter::from_fn(|| d.poll_event()).collect();
        assert_eq!(whole, bits);
        assert_eq!(whole.len(), 8);
    }

    #[test]
    fn digit_still_sounding_at_finish_is_closed() {
        let ev = run(&tone('7', 4000.0, 800, 3));
        assert_eq!(ev.len(), 2);
        assert!(
            matches!(
                ev[1],
                DtmfEvent::Ended {
                    digit: '7',
                    end: 800,
                    ..
                }
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn reset_forgets_position_and_state() {
        let mut d = DtmfDetector::new();
        d.push(&tone('3', 4000.0, 800, 0));
        assert_eq!(d.position(), 800);
        d.reset();
        assert_eq!(d.position(), 0);
        d.finish();
        assert_eq!(d.poll_event(), None);
    }
}
