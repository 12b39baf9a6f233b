//! Encoded audio → interleaved f32 PCM at the file's own rate and channel count.
//!
//! WAV goes through `hound`, which reads the integer samples exactly; each is scaled by
//! `1 / 2^(bits-1)`, which is what libsndfile (and so `librosa.load` / `soundfile.read`)
//! does: 16-bit `s / 32768`, 24-bit `s / 2^23`, 32-bit `f32(s) / 2^31`, 8-bit
//! `(u - 128) / 128`. 32-bit float WAV is passed through unchanged.
//!
//! FLAC, Ogg Vorbis and MP3 (and WAV codings hound does not read, such as A-law, µ-law or
//! 64-bit float) go through `symphonia`. Its decoders trim encoder delay and padding when the
//! stream signals them (the LAME/Xing tag for MP3, granule positions for Ogg); an MP3 without
//! a LAME tag keeps the encoder's leading delay (typically 529 samples plus one frame), as it
//! does with most other decoders. Lossless formats decode bit-identically to libsndfile;
//! on the test clips symphonia's Vorbis and MP3 output is within 1.2e-7 and 3.0e-7 (max abs)
//! of libsndfile's (libvorbis, mpg123), so lossy input is near-exact too, though not
//! guaranteed bit-identical.
//!
//! No resampling, mixing or validation happens here (see [`mod@super::reference`]).

use std::io::Cursor;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::error::{Error, Result};

/// Most channels accepted from a file or a caller (7.1 surround and far beyond).
pub const MAX_CHANNELS: usize = 64;

/// Decoded PCM: interleaved f32 frames at the stream's native rate.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Interleaved samples, `frames() * channels` of them, nominally in [-1, 1].
    pub samples: Vec<f32>,
    /// Channels per frame (≥ 1).
    pub channels: usize,
    /// Frames per second (≥ 1).
    pub sample_rate: u32,
    /// The stream holds more than the `max_seconds` passed to [`decode`]; decoding stopped
    /// there, and `samples` holds at most the part read so far (nothing for WAV, whose header
    /// gives the length).
    pub truncated: bool,
    /// Which decoder produced the samples ("wav", "flac", "vorbis", "mp3", ...), for messages.
    pub codec: &'static str,
}

