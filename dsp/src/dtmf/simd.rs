//! The AVX2 + FMA build of the per-sample path, and the one place with `unsafe` in this crate.
//!
//! [`DtmfDetector::push`] takes the path compiled for AVX2 + FMA
//! ([`DtmfDetector::push_avx2_fma`]) when the CPU has both, and so does the start rule
//! ([`DtmfDetector::try_start_with`]). In it the sub-block DFT is [`dft_avx2_fma`], written with
//! intrinsics so that every sample is broadcast straight from memory and the energy summed eight
//! lanes at a time: left to itself the compiler pulled each sample out of a vector register with
//! shuffles (all on one port) and added the energy up one lane at a time. It computes exactly what
//! the portable kernel [`dft_kernel`]`::<true>` computes, in the same order, to the bit (tested
//! below): the same fused multiply–adds into four accumulator sets, the same final sums. Every
//! `unsafe` here is either a call into code compiled for AVX2 + FMA, made only after the CPU said
//! it has both, an unaligned load or store of a fixed-size array, or a prefetch hint
//! ([`prefetch`]).

use super::spectrum::dft_kernel;
use super::{DtmfDetector, SUB};

/// Whether this CPU runs the AVX2 + FMA path (about twice as fast as the baseline SSE2 one).
pub(super) fn cpu_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Asks the CPU to bring the cache lines of `value` into its caches: a hint, no load (no fault,
/// no wait, no effect on what any code reads). For whoever is about to work on many values that
/// are likely out of the cache: prefetch all of them first, and the CPU fetches them at the same
/// time instead of one after the other.
#[inline(always)]
pub fn prefetch<T: ?Sized>(value: &T) {
    let start = (value as *const T).cast::<u8>();
    let len = std::mem::size_of_val(value);
    if len == 0 {
        return;
    }
    // From the line holding the first byte to the line holding the last.
    let line = start.wrapping_sub(start as usize & 63);
    let span = (start as usize & 63) + len;
    let mut offset = 0;
    while offset < span {
        prefetch_line(line.wrapping_add(offset));
        offset += 64;
    }
}

/// [`prefetch`] of the cache line holding the first byte of `value` only (where a lock or a
/// header of a large value lives).
#[inline(always)]
pub fn prefetch_start<T: ?Sized>(value: &T) {
    prefetch_line((value as *const T).cast::<u8>());
}

#[inline(always)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE, which `_mm_prefetch` needs, is part of every x86_64 CPU; a prefetch reads
        // nothing and never faults, whatever the address (and `p` is within or at the line start
        // of a live value).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl DtmfDetector {
    /// [`DtmfDetector::push`] with the whole per-sample and per-sub-block path compiled for
    /// AVX2 + FMA, when `self.fused` says the CPU has them; the portable path otherwise.
    #[inline(always)]
    pub(super) fn push_on_this_cpu(&mut self, samples: &[i16]) {
        #[cfg(target_arch = "x86_64")]
        if self.fused {
            // SAFETY: `fused` is only set when the CPU reported AVX2 and FMA (`cpu_has_fma` in
            // `DtmfDetector::new`); nothing else writes it.
            unsafe { self.push_avx2_fma(samples) };
            return;
        }
        self.push_with::<false>(samples)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn push_avx2_fma(&mut self, samples: &[i16]) {
        self.push_with::<true>(samples)
    }
}

impl DtmfDetector {
    /// The start rule ([`DtmfDetector::try_start`]), out of the per-sample loop, compiled for
    /// AVX2 + FMA when `FUSED` (only ever true inside [`DtmfDetector::push_avx2_fma`]): the
    /// guards' least-squares sums then take four `f64` lanes at a time. The same
    /// arithmetic either way (the compiler never fuses a multiply and an add on its own).
    #[inline(always)]
    pub(super) fn try_start_with<const FUSED: bool>(&mut self, last: u64) {
        #[cfg(target_arch = "x86_64")]
        if FUSED {
            // SAFETY: `FUSED` is true only in `push_with::<true>`, called only from
            // `push_avx2_fma`, which runs only on a CPU with AVX2 and FMA.
            unsafe { self.try_start_avx2_fma(last) };
            return;
        }
        self.try_start_portable(last)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline(never)]
    fn try_start_avx2_fma(&mut self, last: u64) {
        self.try_start(last)
    }

    #[inline(never)]
    fn try_start_portable(&mut self, last: u64) {
        self.try_start(last)
    }
}

/// DFT and energy of one sub-block (see [`dft_kernel`]): the AVX2 + FMA kernel when `FUSED`, which
/// is only ever true inside [`DtmfDetector::push_avx2_fma`].
#[inline(always)]
pub(super) fn dft<const FUSED: bool>(
    block: &[f32; SUB],
    table: &[[f32; 16]; SUB],
) -> ([f32; 16], f32) {
    #[cfg(target_arch = "x86_64")]
    if FUSED {
        // SAFETY: `FUSED` is true only in `push_with::<true>`, called only from `push_avx2_fma`,
        // which runs only on a CPU with AVX2 and FMA (see `push_on_this_cpu`).
        return unsafe { dft_avx2_fma(block, table) };
    }
    dft_kernel::<false>(block, table)
}

/// [`dft_kernel`]`::<true>` with intrinsics. Per four samples: one 128-bit load broadcast to both
/// halves, then [`fma_quad`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dft_avx2_fma(block: &[f32; SUB], table: &[[f32; 16]; SUB]) -> ([f32; 16], f32) {
    use std::arch::x86_64::*;
    const _: () = assert!(SUB.is_multiple_of(8));
    let mut acc = [_mm256_setzero_ps(); 8];
    for (quad, rows) in block.chunks_exact(4).zip(table.chunks_exact(4)) {
        // SAFETY: `quad` holds exactly 4 floats (chunks_exact(4)); an unaligned load reads them.
        let q = unsafe { _mm_loadu_ps(quad.as_ptr()) };
        fma_quad(&mut acc, _mm256_set_m128(q, q), rows);
    }
    let mut e = _mm256_setzero_ps();
    for chunk in block.chunks_exact(8) {
        // SAFETY: `chunk` holds exactly 8 floats (chunks_exact(8)).
        let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
        e = _mm256_fmadd_ps(v, v, e);
    }
    finish(acc, e)
}

