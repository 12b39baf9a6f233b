//! Helpers of the GPU op tests (tests/cuda_kernels.rs, tests/cuda_audio_ops.rs): the device,
//! buffers in and out, NaN poisoning (an output the op never wrote then fails), and the error
//! measure both use.

use std::sync::OnceLock;

use qwentts::backend::Backend;
use qwentts::backend::cuda::CudaBackend;

pub type GStream = <CudaBackend as Backend>::Stream;
pub type GBuf = <CudaBackend as Backend>::Buffer;

/// CUDA device 0, opened once per test binary.
pub fn gpu() -> &'static CudaBackend {
    static B: OnceLock<CudaBackend> = OnceLock::new();
    B.get_or_init(|| CudaBackend::new(0).expect("open CUDA device 0"))
}

/// `data` in a new GPU buffer.
pub fn upload(s: &mut GStream, data: &[f32]) -> GBuf {
    let mut b = gpu().alloc(data.len()).unwrap();
    gpu().write(s, &mut b, 0, data).unwrap();
    b
}

/// A GPU buffer of `n` NaNs (an output the op must overwrite).
pub fn poisoned(s: &mut GStream, n: usize) -> GBuf {
    upload(s, &vec![f32::NAN; n])
}

/// Fills an existing GPU buffer with NaN.
pub fn poison(s: &mut GStream, b: &mut GBuf) {
    let n = gpu().buffer_len(b);
    gpu().write(s, b, 0, &vec![f32::NAN; n]).unwrap();
}

/// The first `n` values of a GPU buffer.
pub fn download(s: &mut GStream, b: &GBuf, n: usize) -> Vec<f32> {
    let mut host = vec![0.0; n];
    gpu().read(s, b, 0, &mut host).unwrap();
    host
}

/// ‖got − want‖ / ‖want‖ (0 when they are equal); panics on a length mismatch or any
/// non-finite value (unwritten or NaN).
pub fn rel_err(what: &str, got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad = got.iter().filter(|v| !v.is_finite()).count();
    assert_eq!(bad, 0, "{what}: {bad} non-finite values (unwritten or NaN)");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    if num == 0.0 { 0.0 } else { (num / den.max(f64::MIN_POSITIVE)).sqrt() }
}

/// Bit-for-bit equality, naming the first element that differs.
pub fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g.to_bits() != w.to_bits()) {
        panic!("{what}: element {i} differs: {} vs {}", got[i], want[i]);
    }
}
