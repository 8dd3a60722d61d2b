//! G.711 companding (ITU-T Rec. G.711 (11/88)): A-law (PCMA, RTP payload type 8) and µ-law (PCMU,
//! payload type 0) between 8-bit code words and 16-bit linear PCM, plus A-law ↔ µ-law transcoding.
//!
//! The arithmetic comes from the maintained crate `audio-codec-algorithms` (no_std, no allocation,
//! no unsafe, no panics): its decoders are 256-entry tables generated with the ITU-T G.191 software
//! tools, its encoders are checked by its own tests against G.191 output for all 65,536 inputs, and its
//! transcoding tables follow G.711 Tables 3 and 4 (which are *not* `encode(decode(x))`: the
//! Recommendation makes µ-A-µ and A-µ-A double conversion transparent where it can). This module
//! only fixes the project's names and adds slice helpers; the tests at the bottom re-derive every code
//! from G.711's segment rules independently, so a regression in the crate fails here too.
//!
//! Linear samples are 16-bit, left-justified: A-law uses the top 13 bits, µ-law the top 14, as in
//! G.191. Negative inputs are folded with one's complement (`!x`), so `-1` encodes as "negative zero".

use audio_codec_algorithms as codec;

/// Encodes one 16-bit linear sample as an A-law code word (even bits already inverted, 0x55).
#[inline]
pub fn alaw_encode(s: i16) -> u8 {
    codec::encode_alaw(s)
}

/// Decodes one A-law code word to 16-bit linear PCM (the midpoint of its quantisation interval).
#[inline]
pub fn alaw_decode(c: u8) -> i16 {
    codec::decode_alaw(c)
}

/// Encodes one 16-bit linear sample as a µ-law code word (all bits inverted).
#[inline]
pub fn ulaw_encode(s: i16) -> u8 {
    codec::encode_ulaw(s)
}

/// Decodes one µ-law code word to 16-bit linear PCM.
#[inline]
pub fn ulaw_decode(c: u8) -> i16 {
    codec::decode_ulaw(c)
}

/// Converts an A-law code word to µ-law with G.711 Table 4 (for PCMA → PCMU transcoding).
#[inline]
pub fn alaw_to_ulaw(c: u8) -> u8 {
    codec::convert_alaw_to_ulaw(c)
}

/// Converts a µ-law code word to A-law with G.711 Table 3 (for PCMU → PCMA transcoding).
#[inline]
pub fn ulaw_to_alaw(c: u8) -> u8 {
    codec::convert_ulaw_to_alaw(c)
}

/// Decodes A-law bytes into `out`. Converts `min(input.len(), out.len())` samples and returns that
/// count; the rest of `out` is left untouched.
pub fn decode_alaw_into(input: &[u8], out: &mut [i16]) -> usize {
    convert(input, out, alaw_decode)
}

/// Encodes linear samples as A-law into `out`; returns the number converted (the shorter length).
pub fn encode_alaw_into(input: &[i16], out: &mut [u8]) -> usize {
    convert(input, out, alaw_encode)
}

/// Decodes µ-law bytes into `out`; returns the number converted (the shorter length).
pub fn decode_ulaw_into(input: &[u8], out: &mut [i16]) -> usize {
    convert(input, out, ulaw_decode)
}

/// Encodes linear samples as µ-law into `out`; returns the number converted (the shorter length).
pub fn encode_ulaw_into(input: &[i16], out: &mut [u8]) -> usize {
    convert(input, out, ulaw_encode)
}

#[inline]
fn convert<A: Copy, B>(input: &[A], out: &mut [B], f: impl Fn(A) -> B) -> usize {
    let n = input.len().min(out.len());
    for (o, &i) in out.iter_mut().zip(input) {
        *o = f(i);
    }
    n
}

#[cfg(test)]
mod tests {
    //! Reference model written from the G.711 text, deliberately by search over decision intervals
    //! instead of bit tricks, so it shares no code or method with the crate under test.
    use super::*;

