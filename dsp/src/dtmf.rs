//! Streaming in-band DTMF detector (ITU-T Q.23 frequencies, Q.24 / ETSI ES 201 235-3 receiver limits).
//!
//! # How it works
//!
//! Samples are cut into *sub-blocks* of 40 samples (5 ms). For every sub-block the detector computes the
//! complex DFT at the eight DTMF frequencies (one fixed table, one 16-lane multiply–add per sample that
//! LLVM vectorises) plus the sub-block energy. On CPUs with AVX2 + FMA a second copy of the whole
//! per-sample and per-window path (conversion, DFT, window sums, window test) compiled for them is
//! used. Each DFT value is rotated to an absolute time reference, so the DFT of any
//! run of consecutive sub-blocks is just their sum.
//!
//! Every sub-block the detector looks at the *window* made of the last three sub-blocks (120 samples,
//! 15 ms, main-lobe null at ±67 Hz, so adjacent rows are resolved). A window *qualifies* for a digit when
//! the strongest row and column tone are both loud enough (≥ −48 dBm0), each beats the runner-up in its
//! group, the twist is not absurd and the pair carries a fair share of the energy. These per-window
//! limits are deliberately loose: a mobile codec (AMR-NB 4.75 kbit/s) makes twist and purity jump by
//! 10 dB from one 15 ms window to the next.
//!
//! A digit **starts** when five consecutive windows (35 ms of signal, so `Started` comes ≤ 40 ms after the
//! onset) qualify for the same digit and, over those windows together:
//! * the frequency of each tone, measured from the phase advance of the window DFT over 40 and 120
//!   samples (fully covered windows only), is within ±1.9 % (spec: accept ±1.5 %, reject ±3.5 %);
//! * the powers of the two tones at their measured frequencies, solved free of window loss and of
//!   each other's leakage, give a twist of at most 9 dB normal / 6 dB reverse (spec: 8 / 4; 8 dB reverse
//!   for tones within 0.6 % of nominal) and beat the runners-up by 8 dB;
//! * those powers carry ≥ 64 % of the energy in *every* window and ≥ 80 % on average (for tones within
//!   0.6 % of nominal, as a digit held over speech is: 55 % / 62 %). A 40 ms tone always fills five
//!   windows completely; a 20 ms tone cannot fill five consecutive windows more than half each, so it
//!   fails the every-window share.
//!
//! * *harmonic guard* (talk-off): the two tones, fitted over the last 25 ms and removed, leave little
//!   at f/2, 3f/2, 2f and 3f of either tone f (≤ −10 dB, −16 dB at 3f; 4 dB stricter for a pair
//!   that carries < 75 % of the energy or is off frequency, 10 dB stricter below 68 %), and the
//!   column is not an octave of the row. A sender's sines have no such partials; a voice or an
//!   instrument that puts one harmonic of its pitch on a DTMF frequency nearly always has the next.
//!   It runs only when everything else has passed, so it costs nothing per sample.
//!
//! A digit **ends** after five consecutive windows (25 ms) that neither qualify for it nor keep its pair
//! within 10 dB of its running level (each tone within 20 dB), or in which another digit qualifies: a
//! 40 ms pause leaves at least five windows fully silent, a 20 ms drop-out at most four mostly silent.
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
/// Lowest accepted per-tone level, −48 dBm0 (spec: accept −36, reject −55; room for 8 dB twist at −36).
const MIN_TONE_POWER: f32 = DBM0_POWER * 1.584_893_2e-5;
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
/// Tones within this relative frequency error of nominal on both groups count as exact…
const EXACT_FREQ_ERROR: f64 = 0.006;
/// …and then need only this share of energy in every start window (still > ½: 20 ms tones fail)…
const MIN_RATIO_START_EXACT: f32 = 0.55;
/// …and this mean share, and may have up to 8 dB reverse twist (AMR-NB lifts the high group).
const MIN_MEAN_RATIO_START_EXACT: f32 = 0.62;
const START_REVERSE_TWIST_EXACT: f32 = 6.31;
/// Largest accepted frequency error, relative (spec: accept 1.5 %, reject 3.5 %; speech and music
/// that fooled the detector at 2.2 % measured 1.8–2.2 %).
const MAX_FREQ_ERROR: f64 = 0.019;
/// No start window may be weaker than this fraction of the strongest one (−8 dB).
const MIN_CONSISTENCY: f32 = 0.158;
/// A digit in progress is present while its pair stays above this fraction of its start level (−10 dB)…
const PRESENT_FRACTION: f32 = 0.1;
/// …each tone stays above this fraction of its own start level (−20 dB; a codec may fade one tone)…
const PRESENT_SINGLE: f32 = 0.01;
/// …and the pair carries at least this share of the window energy.
const PRESENT_RATIO: f32 = 0.15;
/// A start window counts as fully covered by the tone (for the frequency estimate) at this fraction
/// of the strongest start window's pair power.
const FULL_WINDOW: f32 = 0.7;
/// A sub-block counts as fully toned when its energy reaches this fraction of the tone's energy.
const FULL_SUB: f32 = 0.7;

