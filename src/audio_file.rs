//! Reading recordings as a stream of 16-bit linear samples at 8 kHz mono: WAV files (PCM16, A-law
//! `WAVE_FORMAT_ALAW` 6, µ-law `WAVE_FORMAT_MULAW` 7, also inside `WAVE_FORMAT_EXTENSIBLE`) and raw
//! headerless audio (s16le, A-law, µ-law). Used by `veilig-bellen dtmf` and for loading prompts.
//!
//! One reader for every encoding (no WAV crate: the common ones refuse G.711 WAVs, and a second
//! reader for PCM16 would be a second set of errors). The RIFF chunk walk reads only what it needs,
//! checks every length against a cap before using it and never indexes unchecked, so any byte string
//! yields a sample stream or an [`AudioFileError`]. A data chunk whose length is a "streamed" marker
//! (`0xFFFFFFFF`, or sox's `0x7FFFF000` when it writes to a pipe) is read until end of input; any
//! other data chunk that ends early is reported as truncated.
//!
//! Reading is in bulk: [`AudioReader`] buffers nothing of its own beyond one read, so give it the
//! file itself (no `BufReader`: that would copy every byte once more) and ask for [`READ_BLOCK`]
//! samples at a time; each read is one `read(2)` of up to 64 KiB. Raw or WAV s16le goes straight
//! into the caller's sample buffer (its bytes, through `zerocopy`; a big-endian host swaps them
//! after), so the read is the only pass over it; G.711 goes into a reused byte buffer and is
//! decoded with `dsp::g711`'s 256-entry tables. Nothing is allocated per read after the first.

use std::io::{self, ErrorKind, Read};

/// How the input is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// A WAV file; its header says the encoding.
    Wav,
    /// Headerless signed 16-bit little-endian samples, 8 kHz mono.
    RawS16le,
    /// Headerless µ-law bytes, 8 kHz mono.
    RawUlaw,
    /// Headerless A-law bytes, 8 kHz mono.
    RawAlaw,
}

/// Why a recording could not be read. Messages are one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioFileError {
    #[error("reading input: {0}")]
    Io(#[from] io::Error),
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    #[error("truncated WAV: {0}")]
    Truncated(&'static str),
    #[error("corrupt WAV: {0}")]
    Corrupt(String),
    #[error("unsupported WAV encoding: {0} (supported: 16-bit PCM, A-law, µ-law)")]
    Encoding(String),
    #[error(
        "sample rate is {0} Hz; only 8000 Hz is supported (resample: sox in.wav -r 8000 out.wav)"
    )]
    SampleRate(u32),
    #[error("{0} channels; only mono is supported (take one: sox in.wav out.wav remix 1)")]
    Channels(u16),
    #[error("raw s16le input ends in the middle of a sample (odd number of bytes)")]
    OddLength,
}

/// Sample rate every reader here produces.
pub const SAMPLE_RATE: u32 = 8000;

/// Samples per [`AudioReader::read`] that keep the work cheap: 64 KiB of s16le per system call, a
/// buffer that stays in the CPU's cache, a few thousand calls for an hour of audio.
pub const READ_BLOCK: usize = 32 * 1024;

/// Bytes of WAV header (all chunks before `data`) we are willing to buffer.
const MAX_HEADER: usize = 1 << 20;
/// Data-chunk lengths that writers use when they cannot seek back to fill in the real one.
const STREAMED_LENGTHS: [u32; 2] = [0xFFFF_FFFF, 0x7FFF_F000];

const TAG_PCM: u16 = 1;
const TAG_ALAW: u16 = 6;
const TAG_MULAW: u16 = 7;
const TAG_EXTENSIBLE: u16 = 0xFFFE;

/// Longest prompt accepted (10 minutes): prompts live in memory, shared by all calls.
pub const MAX_PROMPT_SAMPLES: usize = 10 * 60 * SAMPLE_RATE as usize;

/// Reads a whole prompt recording for playing to callers: a WAV at 8 kHz mono (16-bit PCM, A-law
/// or µ-law) as it is, or a 16-bit PCM WAV at another rate or with more channels mixed down to
/// mono and resampled to 8 kHz (`rubato`, band-limited). Empty, shorter than 0.1 s or longer than
/// 10 minutes is an error; so is anything else the reader refuses, with the sox command that fixes
/// it.
pub fn read_prompt(path: &std::path::Path) -> Result<std::sync::Arc<[i16]>, AudioFileError> {
    match read_prompt_8k(path) {
        Err(AudioFileError::SampleRate(_) | AudioFileError::Channels(_)) => resample_prompt(path),
        other => other,
    }
}

