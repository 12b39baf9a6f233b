//! The codec encoder's CPU building blocks: a dense layer over the shared f32 kernels of the
//! CPU audio op set (`backend::cpu_audio`), re-exported here for the encoder.

pub use crate::backend::cpu::softmax_inplace;
pub use crate::backend::cpu_audio::{
    augmented_codebook, elu1, gelu, layer_norm_rows, matmul_xwt, nearest_rows, par_rows, scale_add_rows,
};

/// A dense layer `y = x · Wᵀ (+ b)`, `W` stored `[out, in]` as in PyTorch.
#[derive(Debug, Clone)]
pub struct Linear {
    pub n_in: usize,
    pub n_out: usize,
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    pub fn forward(&self, x: &[f32], rows: usize, threads: usize) -> Vec<f32> {
        let mut y = match &self.bias {
            Some(b) => b.repeat(rows),
            None => vec![0.0; rows * self.n_out],
        };
        matmul_xwt(x, self.n_in, &self.weight, &mut y, rows, self.n_out, self.n_in, self.bias.is_some(), threads);
        y
    }
}