    /// A-law: 12-bit magnitude (16-bit input >> 3, one's complement for negatives). Segment 0 is
    /// [0, 32) with step 2; segment s ≥ 1 is [16·2^s, 32·2^s) with step 2^s. Positive samples carry
    /// sign bit 1; then the even bits are inverted (XOR 0x55).
    fn ref_alaw_encode(x: i16) -> u8 {
        let (sign, mag) = if x >= 0 {
            (0x80u8, i32::from(x) >> 3)
        } else {
            (0u8, i32::from(!x) >> 3)
        };
        for seg in 0u8..8 {
            let (start, step) = if seg == 0 {
                (0, 2)
            } else {
                (16 << seg, 1 << seg)
            };
            let end = start + 16 * step;
            if mag >= start && mag < end {
                let q = ((mag - start) / step) as u8;
                return (sign | (seg << 4) | q) ^ 0x55;
            }
        }
        unreachable!("a 12-bit magnitude lies in one of the 8 segments")
    }

    /// A-law decoder output: the midpoint of the code's interval, scaled back to 16 bits.
    fn ref_alaw_decode(c: u8) -> i16 {
        let c = c ^ 0x55;
        let seg = i32::from((c >> 4) & 7);
        let q = i32::from(c & 15);
        let (start, step) = if seg == 0 {
            (0, 2)
        } else {
            (16 << seg, 1 << seg)
        };
        let mid = start + q * step + step / 2;
        let v = (mid << 3) as i16;
        if c & 0x80 != 0 {
            v
        } else {
            -v
        }
    }

    /// µ-law: 14-bit magnitude (16-bit input >> 2, one's complement for negatives) plus bias 33
    /// (= 0x84 at 16-bit scale). Biased segment s is [32·2^s, 64·2^s) with step 2^(s+1); values past
    /// the last segment clip to its top code. Negative samples carry sign bit 1; all bits inverted.
    fn ref_ulaw_encode(x: i16) -> u8 {
        let (sign, mag) = if x >= 0 {
            (0u8, i32::from(x) >> 2)
        } else {
            (0x80u8, i32::from(!x) >> 2)
        };
        let biased = mag + 33;
        for seg in 0u8..8 {
            let start = 32 << seg;
            let step = 2 << seg;
            if biased >= start && biased < start + 16 * step {
                let q = ((biased - start) / step) as u8;
                return !(sign | (seg << 4) | q);
            }
        }
        !(sign | 0x7f)
    }

    fn ref_ulaw_decode(c: u8) -> i16 {
        let c = !c;
        let seg = i32::from((c >> 4) & 7);
        let q = i32::from(c & 15);
        let start = 32 << seg;
        let step = 2 << seg;
        let mid = start + q * step + step / 2 - 33;
        let v = (mid << 2) as i16;
        if c & 0x80 != 0 {
            -v
        } else {
            v
        }
    }