/// Four samples (`q`: samples 0..4 in both halves) into the accumulators: four in-lane shuffles
/// (one per sample, no loads), eight FMAs with their coefficients straight from the table. Four
/// accumulator sets of two registers (`acc[2j]`: lanes 0..8, `acc[2j + 1]`: lanes 8..16 of set j,
/// which takes sample j of every quad) keep eight chains in flight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn fma_quad(
    acc: &mut [std::arch::x86_64::__m256; 8],
    q: std::arch::x86_64::__m256,
    rows: &[[f32; 16]],
) {
    use std::arch::x86_64::*;
    let x = [
        _mm256_shuffle_ps::<0x00>(q, q),
        _mm256_shuffle_ps::<0x55>(q, q),
        _mm256_shuffle_ps::<0xAA>(q, q),
        _mm256_shuffle_ps::<0xFF>(q, q),
    ];
    for ((j, row), x) in rows.iter().enumerate().zip(x) {
        // SAFETY: `row` holds 16 floats: the loads read 0..8 and 8..16 of them (unaligned).
        let (lo, hi) = unsafe {
            (
                _mm256_loadu_ps(row.as_ptr()),
                _mm256_loadu_ps(row.as_ptr().add(8)),
            )
        };
        acc[2 * j] = _mm256_fmadd_ps(x, lo, acc[2 * j]);
        acc[2 * j + 1] = _mm256_fmadd_ps(x, hi, acc[2 * j + 1]);
    }
}

/// The final sums of the DFT kernels: `(set0 + set1) + (set2 + set3)` per lane, and the energy
/// lanes added in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn finish(acc: [std::arch::x86_64::__m256; 8], e: std::arch::x86_64::__m256) -> ([f32; 16], f32) {
    use std::arch::x86_64::*;
    let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[4], acc[6]));
    let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[3]), _mm256_add_ps(acc[5], acc[7]));
    let mut out = [0.0f32; 16];
    let mut lanes = [0.0f32; 8];
    // SAFETY: `out` holds 16 floats (stores to 0..8 and 8..16), `lanes` 8; unaligned stores.
    unsafe {
        _mm256_storeu_ps(out.as_mut_ptr(), lo);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
        _mm256_storeu_ps(lanes.as_mut_ptr(), e);
    }
    (out, lanes.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::super::spectrum::TABLES;
    use super::*;

    /// A prefetch is a hint for any value: at every alignment within a line, of any size (an
    /// empty one too), a large detector and a slice — no panic, nothing changed.
    #[test]
    fn prefetch_takes_any_value_at_any_alignment() {
        let bytes: Vec<u8> = (0..=255).collect();
        for start in 0..128 {
            for len in [0, 1, 2, 63, 64, 65, 127] {
                prefetch(&bytes[start..start + len]);
                prefetch_start(&bytes[start..start + len]);
            }
        }
        prefetch(&());
        let detector = DtmfDetector::new();
        prefetch(&detector);
        detector.prefetch_head();
        detector.prefetch(160);
        detector.prefetch(usize::MAX);
        assert_eq!(bytes, (0..=255).collect::<Vec<u8>>());
        assert_eq!(detector.position(), 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn generic_fused(block: &[f32; SUB], table: &[[f32; 16]; SUB]) -> ([f32; 16], f32) {
        dft_kernel::<true>(block, table)
    }

    /// The fused kernel agrees with the portable one (which rounds after every multiply).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn fused_and_portable_kernels_agree() {
        if !cpu_has_fma() {
            return;
        }
        let t = &*TABLES;
        let block: [f32; SUB] =
            std::array::from_fn(|n| (20000.0 * (n as f32 * 0.7).sin()).round() - 3000.0);
        let energy: f32 = block.iter().map(|x| x * x).sum();
        let (plain, _) = dft_kernel::<false>(&block, &t.dft);
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

    /// The intrinsics kernel gives the generic fused kernel's results to the bit, on random blocks
    /// at every level from silence to full scale.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn intrinsics_kernel_is_bit_identical_to_the_generic_fused_one() {
        if !cpu_has_fma() {
            return;
        }
        let t = &*TABLES;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..20_000 {
            let shift = round % 16;
            let samples: [i16; SUB] = std::array::from_fn(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 48) as u16 as i16 >> shift
            });
            let block = samples.map(f32::from);
            // SAFETY (both calls): the CPU reported AVX2 and FMA just above.
            let (want, want_e) = unsafe { generic_fused(&block, &t.dft) };
            let (got, got_e) = unsafe { dft_avx2_fma(&block, &t.dft) };
            assert_eq!(
                want.map(f32::to_bits),
                got.map(f32::to_bits),
                "round {round}"
            );
            assert_eq!(want_e.to_bits(), got_e.to_bits(), "round {round}");
        }
    }
}
