//! The networks that turn a reference recording into a voice, on the model's device, behind
//! one interface for cloning: the x-vector (log-mel front end, then the speaker encoder) and,
//! for in-context cloning, the reference codes (the codec encoder).
//!
//! CPU models run them on the CPU: the FFT front end, the speaker encoder and the blocked CPU
//! codec encoder. A CUDA model runs all three on its GPU: the front end as a convolution
//! ([`LogMel`]), the speaker encoder and the codec encoder ([`CodecEncoderNet`]) over the GPU's
//! audio ops, verified against the CPU by tests/cuda_speaker_encoder.rs and
//! tests/cuda_codec_encoder.rs. `QT_GPU_CLONE=0` in the environment keeps a CUDA model's
//! cloning on the CPU (debugging, or a comparison).

#[cfg(feature = "cuda")]
use crate::backend::cuda::CudaBackend;
use crate::audio::{MelConfig, MelFrontEnd};
use crate::backend::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::model::Checkpoint;
#[cfg(feature = "cuda")]
use crate::model::log_mel::LogMel;
use crate::model::codec::encoder::CodecEncoder;
#[cfg(feature = "cuda")]
use crate::model::codec::encoder_net::CodecEncoderNet;
use crate::model::speaker_encoder::SpeakerEncoder;

/// Whether CUDA models clone on their GPU: yes unless `QT_GPU_CLONE=0` (see the module doc).
#[cfg(feature = "cuda")]
pub(crate) fn gpu_clone_enabled() -> bool {
    std::env::var("QT_GPU_CLONE").map_or(true, |v| v != "0")
}

/// Where a model runs its cloning networks.
pub(crate) enum CloneDevice {
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
    /// The front end and the speaker encoder of `checkpoint` (a Base checkpoint) on `device`
    /// (`threads`: the CPU encoder's threads, default all; the results do not depend on it).
    ///
    /// Errors: `Unsupported` for a speaker encoder whose mel front end is not the official one
    /// (24 kHz, 128 bins); the speaker encoder's load errors.
    pub fn load(checkpoint: &Checkpoint, device: &CloneDevice, threads: Option<usize>) -> Result<Self> {
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
            CloneDevice::Cpu => {
                let backend = threads.map(CpuBackend::new).unwrap_or_default();
                XVectorNet::Cpu { mel, encoder: SpeakerEncoder::load_on(backend, &checkpoint.weights, spk).map_err(context)? }
            }
            #[cfg(feature = "cuda")]
            CloneDevice::Cuda(backend) => XVectorNet::Cuda {
                mel: LogMel::new(backend.clone(), &mel).map_err(context)?,
                encoder: SpeakerEncoder::load_on(backend.clone(), &checkpoint.weights, spk).map_err(context)?,
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

    /// Where it runs ("cpu (8 threads)", "cuda:0").
    pub fn device_name(&self) -> String {
        match self {
            XVectorNet::Cpu { encoder, .. } => encoder.backend_name(),
            #[cfg(feature = "cuda")]
            XVectorNet::Cuda { encoder, .. } => encoder.backend_name(),
        }
    }
}

/// The codec encoder (24 kHz audio → reference codes, for in-context cloning), on one device.
pub(crate) enum ReferenceEncoder {
    Cpu(CodecEncoder),
    #[cfg(feature = "cuda")]
    Cuda(CodecEncoderNet<CudaBackend>),
}

impl ReferenceEncoder {
    /// The codes of 24 kHz mono `samples`: `[ceil(N / 1920), 16]`.
    pub fn encode(&self, samples: &[f32]) -> Result<Vec<u32>> {
        match self {
            ReferenceEncoder::Cpu(e) => e.encode(samples),
            #[cfg(feature = "cuda")]
            ReferenceEncoder::Cuda(e) => e.encode_with_margins(samples).map(|(codes, _)| codes),
        }
    }
}

/// The networks that turn a reference recording into a voice (Base checkpoints only).
pub(crate) struct CloningNetworks {
    /// 24 kHz audio → log-mel → x-vector.
    pub xvector: XVectorNet,
    /// 24 kHz audio → reference codes, for in-context cloning.
    pub codec_encoder: ReferenceEncoder,
}

impl CloningNetworks {
    /// The cloning networks of `checkpoint` on `device` (`threads`: the CPU networks' threads,
    /// [`LoadOptions::threads`](crate::LoadOptions)).
    pub fn load(checkpoint: &Checkpoint, threads: Option<usize>, device: CloneDevice) -> Result<Self> {
        let xvector = XVectorNet::load(checkpoint, &device, threads)?;
        let context = |e: Error| e.context("codec encoder");
        let codec_encoder = match device {
            CloneDevice::Cpu => {
                let mut e = CodecEncoder::from_checkpoint(checkpoint).map_err(context)?;
                if let Some(t) = threads {
                    e.set_threads(t);
                }
                ReferenceEncoder::Cpu(e)
            }
            #[cfg(feature = "cuda")]
            CloneDevice::Cuda(backend) => ReferenceEncoder::Cuda(
                CodecEncoderNet::load(backend, &checkpoint.speech_config, &checkpoint.speech_weights).map_err(context)?,
            ),
        };
        Ok(CloningNetworks { xvector, codec_encoder })
    }

    /// Where they run ("cpu (8 threads)", "cuda:0").
    pub fn device_name(&self) -> String {
        self.xvector.device_name()
    }
}

