//! The x-vector of a reference recording (log-mel front end, then the speaker encoder) on the
//! model's device, behind one interface for cloning.
//!
//! CPU models (and, by default, CUDA models) run the FFT front end and the speaker encoder on
//! the CPU. With `QT_GPU_SPEAKER=1` in the environment a CUDA model runs both on its GPU: the
//! front end as a convolution ([`LogMel`]) and the encoder over the GPU's audio ops. Opt-in
//! until the device runner has verified it against the CPU (tests/cuda_speaker_encoder.rs).

#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
use crate::audio::{MelConfig, MelFrontEnd};
use crate::error::{Error, Result};
use crate::model::Checkpoint;
#[cfg(feature = "cuda")]
use crate::model::log_mel::LogMel;
use crate::model::speaker_encoder::SpeakerEncoder;

/// Whether CUDA models compute x-vectors on their GPU: only with `QT_GPU_SPEAKER=1` (see the
/// module doc).
#[cfg(feature = "cuda")]
pub(crate) fn gpu_speaker_enabled() -> bool {
    std::env::var("QT_GPU_SPEAKER").is_ok_and(|v| v == "1")
}

/// Where a model computes x-vectors.
pub(crate) enum XVectorDevice {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(CudaBackend),
}

/// The front end and the speaker encoder, on one device.
pub(crate) enum XVectorNet {
    Cpu {
        /// The FFT front end (window, filter bank, FFT plan built once).
        mel: MelFrontEnd,
        encoder: SpeakerEncoder,
    },
    #[cfg(feature = "cuda")]
    Cuda { mel: LogMel<CudaBackend>, encoder: SpeakerEncoder<CudaBackend> },
}

impl XVectorNet {
    /// The front end and the speaker encoder of `checkpoint` (a Base checkpoint) on `device`.
    ///
    /// Errors: `Unsupported` for a speaker encoder whose mel front end is not the official one
    /// (24 kHz, 128 bins); the speaker encoder's load errors.
    pub fn load(checkpoint: &Checkpoint, device: XVectorDevice) -> Result<Self> {
        let spk = &checkpoint.config.speaker_encoder_config;
        // The official `extract_speaker_embedding` hard-codes its mel front end (24 kHz,
        // 128 bins); a config asking for anything else could not have been trained with it.
        let mel_config = MelConfig::default();
        if spk.mel_dim != mel_config.n_mels || spk.sample_rate != mel_config.sample_rate {
            return Err(Error::unsupported(format!(
                "speaker_encoder_config: mel_dim {} at {} Hz; the reference front end is {} mels at {} Hz",
                spk.mel_dim, spk.sample_rate, mel_config.n_mels, mel_config.sample_rate
            )));
        }
        let mel = MelFrontEnd::new(mel_config)?;
        let context = |e: Error| e.context("speaker encoder");
        Ok(match device {
            XVectorDevice::Cpu => {
                XVectorNet::Cpu { mel, encoder: SpeakerEncoder::load(&checkpoint.weights, spk).map_err(context)? }
            }
            #[cfg(feature = "cuda")]
            XVectorDevice::Cuda(backend) => XVectorNet::Cuda {
                mel: LogMel::new(backend.clone(), &mel).map_err(context)?,
                encoder: SpeakerEncoder::load_on(backend, &checkpoint.weights, spk).map_err(context)?,
            },
        })
    }

    /// The x-vector of 24 kHz mono `samples`.
    pub fn embed(&self, samples: &[f32]) -> Result<Vec<f32>> {
        match self {
            XVectorNet::Cpu { mel, encoder } => {
                let mel = mel.compute(samples)?;
                encoder.embed(&mel.data, mel.frames)
            }
            #[cfg(feature = "cuda")]
            XVectorNet::Cuda { mel, encoder } => {
                let mel = mel.compute(samples)?;
                encoder.embed(&mel.data, mel.frames)
            }
        }
    }

    /// Where it runs ("cpu", "cuda:0").
    pub fn device_name(&self) -> String {
        match self {
            XVectorNet::Cpu { .. } => "cpu".to_owned(),
            #[cfg(feature = "cuda")]
            XVectorNet::Cuda { encoder, .. } => encoder.backend_name(),
        }
    }
}