/// Harmonic guard (talk-off): sub-blocks at the end of the start span it looks at (25 ms, all tone
/// once a digit can start).
const GUARD_SUBS: usize = 5;
const GUARD_LEN: usize = SUB * GUARD_SUBS;
/// Partials judged around each tone of frequency f: (multiple of f, largest power relative to the
/// tone). A DTMF sender's sine has no harmonics worth the name (≥ 20 dB down, ETSI ES 201 235-2) and
/// nothing at f/2 or 3f/2. Voiced speech and instruments that put one harmonic of a pitch on a DTMF
/// frequency nearly always carry the next one too: at 2f and 3f when the tone is the pitch itself,
/// at f/2 and 3f/2 when it is the pitch's second harmonic (an octave under a played note).
const PARTIALS: [(f64, f64); 4] = [
    (0.5, 0.1),   // −10 dB
    (1.5, 0.1),   // −10 dB
    (2.0, 0.1),   // −10 dB
    (3.0, 0.025), // −16 dB (a triangle-like note's; a sender's and a codec's stay lower)
];
/// A partial this close (rad/sample, 110 Hz) to the other tone is not judged: a mobile codec leaves
/// enough of that tone's wobble beside it after the fit to look like a partial.
const GUARD_NEAR: f64 = 2.0 * PI * 110.0 / SAMPLE_RATE as f64;
/// A pair that leaves much of the energy to other sound, or is off its nominal frequencies, must be
/// clean where it is judged: below this mean share of the energy over the start windows, or with a
/// frequency error over [`EXACT_FREQ_ERROR`], the partial limits are 4 dB stricter…
const GUARD_LOW_SHARE: f32 = 0.75;
const GUARD_STRICT: f64 = 0.4;
/// …and below this share 10 dB stricter (speech and music that fooled the detector sat at 0.6–0.7;
/// a digit through AMR-NB 4.75 kbit/s has its partials ≥ 16 dB down even there)…
const GUARD_LOWEST_SHARE: f32 = 0.68;
const GUARD_STRICTEST: f64 = 0.1;
/// …and a column tone within this relative distance (1 %) of twice the row tone is the row's second
/// harmonic, not a second tone (an octave; on-frequency DTMF pairs are ≥ 4 % from one).
const OCTAVE: f64 = 0.01;
/// Harmonics above this (3.9 kHz, rad/sample) are not judged (the band ends at 4 kHz).
const GUARD_TOP: f64 = 2.0 * PI * 3900.0 / SAMPLE_RATE as f64;

/// Per-position DFT coefficients: `[n][k]` = cos(ω_k n) for k < 8, −sin(ω_{k−8} n) for k ≥ 8.
struct Tables {
    dft: [[f32; 16]; SUB],
    /// Rotation e^{−jω_k·SUB} from one sub-block start to the next.
    step_re: [f32; 8],
    step_im: [f32; 8],
    /// ω_k in radians per sample.
    omega: [f64; 8],
}