/// A 16-bit PCM WAV at any rate and channel count, mixed to mono and resampled to 8 kHz.
fn resample_prompt(path: &std::path::Path) -> Result<std::sync::Arc<[i16]>, AudioFileError> {
    use rubato::Resampler;
    let mut file = io::BufReader::new(std::fs::File::open(path)?);
    let h = read_wav_header(&mut file, Check::Pcm16AnyRate)?;
    let channels = usize::from(h.fmt.channels.max(1));
    let rate = h.fmt.rate as usize;
    if !(4000..=192_000).contains(&rate) {
        return Err(AudioFileError::SampleRate(h.fmt.rate));
    }
    let longest = rate * channels * 600;
    let too_long =
        || AudioFileError::Corrupt("longer than 10 minutes; a prompt must be shorter".into());
    let streamed = STREAMED_LENGTHS.contains(&h.data_len);
    if !streamed && h.data_len as usize / 2 > longest {
        return Err(too_long());
    }
    let mut reader = AudioReader {
        r: file,
        enc: Encoding::S16le,
        remaining: (!streamed).then_some(u64::from(h.data_len)),
        buf: Vec::new(),
    };
    let mut interleaved = Vec::new();
    let mut buf = [0i16; 4096];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if interleaved.len() + n > longest {
            return Err(too_long());
        }
        interleaved.extend_from_slice(&buf[..n]);
    }
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().map(|&s| f32::from(s)).sum::<f32>() / channels as f32)
        .collect();
    const CHUNK: usize = 1024;
    let resampling =
        |e: &dyn std::fmt::Display| AudioFileError::Corrupt(format!("resampling: {e}"));
    let mut resampler = rubato::FftFixedIn::<f32>::new(rate, SAMPLE_RATE as usize, CHUNK, 2, 1)
        .map_err(|e| resampling(&e))?;
    let mut out: Vec<f32> = Vec::with_capacity(mono.len() * SAMPLE_RATE as usize / rate + CHUNK);
    for block in mono.chunks(CHUNK) {
        let produced = if block.len() == CHUNK {
            resampler.process(&[block], None)
        } else {
            resampler.process_partial(Some(&[block]), None)
        }
        .map_err(|e| resampling(&e))?;
        out.extend_from_slice(&produced[0]);
    }
    let tail = resampler
        .process_partial(None::<&[&[f32]]>, None)
        .map_err(|e| resampling(&e))?;
    out.extend_from_slice(&tail[0]);
    // The resampler's delay comes first as silence; the prompt starts where it starts.
    // The last chunk was padded with silence: keep as many samples as the recording lasts.
    let delay = resampler.output_delay().min(out.len());
    let lasts = (mono.len() * SAMPLE_RATE as usize).div_ceil(rate);
    let end = (delay + lasts).min(out.len());
    let samples: Vec<i16> = out[delay..end]
        .iter()
        .map(|&x| x.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16)
        .collect();
    if samples.len() < SAMPLE_RATE as usize / 10 {
        return Err(AudioFileError::Corrupt(
            "shorter than 0.1 s; is it empty?".into(),
        ));
    }
    Ok(samples.into())
}

fn read_prompt_8k(path: &std::path::Path) -> Result<std::sync::Arc<[i16]>, AudioFileError> {
    let file = std::fs::File::open(path)?;
    let mut reader = AudioReader::new(io::BufReader::new(file), InputFormat::Wav)?;
    let mut samples = Vec::new();
    let mut buf = [0i16; 4096];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if samples.len() + n > MAX_PROMPT_SAMPLES {
            return Err(AudioFileError::Corrupt(
                "longer than 10 minutes; a prompt must be shorter".into(),
            ));
        }
        samples.extend_from_slice(&buf[..n]);
    }
    if samples.len() < SAMPLE_RATE as usize / 10 {
        return Err(AudioFileError::Corrupt(
            "shorter than 0.1 s; is it empty?".into(),
        ));
    }
    Ok(samples.into())
}

