//! Counter-based random numbers for sampling: Philox4x32-10.
//!
//! A counter-based generator has no state to carry between draws: the number for a draw is a
//! pure function of (key, counter). Keying by the request seed and counting by (frame, slot)
//! makes every draw addressable, so the same seed gives the same codes whatever the thread
//! count, however frames are batched or pipelined, and on a GPU backend, where each sampling
//! kernel computes its own draw from the frame index it already has.
//!
//! Philox4x32-10 is the generator of Salmon, Moraes, Dror and Shaw, "Parallel random numbers:
//! as easy as 1, 2, 3" (SC 2011), the one cuRAND's `curandStatePhilox4_32_10_t` and PyTorch's
//! CUDA generator use. It passes BigCrush for any key, including small consecutive seeds, so
//! the seed goes into the key unmixed. The tests check it against the Random123 known-answer
//! vectors.

/// Philox4x32-10 keyed by a 64-bit seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Philox {
    key: [u32; 2],
}

// Multipliers and Weyl key increments from the paper (W0 = golden ratio, W1 = sqrt(3) - 1).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;
const ROUNDS: usize = 10;

/// `uniform` keeps the top 24 bits of a word: exactly representable in f32, so the value is
/// `k / 2^24` with no rounding and never reaches 1.0.
const UNIFORM_BITS: u32 = 24;

impl Philox {
    /// Key = the seed's low and high 32-bit halves.
    pub fn new(seed: u64) -> Self {
        Philox { key: [seed as u32, (seed >> 32) as u32] }
    }

    /// One Philox4x32-10 block: four 32-bit words for `counter` under this key.
    pub fn block(&self, counter: [u32; 4]) -> [u32; 4] {
        let mut ctr = counter;
        let mut key = self.key;
        for round in 0..ROUNDS {
            if round > 0 {
                key = [key[0].wrapping_add(W0), key[1].wrapping_add(W1)];
            }
            let p0 = u64::from(M0) * u64::from(ctr[0]);
            let p1 = u64::from(M1) * u64::from(ctr[2]);
            ctr = [
                (p1 >> 32) as u32 ^ ctr[1] ^ key[0],
                p1 as u32,
                (p0 >> 32) as u32 ^ ctr[3] ^ key[1],
                p0 as u32,
            ];
        }
        ctr
    }

    /// Uniform in [0, 1) with 24 random bits, for draw `slot` of codec frame `frame`
    /// (slot 0 = talker codebook 0, slots 1..=15 = code-predictor codebooks).
    ///
    /// Counter layout: `[frame, slot, 0, 0]`; the value is `(word0 >> 8) * 2^-24`. One block
    /// per draw, words 1..3 unused, so a kernel sampling codebook `slot` of frame `frame` needs
    /// nothing but those two numbers. Counter words 2 and 3 are reserved (zero) for other
    /// streams should one be needed; frames are 32-bit (2^32 frames = 10.9 years of audio).
    pub fn uniform(&self, frame: u32, slot: u32) -> f32 {
        let word = self.block([frame, slot, 0, 0])[0];
        (word >> (32 - UNIFORM_BITS)) as f32 * (1.0 / (1u32 << UNIFORM_BITS) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Random123 tests/kat_vectors, the three "philox4x32 10" lines (counter, key -> output).
    #[test]
    fn known_answers() {
        let kat: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            ([0; 4], [0; 2], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
            ([u32::MAX; 4], [u32::MAX; 2], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
            (
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0],
                [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
            ),
        ];
        for (ctr, key, want) in kat {
            let seed = u64::from(key[0]) | u64::from(key[1]) << 32;
            assert_eq!(Philox::new(seed).block(ctr), want, "counter {ctr:08x?} key {key:08x?}");
        }
    }

    #[test]
    fn uniform_is_word0_top_bits() {
        let p = Philox::new(0x0123_4567_89ab_cdef);
        let w = p.block([7, 3, 0, 0])[0];
        assert_eq!(p.uniform(7, 3), (w >> 8) as f32 / 16_777_216.0);
    }
}