/// Hann window over the harmonic guard's span.
static HANN: LazyLock<[f64; GUARD_LEN]> = LazyLock::new(|| {
    std::array::from_fn(|n| 0.5 - 0.5 * (2.0 * PI * (n as f64 + 0.5) / GUARD_LEN as f64).cos())
});

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
    let (mut step_re, mut step_im) = ([0.0f32; 8], [0.0f32; 8]);
    for k in 0..8 {
        let a = omega[k] * SUB as f64;
        step_re[k] = a.cos() as f32;
        step_im[k] = -(a.sin() as f32);
    }
    Tables {
        dft,
        step_re,
        step_im,
        omega,
    }
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

impl Window {
    /// Powers of the row tone (bin `r`) and column tone (bin `c + 4`) at their measured frequencies
    /// `omega` (rad/sample), free of the window loss and of each tone's leakage into the other's bin:
    /// solves the 2×2 system X_bin = Σ_tone b_tone·G(Ω_tone − ω_bin) for this window (first sample
    /// `start`), where G is the rectangular window's response on the absolute time axis.
    fn tone_powers(&self, r: usize, c: usize, omega: [f64; 2], start: u64) -> [f32; 2] {
        let t = &*TABLES;
        let bins = [r, c + 4];
        let x = bins.map(|b| (f64::from(self.dft[b]), f64::from(self.dft[b + 8])));
        let g = |tone: usize, bin: usize| window_response(omega[tone] - t.omega[bins[bin]], start);
        let (g_rr, g_cr, g_rc, g_cc) = (g(0, 0), g(1, 0), g(0, 1), g(1, 1));
        // X_r = b_r·g_rr + b_c·g_cr ; X_c = b_r·g_rc + b_c·g_cc
        let det = c_sub(c_mul(g_rr, g_cc), c_mul(g_cr, g_rc));
        let den = det.0 * det.0 + det.1 * det.1;
        if den < 1e-12 {
            return [0.0; 2];
        }
        let b_r = c_div(c_sub(c_mul(x[0], g_cc), c_mul(x[1], g_cr)), det, den);
        let b_c = c_div(c_sub(c_mul(x[1], g_rr), c_mul(x[0], g_rc)), det, den);
        let p = |b: (f64, f64)| (2.0 * (b.0 * b.0 + b.1 * b.1)) as f32;
        [p(b_r), p(b_c)]
    }
}

/// Σ_{n=start}^{start+WIN−1} e^{jθn}.
fn window_response(theta: f64, start: u64) -> (f64, f64) {
    let half = theta / 2.0;
    let mag = if half.abs() < 1e-12 {
        WIN as f64
    } else {
        (half * WIN as f64).sin() / half.sin()
    };
    let phase = theta * (start as f64 + (WIN as f64 - 1.0) / 2.0);
    (mag * phase.cos(), mag * phase.sin())
}

fn c_mul(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn c_sub(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0 - b.0, a.1 - b.1)
}

