//! Channel downmix to mono.

/// Mean of the channels of each interleaved frame, as `librosa.load(mono=True)` and the
/// reference's `np.mean(audio, axis=-1)` compute it in float32: the channel values summed in
/// order, then divided by the channel count. One channel is returned as is.
///
/// # Panics
/// If `channels` is 0 or does not divide `interleaved.len()`.
pub fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    assert!(
        channels > 0 && interleaved.len().is_multiple_of(channels),
        "{} samples are not whole frames of {channels} channels",
        interleaved.len()
    );
    if channels == 1 {
        return interleaved.to_vec();
    }
    let n = channels as f32;
    interleaved.chunks_exact(channels).map(|frame| frame.iter().fold(0f32, |s, &x| s + x) / n).collect()
}