impl DecodedAudio {
    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Decodes a complete encoded file held in memory (WAV, FLAC, Ogg Vorbis or MP3, detected
/// from the content, not from a file name).
///
/// Decoding stops once the stream is known to be longer than `max_seconds` (and
/// [`DecodedAudio::truncated`] is set), so an over-long upload is not decoded in full just
/// to be rejected.
///
/// Errors (`InvalidArgument`): empty input; data that is not a recognised audio format; a
/// format recognised but not decodable (unsupported codec, corrupt stream); a stream with no
/// audio track, zero channels or a zero sample rate.
pub fn decode(bytes: &[u8], max_seconds: f64) -> Result<DecodedAudio> {
    if bytes.is_empty() {
        return Err(Error::invalid_argument("audio data is empty (0 bytes)"));
    }
    check_wav_formats(bytes)?;
    if is_riff_wave(bytes) {
        let repaired = repair_streamed_wav(bytes);
        let bytes = repaired.as_deref().unwrap_or(bytes);
        match decode_wav(bytes, max_seconds) {
            Ok(audio) => return Ok(audio),
            // hound reads PCM integer and 32-bit float WAV only; symphonia also knows A-law,
            // µ-law and 64-bit float. When both fail, the message gives both reasons.
            Err(WavError::Unsupported(why)) => return decode_symphonia(bytes, max_seconds, Some(&why)),
            Err(WavError::Bad(e)) => return Err(e),
        }
    }
    decode_symphonia(bytes, max_seconds, None)
}

/// Checks every WAV `fmt ` chunk a decoder could read before any decoder reads it: 1..=
/// [`MAX_CHANNELS`] channels and at most 64 bits per sample. symphonia's WAV reader multiplies
/// the two into a 16-bit block size, which overflows for absurd values (a panic in builds with
/// overflow checks); and its probe looks for a `RIFF` marker anywhere in the data, not only at
/// the start, so every embedded `RIFF....WAVE` header is checked (both found by the
/// reference_audio fuzzer).
fn check_wav_formats(bytes: &[u8]) -> Result<()> {
    let headers = bytes.windows(12).enumerate().filter(|(_, w)| &w[0..4] == b"RIFF" && &w[8..12] == b"WAVE");
    for (start, _) in headers {
        for fmt in wav_chunks(&bytes[start..]).filter(|c| &c.id == b"fmt ") {
            let (Some(channels), Some(bits)) = (fmt.u16_at(2), fmt.u16_at(14)) else { continue };
            if channels == 0 || usize::from(channels) > MAX_CHANNELS {
                return Err(Error::invalid_argument(format!(
                    "WAV header declares {channels} channels; 1..={MAX_CHANNELS} are accepted"
                )));
            }
            if bits > 64 {
                return Err(Error::invalid_argument(format!(
                    "WAV header declares {bits} bits per sample; at most 64 are accepted"
                )));
            }
        }
    }
    Ok(())
}

/// `RIFF....WAVE` (little-endian RIFF; RIFX and RF64 are left to symphonia).
fn is_riff_wave(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

/// WAV written to a pipe leaves the RIFF and data sizes unset (0 or 0xFFFFFFFF), and a file
/// cut short declares more data than it holds. libsndfile reads to the end of the file in the
/// last two cases (and reads nothing for a 0 size); we read to the end in all three, since a
/// zero-size data chunk followed by sample bytes is a streamed file, not an empty one.
/// Returns a copy with both sizes set to what the file holds (whole frames of the `fmt `
/// block alignment), or `None` when the header is consistent (or too broken to tell).
fn repair_streamed_wav(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut block_align = None;
    for chunk in wav_chunks(bytes) {
        let (pos, body, size) = (chunk.pos, chunk.pos + 8, chunk.size);
        match &chunk.id {
            b"fmt " => block_align = chunk.u16_at(12).map(usize::from),
            b"data" => {
                let available = bytes.len() - body;
                if size != 0 && size <= available {
                    return None;
                }
                let align = block_align.filter(|&a| a > 0)?;
                let fixed = available / align * align;
                if fixed == 0 || fixed > u32::MAX as usize - body {
                    return None;
                }
                log::warn!("WAV header declares {size} data bytes, the file holds {available}: reading to the end");
                let mut copy = bytes[..body + fixed].to_vec();
                copy[pos + 4..pos + 8].copy_from_slice(&(fixed as u32).to_le_bytes());
                let riff = (copy.len() - 8) as u32;
                copy[4..8].copy_from_slice(&riff.to_le_bytes());
                return Some(copy);
            }
            _ => {}
        }
    }
    None
}

/// One chunk of a RIFF/WAVE file: its id, where its 8-byte header starts and its declared
/// size (which may run past the end of the file).
struct WavChunk<'a> {
    id: [u8; 4],
    pos: usize,
    size: usize,
    bytes: &'a [u8],
}

impl WavChunk<'_> {
    /// The little-endian u16 at `offset` into the chunk's body, if the file holds it.
    fn u16_at(&self, offset: usize) -> Option<u16> {
        let at = self.pos + 8 + offset;
        self.bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
}

/// The chunks after `RIFF....WAVE`, in order, until one's header does not fit or its
/// declared size would move past any representable position.
fn wav_chunks(bytes: &[u8]) -> impl Iterator<Item = WavChunk<'_>> {
    let mut pos = Some(12usize);
    std::iter::from_fn(move || {
        let at = pos?;
        let header = bytes.get(at..at + 8)?;
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        pos = (at + 8).checked_add(size).and_then(|end| end.checked_add(size & 1));
        Some(WavChunk { id: [header[0], header[1], header[2], header[3]], pos: at, size, bytes })
    })
}

enum WavError {
    /// hound cannot read this coding; another decoder may.
    Unsupported(String),
    /// The file is a WAV file and is broken.
    Bad(Error),
}

fn decode_wav(bytes: &[u8], max_seconds: f64) -> std::result::Result<DecodedAudio, WavError> {
    use hound::{Error as H, SampleFormat};

    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
        H::Unsupported => WavError::Unsupported("unsupported sample coding".into()),
        H::FormatError(why) => WavError::Unsupported(format!("malformed or unusual header ({why})")),
        other => WavError::Bad(Error::invalid_argument(format!("WAV file cannot be read: {other}"))),
    })?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 || spec.sample_rate == 0 {
        return Err(WavError::Bad(Error::invalid_argument(format!(
            "WAV header declares {channels} channels at {} Hz",
            spec.sample_rate
        ))));
    }
    // Recorders that stream WAV sometimes leave the data size at 0 or 0xFFFFFFFF; what the
    // file can physically hold bounds it (the real end is found while reading).
    let frame_bytes = channels * usize::from(spec.bits_per_sample).div_ceil(8).max(1);
    let declared_frames = (reader.duration() as usize).min(bytes.len() / frame_bytes);
    let limit = frame_limit(max_seconds, spec.sample_rate);
    if declared_frames > limit {
        // Known from the header: nothing is decoded.
        return Ok(DecodedAudio {
            samples: Vec::new(),
            channels,
            sample_rate: spec.sample_rate,
            truncated: true,
            codec: "wav",
        });
    }
    let take = declared_frames * channels;

    let mut samples = Vec::with_capacity(take);
    let mut short_read = None;
    match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) => {
            for s in reader.samples::<f32>().take(take) {
                match s {
                    Ok(v) => samples.push(v),
                    Err(e) => {
                        short_read = Some(e);
                        break;
                    }
                }
            }
        }
        (SampleFormat::Int, bits @ 1..=32) => {
            // Exact power-of-two scaling; the i32 → f32 rounding for 32-bit data is the same
            // one libsndfile makes.
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for s in reader.samples::<i32>().take(take) {
                match s {
                    Ok(v) => samples.push(v as f32 * scale),
                    Err(e) => {
                        short_read = Some(e);
                        break;
                    }
                }
            }
        }
        (format, bits) => {
            return Err(WavError::Unsupported(format!("{bits}-bit {format:?} samples")));
        }
    }
    if let Some(e) = short_read {
        // libsndfile (and so librosa) reads a truncated data chunk up to where it ends.
        let whole = samples.len() / channels * channels;
        log::warn!(
            "WAV data chunk ends early ({e}): using the {} complete frames read of {declared_frames} declared",
            whole / channels
        );
        samples.truncate(whole);
    }
    Ok(DecodedAudio { samples, channels, sample_rate: spec.sample_rate, truncated: false, codec: "wav" })
}