/// A stream of 8 kHz mono samples decoded from any supported input. Call [`AudioReader::read`]
/// until it returns 0.
pub struct AudioReader<R: Read> {
    r: R,
    enc: Encoding,
    /// Bytes of data left (input ending earlier means truncation), or `None` to read until the end
    /// of input.
    remaining: Option<u64>,
    /// The bytes of one G.711 read, reused.
    buf: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    S16le,
    Alaw,
    Ulaw,
}

impl Encoding {
    fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::S16le => 2,
            Encoding::Alaw | Encoding::Ulaw => 1,
        }
    }
}

impl<R: Read> AudioReader<R> {
    /// Reads the header (for WAV) and checks it describes 8 kHz mono audio we can decode.
    pub fn new(mut r: R, format: InputFormat) -> Result<AudioReader<R>, AudioFileError> {
        let (enc, remaining) = match format {
            InputFormat::RawS16le => (Encoding::S16le, None),
            InputFormat::RawAlaw => (Encoding::Alaw, None),
            InputFormat::RawUlaw => (Encoding::Ulaw, None),
            InputFormat::Wav => {
                let h = read_wav_header(&mut r, Check::Mono8k)?;
                let streamed = STREAMED_LENGTHS.contains(&h.data_len);
                (h.enc, (!streamed).then_some(u64::from(h.data_len)))
            }
        };
        Ok(AudioReader {
            r,
            enc,
            remaining,
            buf: Vec::new(),
        })
    }

