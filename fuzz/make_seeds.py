#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ (except voice_file's, which the test
`fuzz_voice_seeds_load` in tests/voice_file.rs writes with QT_WRITE_FUZZ_SEEDS=1, because a
valid voice needs the library). Standard library only; run from the repository root.
Seeds are small valid inputs of each format and a few near misses; libFuzzer grows the rest."""
import json, os, struct, wave, io, glob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
FIX = os.path.join(ROOT, "tests", "fixtures")
SHARED = os.path.join(ROOT, "..", "shared", "checkpoints")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- safetensors_file -------------------------------------------------------------------------
def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


put("safetensors_file", "empty_header", safetensors({}))
put("safetensors_file", "three_dtypes", safetensors({
    "a.weight": ("F32", [2, 3], struct.pack("<6f", *range(6))),
    "b": ("BF16", [3], bytes([0, 0x3f, 0x80, 0x3f, 0, 0xc0])),
    "c": ("F16", [1, 2], struct.pack("<2e", 1.5, -2.0)),
}, {"format": "pt"}))
put("safetensors_file", "scalar_and_empty", safetensors({
    "s": ("F32", [], struct.pack("<f", 3.0)), "z": ("F32", [0, 4], b"")}))
put("safetensors_file", "unsupported_dtype", safetensors({"i": ("I32", [2], struct.pack("<2i", 1, 2))}))

# --- configs: selector byte + text -----------------------------------------------------------
for i, path in enumerate(sorted(glob.glob(os.path.join(SHARED, "*", "config.json")))
                         + sorted(glob.glob(os.path.join(FIX, "tiny-*", "config.json")))):
    put("configs", f"model_{i}", b"\x00" + open(path, "rb").read())
for i, path in enumerate(sorted(glob.glob(os.path.join(SHARED, "Qwen3-TTS-12Hz-0.6B-Base", "speech_tokenizer", "config.json")))
                         + sorted(glob.glob(os.path.join(FIX, "tiny-base", "speech_tokenizer", "config.json")))):
    put("configs", f"speech_{i}", b"\x01" + open(path, "rb").read())
put("configs", "generation_0", b"\x02" + open(os.path.join(FIX, "tiny-base", "generation_config.json"), "rb").read())


# --- tokenizer_files: vocab \0 merges \0 tokenizer_config -------------------------------------
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, map(chr, cs)))


symbols = [bytes_to_unicode()[b] for b in range(256)]
merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("e", "ll"), ("h", "ell"), ("hell", "o")]
vocab = {s: i for i, s in enumerate(symbols)}
for a, b in merges:
    vocab.setdefault(a + b, len(vocab))
added = {}
for tok in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tts_pad>"]:
    added[str(len(vocab) + len(added))] = {"content": tok, "lstrip": False, "normalized": False,
                                            "rstrip": False, "single_word": False, "special": True}
config = {"added_tokens_decoder": added, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
merges_txt = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
put("tokenizer_files", "byte_level", json.dumps(vocab, ensure_ascii=False) + "\0" + merges_txt + "\0" + json.dumps(config))

# --- reference_audio --------------------------------------------------------------------------
with wave.open(os.path.join(FIX, "audio", "ref_24k.wav")) as w:
    pcm24 = w.readframes(w.getnframes())
with wave.open(os.path.join(FIX, "audio", "ref_16k_stereo.wav")) as w:
    pcm16 = w.readframes(w.getnframes())


def wav(channels, rate, width, frames):
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels); w.setsampwidth(width); w.setframerate(rate); w.writeframes(frames)
    return out.getvalue()


def wav_float(channels, rate, samples):
    data = struct.pack(f"<{len(samples)}f", *samples)
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


mid = 24000 * 2
put("reference_audio", "s16_24k_mono_50ms.wav", wav(1, 24000, 2, pcm24[mid:mid + 2400]))
put("reference_audio", "s16_16k_stereo_50ms.wav", wav(2, 16000, 2, pcm16[16000 * 4:16000 * 4 + 3200]))
put("reference_audio", "u8_8k_mono.wav", wav(1, 8000, 1, bytes((b + 128) & 255 for b in pcm24[mid + 1:mid + 801:2])))
put("reference_audio", "s24_48k_mono.wav", wav(1, 48000, 3, b"".join(b"\0" + pcm24[i:i + 2] for i in range(mid, mid + 1200, 2))))
samples = [s / 32768 for s in struct.unpack("<600h", pcm24[mid:mid + 1200])]
put("reference_audio", "f32_44k1_mono.wav", wav_float(1, 44100, samples))
for name in ["clip_1s.flac", "clip_1s.mp3", "clip_1s_stereo.ogg"]:
    put("reference_audio", name, open(os.path.join(FIX, "encoded", name), "rb").read())

# --- text_prompt: flags, frames, text \0 language \0 extra \0 instruct -------------------------
ref_text = "Okay. Yeah. I resent you. I love you."
for name, flags, frames, fields in [
    ("xvector_english", 0, 0, ["Hello there, how are you today?", "English", "", ""]),
    ("icl_auto", 1, 40, ["The quick brown fox jumps over the lazy dog.", "auto", ref_text, ""]),
    ("icl_streaming_chinese", 1 | 4, 12, ["你好，世界。今天天气很好！", "Chinese", "参考文本。", ""]),
    ("speaker_dialect", 2, 0, ["我们去吃火锅吧。", "chinese", "Eric", ""]),
    ("speaker_instruct", 2 | 4, 0, ["Good morning!", "english", "ryan", "Speak slowly and warmly."]),
    ("no_speaker_instruct", 3, 0, ["Welcome to the show.", "Auto", "", "A deep, calm male voice."]),
    ("special_tokens", 0, 0, ["<|im_start|>assistant\n<|im_end|> <tts_pad>", "english", "", ""]),
]:
    put("text_prompt", name, bytes([flags, frames]) + "\0".join(fields).encode())
print("seeds written under", CORPUS)