/// Largest frame count within `max_seconds` (saturating; non-finite means unlimited).
fn frame_limit(max_seconds: f64, sample_rate: u32) -> usize {
    if !(max_seconds.is_finite()) || max_seconds < 0.0 {
        return usize::MAX;
    }
    let frames = (max_seconds * f64::from(sample_rate)).floor();
    if frames >= usize::MAX as f64 { usize::MAX } else { frames as usize }
}

/// `wav_problem`: set when the data is RIFF/WAVE that hound could not read (and why).
fn decode_symphonia(bytes: &[u8], max_seconds: f64, wav_problem: Option<&str>) -> Result<DecodedAudio> {
    let not_audio = |why: &dyn std::fmt::Display| match wav_problem {
        Some(problem) => Error::invalid_argument(format!("WAV file cannot be decoded: {problem} ({why})")),
        None => match container_by_magic(bytes) {
            // The signature was read, so this is that kind of file, cut short or damaged.
            Some(name) => Error::invalid_argument(format!(
                "{name} file cannot be read ({} bytes; truncated or damaged?): {why}",
                bytes.len()
            )),
            None => Error::invalid_argument(format!(
                "data is not a recognised audio file (WAV, FLAC, Ogg Vorbis or MP3 expected; {} bytes, starting {}): {why}",
                bytes.len(),
                hex_prefix(bytes)
            )),
        },
    };

    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(&Hint::new(), mss, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| not_audio(&e))?;
    let container = format.format_info().short_name;

    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| Error::invalid_argument(format!("{container} file has no audio track")))?;
    let track_id = track.id;
    // Frames the container says the stream holds (FLAC STREAMINFO, the last Ogg granule, an
    // MP3 Xing/LAME header); fewer decoded means the file was cut short.
    let declared_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| Error::invalid_argument(format!("{container} file: the audio track has no codec parameters")))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| Error::invalid_argument(format!("{container} file: cannot decode its audio track: {e}")))?;
    let codec = decoder.codec_info().short_name;

    let mut samples: Vec<f32> = Vec::new();
    let mut chunk: Vec<f32> = Vec::new();
    let mut channels = 0usize;
    let mut sample_rate = 0u32;
    let mut truncated = false;
    let mut bad_packets = 0usize;
    let mut last_bad = String::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A stream cut short ends where the data ends, as with libsndfile.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                return Err(Error::invalid_argument(format!(
                    "{container} file: reading the stream failed after {} frames: {e}",
                    samples.len() / channels.max(1)
                )));
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            // A corrupt packet is skipped (as players and libsndfile's decoders do); a stream
            // in which nothing decodes is rejected below.
            Err(SymphoniaError::DecodeError(why)) => {
                bad_packets += 1;
                last_bad = why.to_string();
                continue;
            }
            Err(e) => {
                return Err(Error::invalid_argument(format!("{container} file: decoding failed: {e}")));
            }
        };
        let spec = buf.spec();
        let (c, r) = (spec.channels().count(), spec.rate());
        if channels == 0 {
            (channels, sample_rate) = (c, r);
        } else if (c, r) != (channels, sample_rate) {
            return Err(Error::invalid_argument(format!(
                "{container} file changes format mid-stream ({channels} ch at {sample_rate} Hz, then {c} ch at {r} Hz)"
            )));
        }
        buf.copy_to_vec_interleaved(&mut chunk);
        samples.extend_from_slice(&chunk);
        if samples.len() / channels.max(1) > frame_limit(max_seconds, sample_rate) {
            truncated = true;
            break;
        }
    }
    if bad_packets > 0 {
        log::warn!("{container} file: skipped {bad_packets} undecodable packet(s), last: {last_bad}");
    }
    if channels == 0 || sample_rate == 0 {
        let why = if bad_packets > 0 {
            format!(": {bad_packets} corrupt packet(s), last: {last_bad}")
        } else {
            String::new()
        };
        return Err(Error::invalid_argument(format!("{container} file contains no decodable audio{why}")));
    }
    if samples.is_empty() {
        return Err(Error::invalid_argument(format!("{container} file contains no audio samples (0 frames decoded)")));
    }
    if truncated {
        samples.truncate(frame_limit(max_seconds, sample_rate).saturating_mul(channels));
    } else if let Some(declared) = declared_frames
        && ((samples.len() / channels) as u64) < declared
    {
        // A reference cut short loses audio that an in-context transcript still describes:
        // refused rather than silently shortened.
        let frames = samples.len() / channels;
        let secs = |n: f64| n / f64::from(sample_rate);
        return Err(Error::invalid_argument(format!(
            "{container} file ends early: {frames} of the {declared} frames its header declares \
             ({:.2} of {:.2} s) were decoded; the file is truncated or damaged",
            secs(frames as f64),
            secs(declared as f64)
        )));
    }
    Ok(DecodedAudio { samples, channels, sample_rate, truncated, codec })
}

/// The container a file's first bytes announce, for messages about files that cannot be read.
fn container_by_magic(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [b'f', b'L', b'a', b'C', ..] => Some("flac"),
        [b'O', b'g', b'g', b'S', ..] => Some("ogg"),
        [b'I', b'D', b'3', ..] => Some("mp3 (ID3-tagged)"),
        [0xFF, b, ..] if b & 0xE0 == 0xE0 => Some("mp3"),
        _ => None,
    }
}

/// First bytes as hex, for messages about unrecognised data.
fn hex_prefix(bytes: &[u8]) -> String {
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 8 { " …" } else { "" };
    format!("{}{more}", head.join(" "))
}