    /// Fills `out` with up to `out.len()` samples; returns how many, 0 at the end of the audio.
    /// Reads `out.len()` samples' worth of bytes in one go (see [`READ_BLOCK`]).
    pub fn read(&mut self, out: &mut [i16]) -> Result<usize, AudioFileError> {
        use zerocopy::IntoBytes;
        let mut want = out.len() * self.enc.bytes_per_sample();
        if let Some(rem) = self.remaining {
            want = want.min(usize::try_from(rem).unwrap_or(usize::MAX));
        }
        let got = match self.enc {
            // Invariant: want ≤ out.len() * 2 = the length of out's bytes.
            Encoding::S16le => read_up_to(&mut self.r, &mut out.as_mut_bytes()[..want])?,
            Encoding::Alaw | Encoding::Ulaw => {
                // Only the first read (and a shorter last one) changes the length.
                self.buf.resize(want, 0);
                read_up_to(&mut self.r, &mut self.buf)?
            }
        };
        if let Some(rem) = self.remaining.as_mut() {
            *rem -= got as u64; // got ≤ want ≤ rem
            if got < want {
                return Err(AudioFileError::Truncated(
                    "data chunk is shorter than its header says",
                ));
            }
        }
        match self.enc {
            Encoding::S16le => {
                if got % 2 != 0 {
                    // A WAV data length is checked to be even, so only raw input gets here.
                    return Err(AudioFileError::OddLength);
                }
                let samples = &mut out[..got / 2];
                // The bytes are little-endian; on a little-endian host this loop compiles away.
                for s in samples.iter_mut() {
                    *s = i16::from_le(*s);
                }
                Ok(samples.len())
            }
            Encoding::Alaw => Ok(dsp::g711::decode_alaw_into(&self.buf[..got], out)),
            Encoding::Ulaw => Ok(dsp::g711::decode_ulaw_into(&self.buf[..got], out)),
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What the chunks before `data` said.
struct WavHeader {
    fmt: Fmt,
    enc: Encoding,
    data_len: u32,
}

/// The fields of a `fmt ` chunk we look at.
#[derive(Debug, Clone, Copy)]
struct Fmt {
    /// The format tag (the sub-format's for `WAVE_FORMAT_EXTENSIBLE`).
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

/// What a `fmt ` chunk must say for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// 8 kHz mono in one of the supported encodings (`AudioReader`).
    Mono8k,
    /// 16-bit PCM at any rate and channel count (a prompt to resample).
    Pcm16AnyRate,
}

/// Walks RIFF chunks up to the start of `data`; the `fmt ` chunk must pass `check`.
fn read_wav_header(r: &mut impl Read, check: Check) -> Result<WavHeader, AudioFileError> {
    let mut riff = [0u8; 12];
    let got = read_up_to(r, &mut riff)?;
    if (4..12).contains(&got) && &riff[..4] == b"RIFF" {
        return Err(AudioFileError::Truncated("input ends inside the header"));
    }
    if got < 12 || &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(AudioFileError::NotWav);
    }
    let mut bytes = riff.to_vec();
    let mut fmt: Option<(Fmt, Encoding)> = None;
    loop {
        let head = take(r, &mut bytes, 8)?;
        let id: [u8; 4] = [head[0], head[1], head[2], head[3]];
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if &id == b"data" {
            let (fmt, enc) =
                fmt.ok_or_else(|| AudioFileError::Corrupt("data chunk before fmt chunk".into()))?;
            if enc == Encoding::S16le && len % 2 != 0 && !STREAMED_LENGTHS.contains(&len) {
                return Err(AudioFileError::Corrupt("PCM data length is odd".into()));
            }
            return Ok(WavHeader {
                fmt,
                enc,
                data_len: len,
            });
        }
        // Chunks are padded to an even length.
        let padded = u64::from(len) + u64::from(len % 2);
        if bytes.len() as u64 + padded > MAX_HEADER as u64 {
            return Err(AudioFileError::Corrupt(format!(
                "chunk {:?} of {len} bytes before the audio data is too large",
                String::from_utf8_lossy(&id)
            )));
        }
        // Invariant: padded ≤ MAX_HEADER, checked just above, so it fits in usize.
        let body = take(r, &mut bytes, padded as usize)?;
        if &id == b"fmt " {
            if fmt.is_some() {
                return Err(AudioFileError::Corrupt("two fmt chunks".into()));
            }
            // `body` holds `len` bytes plus at most one pad byte.
            let f = parse_fmt(body.get(..len as usize).unwrap_or(&body))?;
            let enc = match check {
                Check::Mono8k => f.encoding_8k_mono()?,
                Check::Pcm16AnyRate => f.pcm16()?,
            };
            fmt = Some((f, enc));
        }
    }
}

/// Reads exactly `n` bytes, appends them to `log` and returns a copy.
fn take(r: &mut impl Read, log: &mut Vec<u8>, n: usize) -> Result<Vec<u8>, AudioFileError> {
    let mut v = vec![0u8; n];
    let got = read_up_to(r, &mut v)?;
    if got < n {
        return Err(AudioFileError::Truncated("input ends inside the header"));
    }
    log.extend_from_slice(&v);
    Ok(v)
}

fn parse_fmt(b: &[u8]) -> Result<Fmt, AudioFileError> {
    let u16_at = |i: usize| b.get(i..i + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let short = || AudioFileError::Corrupt(format!("fmt chunk of {} bytes is too short", b.len()));
    let mut tag = u16_at(0).ok_or_else(short)?;
    let channels = u16_at(2).ok_or_else(short)?;
    let rate = u32_at(4).ok_or_else(short)?;
    let bits = u16_at(14).ok_or_else(short)?;
    if tag == TAG_EXTENSIBLE {
        // WAVEFORMATEXTENSIBLE: the sub-format GUID starts at byte 24; its first two bytes are the tag.
        tag = u16_at(24).ok_or_else(short)?;
    }
    Ok(Fmt {
        tag,
        channels,
        rate,
        bits,
    })
}

impl Fmt {
    /// The encoding of 8 kHz mono audio, or why this is not that.
    fn encoding_8k_mono(&self) -> Result<Encoding, AudioFileError> {
        if self.channels != 1 {
            return Err(AudioFileError::Channels(self.channels));
        }
        if self.rate != SAMPLE_RATE {
            return Err(AudioFileError::SampleRate(self.rate));
        }
        match (self.tag, self.bits) {
            (TAG_PCM, 16) => Ok(Encoding::S16le),
            (TAG_ALAW, 8) => Ok(Encoding::Alaw),
            (TAG_MULAW, 8) => Ok(Encoding::Ulaw),
            (TAG_PCM, b) => Err(AudioFileError::Encoding(format!("{b}-bit PCM"))),
            (TAG_ALAW | TAG_MULAW, b) => Err(AudioFileError::Encoding(format!("{b}-bit G.711"))),
            (t, _) => Err(AudioFileError::Encoding(format!("format tag {t:#06x}"))),
        }
    }

    /// 16-bit PCM at any rate and channel count (to be resampled), or why not.
    fn pcm16(&self) -> Result<Encoding, AudioFileError> {
        if self.tag == TAG_PCM && self.bits == 16 {
            return Ok(Encoding::S16le);
        }
        let kind = match self.tag {
            TAG_PCM => "PCM".to_owned(),
            TAG_ALAW | TAG_MULAW => "G.711".to_owned(),
            t => format!("format tag {t:#06x}"),
        };
        Err(AudioFileError::Encoding(format!(
            "{}-bit {kind} at {} Hz; only 16-bit PCM can be resampled (convert: sox in.wav -r 8000 -c 1 -b 16 out.wav)",
            self.bits, self.rate
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16 kHz stereo recording of a 1 kHz tone comes out as 8 kHz mono, as long, still the tone.
    #[test]
    fn a_prompt_at_another_rate_is_resampled_to_8k_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..16_000u32 {
            let s = (10_000.0
                * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / 16_000.0).sin())
                as i16;
            w.write_sample(s).unwrap();
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        let prompt = read_prompt(&path).unwrap();
        assert!(
            (7600..=8200).contains(&prompt.len()),
            "{} samples for 1 s",
            prompt.len()
        );
        // Goertzel at 1 kHz over the middle: nearly all the energy.
        let mid = &prompt[2000..6000];
        let w = 2.0 * std::f64::consts::PI * 1000.0 / 8000.0;
        let (mut s1, mut s2, mut total) = (0.0f64, 0.0f64, 0.0f64);
        for &x in mid {
            let x = f64::from(x);
            total += x * x;
            let s0 = x + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let share =
            (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2) / (total * mid.len() as f64 / 2.0);
        assert!(share > 0.9, "1 kHz share {share}");
    }

    /// A minimal WAV: `fmt ` of 16 (or 18 for G.711) bytes, then `data`.
    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data_len: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        let align = channels * bits / 8;
        v.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        v.extend_from_slice(&align.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    fn read_all(input: &[u8], format: InputFormat) -> Result<Vec<i16>, AudioFileError> {
        let mut r = AudioReader::new(input, format)?;
        let mut out = Vec::new();
        let mut block = [0i16; 7];
        loop {
            let n = r.read(&mut block)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&block[..n]);
        }
    }

    #[test]
    fn alaw_wav_decodes_through_g711() {
        let data = [0xD5u8, 0x55, 0xAA, 0x2A, 0xD5, 0xD5, 0xD5, 0xD5, 0xD5];
        let f = wav(TAG_ALAW, 1, 8000, 8, data.len() as u32, &data);
        let s = read_all(&f, InputFormat::Wav).unwrap();
        assert_eq!(s[..4], [8, -8, 32256, -32256]);
        assert_eq!(s.len(), 9);
    }

    #[test]
    fn ulaw_wav_decodes_through_g711() {
        let f = wav(TAG_MULAW, 1, 8000, 8, 3, &[0xFF, 0x80, 0x00]);
        assert_eq!(read_all(&f, InputFormat::Wav).unwrap(), [0, 32124, -32124]);
    }

    #[test]
    fn pcm16_wav_is_read() {
        let data: Vec<u8> = [1i16, -2, 300, i16::MIN]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let f = wav(TAG_PCM, 1, 8000, 16, data.len() as u32, &data);
        assert_eq!(
            read_all(&f, InputFormat::Wav).unwrap(),
            [1, -2, 300, i16::MIN]
        );
    }

    #[test]
    fn streamed_wav_length_reads_to_end_of_input() {
        let data: Vec<u8> = [5i16, 6, 7].iter().flat_map(|s| s.to_le_bytes()).collect();
        let f = wav(TAG_PCM, 1, 8000, 16, 0x7FFF_F000, &data);
        assert_eq!(read_all(&f, InputFormat::Wav).unwrap(), [5, 6, 7]);
        let f = wav(TAG_ALAW, 1, 8000, 8, 0xFFFF_FFFF, &[0xD5]);
        assert_eq!(read_all(&f, InputFormat::Wav).unwrap(), [8]);
    }

    #[test]
    fn truncated_data_is_an_error_for_every_encoding() {
        let f = wav(TAG_ALAW, 1, 8000, 8, 100, &[0xD5; 50]);
        assert!(matches!(
            read_all(&f, InputFormat::Wav),
            Err(AudioFileError::Truncated(_))
        ));
        let f = wav(TAG_PCM, 1, 8000, 16, 100, &[0; 50]);
        assert!(matches!(
            read_all(&f, InputFormat::Wav),
            Err(AudioFileError::Truncated(_))
        ));
        let whole = wav(TAG_PCM, 1, 8000, 16, 4, &[0; 4]);
        for cut in 1..44 {
            assert!(
                read_all(&whole[..cut], InputFormat::Wav).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn wrong_rate_channels_or_encoding_are_named() {
        let e = read_all(&wav(TAG_PCM, 1, 44100, 16, 0, &[]), InputFormat::Wav).unwrap_err();
        assert!(matches!(e, AudioFileError::SampleRate(44100)));
        let e = read_all(&wav(TAG_PCM, 2, 8000, 16, 0, &[]), InputFormat::Wav).unwrap_err();
        assert!(matches!(e, AudioFileError::Channels(2)));
        let e = read_all(&wav(TAG_PCM, 1, 8000, 8, 0, &[]), InputFormat::Wav).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported WAV encoding: 8-bit PCM (supported: 16-bit PCM, A-law, µ-law)"
        );
        let e = read_all(&wav(3, 1, 8000, 32, 0, &[]), InputFormat::Wav).unwrap_err();
        assert!(matches!(e, AudioFileError::Encoding(_)));
    }

    #[test]
    fn garbage_and_huge_chunks_are_errors_not_panics() {
        assert!(matches!(
            read_all(b"hello world, not audio", InputFormat::Wav),
            Err(AudioFileError::NotWav)
        ));
        assert!(matches!(
            read_all(b"", InputFormat::Wav),
            Err(AudioFileError::NotWav)
        ));
        let mut f = b"RIFF\0\0\0\0WAVELIST\xff\xff\xff\xff".to_vec();
        f.extend_from_slice(&[0; 64]);
        assert!(matches!(
            read_all(&f, InputFormat::Wav),
            Err(AudioFileError::Corrupt(_))
        ));
        let f = b"RIFF\0\0\0\0WAVEfmt \x02\0\0\0\x01\0data\0\0\0\0".to_vec();
        assert!(matches!(
            read_all(&f, InputFormat::Wav),
            Err(AudioFileError::Corrupt(_))
        ));
        // Every prefix and a byte-flipped copy of a valid file: error or samples, never a panic.
        let good = wav(TAG_MULAW, 1, 8000, 8, 4, &[1, 2, 3, 4]);
        for i in 0..good.len() {
            let _ = read_all(&good[..i], InputFormat::Wav);
            for bit in 0..8 {
                let mut g = good.clone();
                g[i] ^= 1 << bit;
                let _ = read_all(&g, InputFormat::Wav);
            }
        }
    }

    #[test]
    fn raw_formats_need_no_header() {
        let b: Vec<u8> = [100i16, -100]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(read_all(&b, InputFormat::RawS16le).unwrap(), [100, -100]);
        assert!(matches!(
            read_all(&b[..3], InputFormat::RawS16le),
            Err(AudioFileError::OddLength)
        ));
        assert_eq!(
            read_all(&[0xD5, 0x55], InputFormat::RawAlaw).unwrap(),
            [8, -8]
        );
        assert_eq!(
            read_all(&[0xFF, 0x80], InputFormat::RawUlaw).unwrap(),
            [0, 32124]
        );
        assert!(read_all(&[], InputFormat::RawUlaw).unwrap().is_empty());
    }

    #[test]
    fn extensible_fmt_uses_the_subformat_tag() {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
        v.extend_from_slice(&40u32.to_le_bytes());
        for x in [TAG_EXTENSIBLE, 1] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        for x in [1u16, 8, 22, 8] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&0u32.to_le_bytes()); // channel mask
        v.extend_from_slice(&TAG_ALAW.to_le_bytes());
        v.extend_from_slice(&[0; 14]); // rest of the GUID
        v.extend_from_slice(b"data\x01\0\0\0\xd5\0");
        assert_eq!(read_all(&v, InputFormat::Wav).unwrap(), [8]);
    }

    proptest::proptest! {
        /// Arbitrary bytes, alone or behind a valid RIFF/WAVE/fmt prefix, give samples or an error.
        #[test]
        fn arbitrary_input_never_panics(
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            prefix_len in 0usize..=36,
        ) {
            let _ = read_all(&tail, InputFormat::Wav);
            let mut f = wav(TAG_ALAW, 1, 8000, 8, 0, &[])[..prefix_len].to_vec();
            f.extend_from_slice(&tail);
            let _ = read_all(&f, InputFormat::Wav);
            let _ = read_all(&tail, InputFormat::RawS16le);
        }
    }
}