/// a / d where `den` = |d|².
fn c_div(a: (f64, f64), d: (f64, f64), den: f64) -> (f64, f64) {
    ((a.0 * d.0 + a.1 * d.1) / den, (a.1 * d.0 - a.0 * d.1) / den)
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
    /// e^{−jω_k·n0} for the next sub-block start n0.
    phasor_re: [f32; 8],
    phasor_im: [f32; 8],
    subs: [SubBlock; SUB_RING],
    /// The samples of each sub-block in `subs` (for the harmonic guard, run only at a digit's start).
    raw: [[f32; SUB]; SUB_RING],
    wins: [Window; WIN_RING],
    state: State,
    events: VecDeque<DtmfEvent>,
    /// Use the AVX2 + FMA kernel.
    fused: bool,
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
            phasor_re: [1.0; 8],
            phasor_im: [0.0; 8],
            subs: [SubBlock::default(); SUB_RING],
            raw: [[0.0; SUB]; SUB_RING],
            wins: [Window::default(); WIN_RING],
            state: State::Idle,
            events: VecDeque::with_capacity(16),
            fused: cpu_has_fma(),
        }
    }

    /// Feed linear 16-bit samples at 8 kHz. Any length.
    pub fn push(&mut self, samples: &[i16]) {
        if self.fused {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `fused` is only set when the CPU reported AVX2 and FMA (see `new`).
            unsafe {
                self.push_fused(samples)
            }
            #[cfg(not(target_arch = "x86_64"))]
            self.push_with::<false>(samples)
        } else {
            self.push_with::<false>(samples)
        }
    }

    /// [`Self::push`] with the whole per-sample and per-sub-block path (conversion, DFT, window
    /// sums, the window test) compiled for AVX2 + FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn push_fused(&mut self, samples: &[i16]) {
        self.push_with::<true>(samples)
    }

    #[inline(always)]
    fn push_with<const FUSED: bool>(&mut self, samples: &[i16]) {
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
            self.analyse::<FUSED>(&block);
        }
        let mut chunks = rest.chunks_exact(SUB);
        for chunk in &mut chunks {
            let mut block = [0.0f32; SUB];
            for (d, &s) in block.iter_mut().zip(chunk) {
                *d = f32::from(s);
            }
            self.position += SUB as u64;
            self.analyse::<FUSED>(&block);
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
    #[inline(always)]
    fn analyse<const FUSED: bool>(&mut self, block: &[f32; SUB]) {
        let t = &*TABLES;
        let (sums, energy) = dft_kernel::<FUSED>(block, &t.dft);
        let mut dft = [0.0f32; 16];
        let (pr, pi) = (&mut self.phasor_re, &mut self.phasor_im);
        for k in 0..8 {
            let (re, im) = (sums[k], sums[k + 8]);
            dft[k] = re * pr[k] - im * pi[k];
            dft[k + 8] = re * pi[k] + im * pr[k];
            let nr = pr[k] * t.step_re[k] - pi[k] * t.step_im[k];
            let ni = pr[k] * t.step_im[k] + pi[k] * t.step_re[k];
            // Keep |phasor| = 1 against rounding drift.
            let g = 1.5 - 0.5 * (nr * nr + ni * ni);
            pr[k] = nr * g;
            pi[k] = ni * g;
        }
        let start = self.position - SUB as u64 - self.fill as u64;
        let idx = self.subs_done;
        self.subs[(idx % SUB_RING as u64) as usize] = SubBlock { dft, energy, start };
        self.raw[(idx % SUB_RING as u64) as usize] = *block;
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
    #[inline(always)]
    fn decide(&mut self) {
        let last = self.subs_done - 1;
        let mut dft = [0.0f32; 16];
        let mut energy = 0.0f32;
        for i in 0..WIN_SUBS as u64 {
            let s = self.sub(last - i);
            for (d, v) in dft.iter_mut().zip(&s.dft) {
                *d += v;
            }
            energy += s.energy;
        }
        let scale = 2.0 / (WIN as f32 * WIN as f32);
        let mut power = [0.0f32; 8];
        for k in 0..8 {
            power[k] = (dft[k] * dft[k] + dft[k + 8] * dft[k + 8]) * scale;
        }
        let mean_power = energy / WIN as f32;
        // Quiet windows skip the test (no bin can exceed twice the mean power, by Cauchy–Schwarz).
        let loudest = loudest(&power);
        let candidate = if loudest < MIN_TONE_POWER || 2.0 * mean_power < MIN_TONE_POWER {
            None
        } else {
            qualify(&power, mean_power)
        };
        self.wins[(last % WIN_RING as u64) as usize] = Window {
            dft,
            power,
            mean_power,
            candidate,
        };

        match self.state {
            State::Idle => {
                if candidate.is_some() {
                    self.try_start(last);
                }
            }
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
                let same = candidate == Some(digit);
                let other = candidate.is_some() && !same;
                let present = same
                    || (!other
                        && p_row + p_col >= PRESENT_FRACTION * (ref_row + ref_col)
                        && p_row >= PRESENT_SINGLE * ref_row
                        && p_col >= PRESENT_SINGLE * ref_col
                        && p_row + p_col >= PRESENT_RATIO * mean_power);
                if present {
                    // Follow slow level changes (a codec's gain control) while the digit clearly sounds.
                    let track = |r: f32, p: f32| if same { 0.75 * r + 0.25 * p } else { r };
                    self.state = State::Active {
                        digit,
                        start,
                        ref_row: track(ref_row, p_row),
                        ref_col: track(ref_col, p_col),
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
    #[inline(never)]
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
        let mut worst_error = 0.0f64;
        let pair_power = |w: u64| self.win(w).power[r] + self.win(w).power[c + 4];
        let strongest = (oldest..=last).map(pair_power).fold(0.0f32, f32::max);
        let mut full = 0u32;
        for (i, w) in (oldest..=last).enumerate() {
            if pair_power(w) >= FULL_WINDOW * strongest {
                full |= 1 << i;
            }
        }
        if full.count_ones() < 2 {
            full = (1 << START_WINDOWS) - 1;
        }
        let mut tone_omega = [0.0f64; 2];
        for (slot, bin) in [r, c + 4].into_iter().enumerate() {
            let Some(offset) = self.frequency_offset(bin, oldest, last, full) else {
                return;
            };
            let error = (offset / t.omega[bin]).abs();
            if error > MAX_FREQ_ERROR {
                return;
            }
            worst_error = worst_error.max(error);
            tone_omega[slot] = t.omega[bin] + offset;
        }
        for (i, w) in (oldest..=last).enumerate() {
            let start = self.sub(w + 1 - WIN_SUBS as u64).start;
            corrected[i] = self.win(w).tone_powers(r, c, tone_omega, start);
        }
        // Tones exactly on frequency may share the line with more other sound (speech over a held digit).
        let exact = worst_error <= EXACT_FREQ_ERROR;
        let (min_ratio, min_mean_ratio) = if exact {
            (MIN_RATIO_START_EXACT, MIN_MEAN_RATIO_START_EXACT)
        } else {
            (MIN_RATIO_START, MIN_MEAN_RATIO_START)
        };
        // …and a mobile codec can lift their high group a few dB more.
        let reverse_twist = if exact {
            START_REVERSE_TWIST_EXACT
        } else {
            START_REVERSE_TWIST
        };
        let (mut sum_row, mut sum_col, mut max_pair) = (0.0f32, 0.0f32, 0.0f32);
        let (mut runner_row, mut runner_col) = (0.0f32, 0.0f32);
        let mut ratio_sum = 0.0f32;
        for (i, w) in (oldest..=last).enumerate() {
            let win = self.win(w);
            let pair = corrected[i][0] + corrected[i][1];
            if pair < min_ratio * win.mean_power {
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
            || sum_col > reverse_twist * sum_row
            || ratio_sum < min_mean_ratio * START_WINDOWS as f32
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
        let mean_share = ratio_sum / START_WINDOWS as f32;
        if !self.harmonics_ok(last, tone_omega, mean_share, exact) {
            return;
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
    ///
    /// Only windows flagged in `full` (bit i = window `oldest + i`) are used: a window the tone covers
    /// only partly has its phase centre elsewhere and would bias the estimate towards zero offset.
    fn frequency_offset(&self, bin: usize, oldest: u64, last: u64, full: u32) -> Option<f64> {
        let used = |w: u64| full & (1 << (w - oldest)) != 0;
        let lag_sum = |lag: u64| {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            for w in (oldest + lag..=last).filter(|&w| used(w) && used(w - lag)) {
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

    /// Harmonic guard: fits the two tones (measured frequencies `omega`, row then column, rad/sample)
    /// to the last [`GUARD_SUBS`] sub-blocks by weighted least squares (Hann window), removes them,
    /// and measures the remainder at each of [`PARTIALS`] of each tone: every partial must stay below
    /// its limit relative to its tone, [`GUARD_STRICT`] times that when the pair's `mean_share` of the
    /// energy is below [`GUARD_LOW_SHARE`] or the tones are not `exact`ly on frequency, and
    /// [`GUARD_STRICTEST`] times that below [`GUARD_LOWEST_SHARE`]. The fit removes each tone's leakage; a partial within
    /// [`GUARD_NEAR`] of the other tone, or above [`GUARD_TOP`], is not judged. A column tone an
    /// octave above the row tone ([`OCTAVE`]) is that tone's harmonic: rejected.
    fn harmonics_ok(&self, last: u64, omega: [f64; 2], mean_share: f32, exact: bool) -> bool {
        if (omega[1] - 2.0 * omega[0]).abs() < OCTAVE * omega[1] {
            return false;
        }
        let strict = if mean_share < GUARD_LOWEST_SHARE {
            GUARD_STRICTEST
        } else if mean_share < GUARD_LOW_SHARE || !exact {
            GUARD_STRICT
        } else {
            1.0
        };
        let clean = strict * PARTIALS.iter().map(|p| p.1).fold(f64::MAX, f64::min);
        self.partial_ratios(last, omega, clean)
            .iter()
            .flatten()
            .zip(PARTIALS.iter().chain(&PARTIALS))
            .all(|(ratio, (_, limit))| ratio.is_none_or(|r| r <= strict * limit))
    }

    /// Power of each of [`PARTIALS`] of each tone relative to the tone (see [`Self::harmonics_ok`]);
    /// `None` where not judged.
    ///
    /// When the whole remainder is too weak for any partial to reach `clean` relative to the weaker
    /// tone, nothing is judged (all `None`): the usual case for a real digit, and the cheap one.
    #[allow(clippy::needless_range_loop)] // (row, column) indices of one small matrix read clearest
    fn partial_ratios(
        &self,
        last: u64,
        omega: [f64; 2],
        clean: f64,
    ) -> [[Option<f64>; PARTIALS.len()]; 2] {
        let mut out = [[None; PARTIALS.len()]; 2];
        let first = (last + 1).saturating_sub(GUARD_SUBS as u64);
        let hann = &*HANN;
        let mut x = [0.0f64; GUARD_LEN];
        for (i, k) in (first..=last).enumerate() {
            let block = &self.raw[(k % SUB_RING as u64) as usize];
            for (j, &v) in block.iter().enumerate() {
                x[i * SUB + j] = f64::from(v);
            }
        }
        // Basis cos/sin of both tones (by rotation: no trigonometry per sample); normal equations of
        // the Hann-weighted fit.
        let mut basis = [[0.0f64; 4]; GUARD_LEN];
        for (slot, &w) in omega.iter().enumerate() {
            let (step_re, step_im) = (w.cos(), w.sin());
            let (mut re, mut im) = (1.0f64, 0.0f64);
            for b in basis.iter_mut() {
                b[2 * slot] = re;
                b[2 * slot + 1] = im;
                (re, im) = (re * step_re - im * step_im, re * step_im + im * step_re);
            }
        }
        let mut g = [[0.0f64; 5]; 4];
        let mut energy = 0.0f64;
        for ((&w, &v), b) in hann.iter().zip(&x).zip(&basis) {
            energy += w * v * v;
            for i in 0..4 {
                let wb = w * b[i];
                for j in i..4 {
                    g[i][j] += wb * b[j];
                }
                g[i][4] += wb * v;
            }
        }
        for i in 1..4 {
            for j in 0..i {
                g[i][j] = g[j][i];
            }
        }
        let Some(coef) = solve4(g) else {
            return out;
        };
        let gain: f64 = hann.iter().sum();
        let tone = |slot: usize| coef[2 * slot].powi(2) + coef[2 * slot + 1].powi(2);
        // Σw·r² of the least-squares remainder is Σw·x² − coef·rhs; by Cauchy–Schwarz no partial's
        // amplitude² (2|Σ w·r·e^{−jωn}| / Σw)² exceeds 4·Σw·r² / Σw.
        let remainder = energy - (0..4).map(|i| coef[i] * g[i][4]).sum::<f64>();
        if 4.0 * remainder / gain <= clean * tone(0).min(tone(1)) {
            return out;
        }
        for (v, b) in x.iter_mut().zip(&basis) {
            *v -= coef.iter().zip(b).map(|(c, b)| c * b).sum::<f64>();
        }
        // Weighted once here for every partial below.
        for (v, &h) in x.iter_mut().zip(hann) {
            *v *= h;
        }
        // Goertzel at all eight partials at once: |Σ v·e^{−jωn}|² = s1² + s2² − c·s1·s2, c = 2 cos ω.
        let mut c = [0.0f64; 8];
        for (k, ck) in c.iter_mut().enumerate() {
            *ck = 2.0 * (PARTIALS[k % PARTIALS.len()].0 * omega[k / PARTIALS.len()]).cos();
        }
        let (mut s1, mut s2) = ([0.0f64; 8], [0.0f64; 8]);
        for &v in &x {
            for k in 0..8 {
                let s0 = v + c[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        // Amplitude² of the remainder at partial k: (2|Σ w·r·e^{−jωn}| / Σw)².
        let remainder_at =
            |k: usize| 4.0 * (s1[k] * s1[k] + s2[k] * s2[k] - c[k] * s1[k] * s2[k]) / (gain * gain);
        for (slot, ratios) in out.iter_mut().enumerate() {
            let tone = tone(slot);
            if tone <= 0.0 {
                continue;
            }
            for (i, (ratio, (h, _))) in ratios.iter_mut().zip(PARTIALS).enumerate() {
                let partial = h * omega[slot];
                if partial > GUARD_TOP || (partial - omega[1 - slot]).abs() < GUARD_NEAR {
                    continue;
                }
                *ratio = Some(remainder_at(slot * PARTIALS.len() + i) / tone);
            }
        }
        out
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

/// Complex DFT of one sub-block at the eight frequencies (re 0..8, im 8..16), and its energy. Written as 16-lane array
/// loops so LLVM vectorises them; `FUSED` uses fused multiply–add (only where the CPU has it).
#[inline(always)]
fn dft_kernel<const FUSED: bool>(block: &[f32; SUB], table: &[[f32; 16]; SUB]) -> ([f32; 16], f32) {
    // Four accumulator sets (samples 4m … 4m+3): eight independent multiply–add chains of ten steps
    // keep the FMA units busy instead of waiting on each chain's latency (two sets were latency-bound).
    let mut acc = [[0.0f32; 16]; 4];
    for (quad, coef) in block.chunks_exact(4).zip(table.chunks_exact(4)) {
        for (j, a) in acc.iter_mut().enumerate() {
            let x = quad[j];
            for k in 0..16 {
                a[k] = if FUSED {
                    x.mul_add(coef[j][k], a[k])
                } else {
                    a[k] + x * coef[j][k]
                };
            }
        }
    }
    let mut out = [0.0f32; 16];
    for k in 0..16 {
        out[k] = (acc[0][k] + acc[1][k]) + (acc[2][k] + acc[3][k]);
    }
    let mut e = [0.0f32; 8];
    for chunk in block.chunks_exact(8) {
        for i in 0..8 {
            e[i] = if FUSED {
                chunk[i].mul_add(chunk[i], e[i])
            } else {
                e[i] + chunk[i] * chunk[i]
            };
        }
    }
    (out, e.iter().sum())
}

#[cfg(test)]
fn dft_portable(block: &[f32; SUB], table: &[[f32; 16]; SUB]) -> ([f32; 16], f32) {
    dft_kernel::<false>(block, table)
}

#[cfg(all(test, target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn dft_avx2_fma(block: &[f32; SUB], table: &[[f32; 16]; SUB]) -> ([f32; 16], f32) {
    dft_kernel::<true>(block, table)
}

/// Whether this CPU runs the AVX2 + FMA kernel (about twice as fast as the baseline SSE2 one).
fn cpu_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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

/// Solves the 4×4 system whose augmented matrix is `g` (Gaussian elimination, partial pivoting);
/// `None` when it is singular.
#[allow(clippy::needless_range_loop)] // (row, column) indices of one small matrix read clearest
fn solve4(mut g: [[f64; 5]; 4]) -> Option<[f64; 4]> {
    for col in 0..4 {
        let pivot = (col..4).max_by(|&a, &b| g[a][col].abs().total_cmp(&g[b][col].abs()))?;
        if g[pivot][col].abs() < 1e-9 {
            return None;
        }
        g.swap(col, pivot);
        for row in col + 1..4 {
            let f = g[row][col] / g[col][col];
            for k in col..5 {
                g[row][k] -= f * g[col][k];
            }
        }
    }
    let mut out = [0.0f64; 4];
    for row in (0..4).rev() {
        let rest: f64 = (row + 1..4).map(|k| g[row][k] * out[k]).sum();
        out[row] = (g[row][4] - rest) / g[row][row];
    }
    Some(out)
}

/// Index and value of the largest of four powers, and the second largest value.
#[inline]
fn best_two(p: &[f32]) -> (usize, f32, f32) {
    let (mut best, mut top, mut second) = (0, p[0], 0.0f32);
    for (i, &v) in p.iter().enumerate().skip(1) {
        // Selects, not branches: noise makes the order random.
        let above = v > top;
        second = if above {
            top
        } else if v > second {
            v
        } else {
            second
        };
        best = if above { i } else { best };
        top = if above { v } else { top };
    }
    (best, top, second)
}

/// Largest of eight powers (a tree of plain compares; powers are never NaN).
#[inline]
fn loudest(p: &[f32; 8]) -> f32 {
    let m = |a: f32, b: f32| if a > b { a } else { b };
    m(
        m(m(p[0], p[4]), m(p[1], p[5])),
        m(m(p[2], p[6]), m(p[3], p[7])),
    )
}

/// Largest of `p` other than index `skip`.
#[inline]
fn runner_up(p: &[f32], skip: usize) -> f32 {
    p.iter()
        .enumerate()
        .filter(|&(i, _)| i != skip)
        .fold(0.0f32, |m, (_, &v)| m.max(v))
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
    fn fused_and_portable_kernels_agree() {
        let t = &*TABLES;
        let mut block = [0.0f32; SUB];
        for (n, x) in block.iter_mut().enumerate() {
            *x = (20000.0 * (n as f32 * 0.7).sin()).round() - 3000.0;
        }
        let (plain, plain_energy) = dft_portable(&block, &t.dft);
        let energy: f32 = block.iter().map(|x| x * x).sum();
        assert!((plain_energy / energy - 1.0).abs() < 1e-5);
        if cpu_has_fma() {
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: the CPU reported AVX2 and FMA just above.
                let (fused, fused_energy) = unsafe { dft_avx2_fma(&block, &t.dft) };
                assert!((fused_energy / energy - 1.0).abs() < 1e-5);
                for k in 0..16 {
                    assert!(
                        (plain[k] - fused[k]).abs() <= 1e-4 * plain[k].abs().max(1000.0),
                        "{k}"
                    );
                }
            }
        }
        // And the DFT is right: bin k of a pure tone at ω_k carries amplitude·SUB/2.
        let w = t.omega[5];
        let tone: [f32; SUB] = std::array::from_fn(|n| (1000.0 * (w * n as f64).cos()) as f32);
        let (x, _) = dft_portable(&tone, &t.dft);
        let mag = (x[5] * x[5] + x[13] * x[13]).sqrt();
        assert!(
            (mag / (1000.0 * SUB as f32 / 2.0) - 1.0).abs() < 0.05,
            "{mag}"
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