    #[test]
    fn alaw_encode_matches_segment_rules_for_all_65536_inputs() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(alaw_encode(x), ref_alaw_encode(x), "input {x}");
        }
    }

    #[test]
    fn ulaw_encode_matches_segment_rules_for_all_65536_inputs() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(x), ref_ulaw_encode(x), "input {x}");
        }
    }

    #[test]
    fn alaw_decode_matches_interval_midpoints_for_all_256_codes() {
        for c in 0..=255u8 {
            assert_eq!(alaw_decode(c), ref_alaw_decode(c), "code {c:#04x}");
        }
    }

    #[test]
    fn ulaw_decode_matches_interval_midpoints_for_all_256_codes() {
        for c in 0..=255u8 {
            assert_eq!(ulaw_decode(c), ref_ulaw_decode(c), "code {c:#04x}");
        }
    }

    #[test]
    fn known_code_words() {
        // A-law: 0xD5 / 0x55 are the smallest positive / negative levels (idle channel is 0xD5).
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        // µ-law: 0xFF / 0x7F are positive / negative zero (idle channel is 0xFF).
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
    }

    #[test]
    fn decode_encode_decode_is_stable_for_every_code() {
        for c in 0..=255u8 {
            let a = alaw_decode(c);
            assert_eq!(alaw_decode(alaw_encode(a)), a, "A-law code {c:#04x}");
            let u = ulaw_decode(c);
            assert_eq!(ulaw_decode(ulaw_encode(u)), u, "µ-law code {c:#04x}");
        }
        // Every A-law code is reachable, so encode(decode(c)) == c exactly.
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law code {c:#04x}");
        }
    }

    #[test]
    fn encoding_is_monotonic_in_the_linear_value() {
        let mut prev_a = ref_alaw_decode(alaw_encode(i16::MIN));
        let mut prev_u = ulaw_decode(ulaw_encode(i16::MIN));
        for x in i16::MIN..=i16::MAX {
            let a = alaw_decode(alaw_encode(x));
            let u = ulaw_decode(ulaw_encode(x));
            assert!(a >= prev_a && u >= prev_u, "non-monotonic at {x}");
            prev_a = a;
            prev_u = u;
        }
    }

    /// Size at 16-bit scale of the A-law quantisation interval that code `c` stands for.
    fn alaw_step(c: u8) -> i32 {
        let seg = i32::from(((c ^ 0x55) >> 4) & 7);
        if seg == 0 {
            16
        } else {
            8 << seg
        }
    }

    /// Tables 3/4 favour transparency over picking the nearest level, and µ-law's levels sit off
    /// A-law's by the bias, so a transcoded value may miss by one A-law step plus 4 — never more.
    #[test]
    fn transcoding_keeps_sign_and_lands_within_one_alaw_step() {
        for c in 0..=255u8 {
            let a = i32::from(alaw_decode(c));
            let u = i32::from(ulaw_decode(alaw_to_ulaw(c)));
            assert!(
                (a - u).abs() <= alaw_step(c) + 4,
                "A {c:#04x}: {a} vs µ {u}"
            );
            assert_eq!(a.signum(), u.signum(), "A {c:#04x} sign");
            let a2 = ulaw_to_alaw(c);
            let u2 = i32::from(ulaw_decode(c));
            let a2v = i32::from(alaw_decode(a2));
            assert!(
                (u2 - a2v).abs() <= alaw_step(a2) + 4,
                "µ {c:#04x}: {u2} vs A {a2v}"
            );
        }
    }

    #[test]
    fn double_transcoding_is_transparent_once_converted() {
        // G.711 §4: a signal that already went A→µ survives µ→A→µ unchanged, and vice versa.
        for c in 0..=255u8 {
            let u = alaw_to_ulaw(c);
            assert_eq!(alaw_to_ulaw(ulaw_to_alaw(u)), u, "A {c:#04x}");
            let a = ulaw_to_alaw(c);
            assert_eq!(ulaw_to_alaw(alaw_to_ulaw(a)), a, "µ {c:#04x}");
        }
        // Apart from the 16 A-law codes µ-law cannot tell apart, A→µ→A gives the code back.
        let lost = (0..=255u8)
            .filter(|&c| ulaw_to_alaw(alaw_to_ulaw(c)) != c)
            .count();
        assert_eq!(lost, 16);
    }

    #[test]
    fn slice_helpers_convert_the_shorter_length() {
        let pcm: [i16; 4] = [0, 1000, -1000, 32767];
        let mut a = [0u8; 3];
        assert_eq!(encode_alaw_into(&pcm, &mut a), 3);
        assert_eq!(a, [0xD5, alaw_encode(1000), alaw_encode(-1000)]);
        let mut back = [7i16; 5];
        assert_eq!(decode_alaw_into(&a, &mut back), 3);
        assert_eq!(back[..3], [8, alaw_decode(a[1]), alaw_decode(a[2])]);
        assert_eq!(back[3..], [7, 7]);
        let mut u = [0u8; 4];
        assert_eq!(encode_ulaw_into(&pcm, &mut u), 4);
        let mut lin = [0i16; 4];
        assert_eq!(decode_ulaw_into(&u, &mut lin), 4);
        assert_eq!(lin[0], 0);
        assert_eq!(lin[3], 32124);
    }
}
