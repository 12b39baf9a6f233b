// qwentts.hpp: header-only C++17 wrapper over the qwentts C API (include/qwentts.h).
//
// Ownership only, no logic: every handle is a std::unique_ptr whose deleter calls qt_free, and
// every failing status becomes a qwentts::Error carrying the status, its name and
// qt_last_error(). Use it with -I include -I bindings/cpp and link libqwentts.
//
//   auto model = qwentts::Model::load("tests/fixtures/tiny-base");
//   qwentts::Voice voice = model.clone_voice_from_file("ref.wav", "Transcript of ref.wav.");
//   qwentts::GenParams params = model.gen_params();
//   params.language = "English";
//   qwentts::Audio audio = model.generate(voice, "Hello!", params, [](const qt_chunk& c) {
//     /* queue c.samples[0 .. c.n_samples) for playback */ return true; });
//   audio.write_wav("hello.wav");
//
// Threads: a Model and a Voice may be used from many threads at once (share them by reference
// or in a std::shared_ptr); an Audio may be read from many. All are movable, not copyable.
// Callbacks run on the thread that called generate; an exception thrown by one stops
// generation and is rethrown from generate once the library has returned.
#ifndef QWENTTS_HPP
#define QWENTTS_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "qwentts.h"

namespace qwentts {

/// A failed qt_* call: what() is "QT_STATUS_NAME: <qt_last_error()>", e.g.
/// "QT_STATUS_NOT_FOUND: qt_load: model directory /x not found".
class Error : public std::runtime_error {
 public:
  Error(const char* call, qt_status status)
      : std::runtime_error(describe(call, status)), status_(status) {}
  qt_status status() const noexcept { return status_; }

 private:
  // Reads qt_last_error() at once, before any other qt_ call can replace it. The detail
  // already names the failing function; `call` stands in only if it is empty.
  static std::string describe(const char* call, qt_status status) {
    const std::string text = qt_status_str(status);  // "QT_STATUS_NAME: meaning"
    const std::string detail = qt_last_error();
    if (detail.empty()) return std::string(call) + ": " + text;
    return text.substr(0, text.find(':')) + ": " + detail;
  }
  qt_status status_;
};

/// Throws Error for a negative status; returns positive ones (finished early) unchanged.
inline qt_status check(const char* call, qt_status status) {
  if (status < 0) throw Error(call, status);
  return status;
}

/// Releases any qwentts object; NULL is fine.
struct Deleter {
  void operator()(void* object) const noexcept { qt_free(object); }
};

/// Throws unless the loaded library implements the ABI of the header we were compiled with.
inline void require_abi() {
  if (qt_abi_version() != QT_ABI_VERSION) {
    throw std::runtime_error("qwentts: the loaded library's ABI (" + std::to_string(qt_abi_version()) +
                             ") differs from qwentts.h (" + std::to_string(QT_ABI_VERSION) + ")");
  }
}

/// Version of the loaded library.
inline std::string version() { return qt_version(); }

/// CUDA devices the loaded library can use (Model::load devices 0 .. count-1); 0 when it was
/// built without CUDA or no NVIDIA driver can be loaded.
inline int32_t device_count() { return qt_device_count(); }

/// qt_model_info with the strings copied out.
struct ModelInfo {
  int32_t kind = 0;  // QT_MODEL_*
  std::string size_label;
  int32_t sample_rate = 0;
  float frame_rate = 0.0f;
  int32_t n_codebooks = 0;
  int32_t talker_hidden_size = 0;
  int32_t talker_layers = 0;
  int32_t code_predictor_layers = 0;
  bool can_clone = false;
  int32_t device = QT_DEVICE_CPU;
  uint64_t tensor_count = 0;
  uint64_t weight_bytes = 0;
  std::vector<std::string> languages;
  std::vector<std::string> speakers;
};

/// qt_voice_info with the strings copied out.
struct VoiceInfo {
  int32_t kind = 0;  // QT_VOICE_*
  size_t embedding_dim = 0;
  size_t ref_frames = 0;
  std::optional<std::string> ref_text;
  std::optional<std::string> speaker;
  std::optional<std::string> description;  // QT_VOICE_DESIGN
};

/// A voice (qt_voice): a cloned speaker, a built-in one or one described in words. Immutable;
/// share it across threads.
class Voice {
 public:
  VoiceInfo info() const {
    qt_voice_info raw{};
    raw.struct_size = sizeof raw;
    check("qt_voice_get_info", qt_voice_get_info(get(), &raw));
    VoiceInfo out;
    out.kind = raw.kind;
    out.embedding_dim = raw.embedding_dim;
    out.ref_frames = raw.ref_frames;
    if (raw.ref_text != nullptr) out.ref_text = raw.ref_text;
    if (raw.speaker != nullptr) out.speaker = raw.speaker;
    if (raw.description != nullptr) out.description = raw.description;
    return out;
  }

  /// The speaker x-vector (cloned voices); qt_voice_from_embedding / Model::voice_from_embedding
  /// rebuild an x-vector-only voice from it.
  std::vector<float> embedding() const {
    size_t n = 0;
    expect_size("qt_voice_embedding", qt_voice_embedding(get(), nullptr, 0, &n));
    std::vector<float> out(n);
    check("qt_voice_embedding", qt_voice_embedding(get(), out.data(), out.size(), &n));
    out.resize(n);
    return out;
  }

  /// The bytes Model::deserialize_voice reads back.
  std::vector<uint8_t> serialize() const {
    size_t n = 0;
    expect_size("qt_voice_serialize", qt_voice_serialize(get(), nullptr, 0, &n));
    std::vector<uint8_t> out(n);
    check("qt_voice_serialize", qt_voice_serialize(get(), out.data(), out.size(), &n));
    out.resize(n);
    return out;
  }

  void save(const std::string& path) const { check("qt_voice_save", qt_voice_save(get(), path.c_str())); }

  /// The C handle, for calls this wrapper does not cover. Still owned by this Voice.
  const qt_voice* get() const noexcept { return handle_.get(); }

 private:
  friend class Model;
  explicit Voice(qt_voice* raw) : handle_(raw) {}

  // The size query of the two-call pattern answers BUFFER_TOO_SMALL; anything else is an error.
  static void expect_size(const char* call, qt_status status) {
    if (status != QT_STATUS_BUFFER_TOO_SMALL) check(call, status);
  }

  std::unique_ptr<qt_voice, Deleter> handle_;
};

/// Generated speech (qt_audio): mono float samples owned by the object.
class Audio {
 public:
  const float* samples() const noexcept { return info_.samples; }
  size_t size() const noexcept { return info_.n_samples; }
  std::vector<float> to_vector() const { return std::vector<float>(samples(), samples() + size()); }
  /// Everything qt_audio_get_info reports: rate, frames, finish (QT_FINISH_*), timings.
  const qt_audio_info& info() const noexcept { return info_; }
  /// True when a callback asked to stop (qt_generate returned QT_STATUS_ABORTED).
  bool aborted() const noexcept { return info_.finish == QT_FINISH_ABORTED; }

  /// 16-bit PCM mono WAV at the audio's sample rate.
  void write_wav(const std::string& path) const {
    check("qt_audio_write_wav", qt_audio_write_wav(get(), path.c_str()));
  }

  const qt_audio* get() const noexcept { return handle_.get(); }

 private:
  friend class Model;
  explicit Audio(qt_audio* raw) : handle_(raw), info_{} {
    info_.struct_size = sizeof info_;
    check("qt_audio_get_info", qt_audio_get_info(raw, &info_));
  }

  std::unique_ptr<qt_audio, Deleter> handle_;
  qt_audio_info info_;
};

/// qt_gen_params with owned strings. Start from Model::gen_params() (the model's defaults).
struct GenParams {
  qt_gen_params raw{};               // every numeric field (do_sample, temperature, seed, ...)
  std::string language = "auto";     // copied into raw.language for each call
  std::optional<std::string> instruct;
  /// Polled before the prefill, during it and after every frame on the generating thread; return true to stop. Must not throw
  /// (an exception stops generation and is rethrown from Model::generate).
  std::function<bool()> should_abort;
};

/// Receives each chunk on the generating thread; return false to stop. c.samples are valid
/// only during the call.
using ChunkHandler = std::function<bool(const qt_chunk&)>;

/// A generation on a background thread read without blocking (qt_stream): call read() from
/// the engine's real-time audio callback. Destroying it cancels and waits for its thread.
class Stream {
 public:
  /// What one read() did: samples copied, and whether nothing will ever come again.
  struct Read {
    size_t samples = 0;
    bool ended = false;
  };

  /// Copies up to `cap` ready samples to `out`. Never blocks, allocates or throws on the
  /// audio path (a misuse, such as a second concurrent reader, returns {0, false} and sets
  /// qt_last_error()); one reader at a time.
  Read read(float* out, size_t cap) noexcept {
    size_t n = 0;
    int32_t ended = 0;
    if (qt_stream_read(handle_.get(), out, cap, &n, &ended) != QT_STATUS_OK) return {};
    return {n, ended != 0};
  }

  /// Asks the generation to stop within a frame; what was made stays readable.
  void cancel() { check("qt_stream_cancel", qt_stream_cancel(handle_.get())); }

  /// State (QT_STREAM_*), rate, counters. Takes a lock: not for the audio thread.
  qt_stream_info info() const {
    qt_stream_info i{};
    i.struct_size = sizeof i;
    check("qt_stream_get_info", qt_stream_get_info(handle_.get(), &i));
    return i;
  }

  /// Throws the generation's failure as an Error; returns QT_STATUS_OK or QT_STATUS_ABORTED.
  qt_status result() const { return check("qt_stream_result", qt_stream_result(handle_.get())); }

  qt_stream* get() const noexcept { return handle_.get(); }

 private:
  friend class Model;
  explicit Stream(qt_stream* raw) : handle_(raw) {}
  std::unique_ptr<qt_stream, Deleter> handle_;
};

/// A loaded checkpoint (qt_model).
class Model {
 public:
  /// qt_load on `device` (QT_DEVICE_CPU or a CUDA ordinal) with `engine` (QT_ENGINE_*).
  static Model load(const std::string& dir, int32_t device = QT_DEVICE_CPU, int32_t engine = QT_ENGINE_AUTO) {
    qt_model_params params;
    check("qt_model_params_default", qt_model_params_default(&params, sizeof params));
    params.device = device;
    params.engine = engine;
    return load(dir, params);
  }

  /// qt_load with every option: start from qt_model_params_default, e.g. to size the voice
  /// prefix cache (`prefix_cache_mb`).
  static Model load(const std::string& dir, const qt_model_params& params) {
    qt_model* raw = nullptr;
    check("qt_load", qt_load(dir.c_str(), &params, &raw));
    return Model(raw);
  }

  ModelInfo info() const {
    qt_model_info raw{};
    raw.struct_size = sizeof raw;
    check("qt_model_get_info", qt_model_get_info(get(), &raw));
    ModelInfo out;
    out.kind = raw.kind;
    out.size_label = raw.size_label;
    out.sample_rate = raw.sample_rate;
    out.frame_rate = raw.frame_rate;
    out.n_codebooks = raw.n_codebooks;
    out.talker_hidden_size = raw.talker_hidden_size;
    out.talker_layers = raw.talker_layers;
    out.code_predictor_layers = raw.code_predictor_layers;
    out.can_clone = raw.can_clone != 0;
    out.device = raw.device;
    out.tensor_count = raw.tensor_count;
    out.weight_bytes = raw.weight_bytes;
    out.languages = names("qt_model_language", qt_model_language, raw.n_languages);
    out.speakers = names("qt_model_speaker", qt_model_speaker, raw.n_speakers);
    return out;
  }

  /// Clones a voice from interleaved float PCM (any rate, 1..64 channels). With a transcript
  /// of the recording the clone is in-context (closest imitation); without, x-vector only.
  Voice clone_voice(const std::vector<float>& samples, int32_t channels, int32_t sample_rate,
                    const std::optional<std::string>& ref_text = std::nullopt) const {
    qt_voice* raw = nullptr;
    check("qt_clone_voice", qt_clone_voice(get(), samples.data(), samples.size(), channels, sample_rate,
                                           ref_text ? ref_text->c_str() : nullptr, nullptr, &raw));
    return Voice(raw);
  }

  /// Clones a voice from an audio file (WAV, FLAC, Ogg Vorbis, MP3).
  Voice clone_voice_from_file(const std::string& path, const std::optional<std::string>& ref_text = std::nullopt) const {
    qt_voice* raw = nullptr;
    check("qt_clone_voice_from_file",
          qt_clone_voice_from_file(get(), path.c_str(), ref_text ? ref_text->c_str() : nullptr, nullptr, &raw));
    return Voice(raw);
  }

  Voice voice_from_embedding(const std::vector<float>& embedding) const {
    qt_voice* raw = nullptr;
    check("qt_voice_from_embedding", qt_voice_from_embedding(get(), embedding.data(), embedding.size(), &raw));
    return Voice(raw);
  }

  /// A built-in speaker of a CustomVoice model (names: info().speakers).
  Voice voice_from_speaker(const std::string& name) const {
    qt_voice* raw = nullptr;
    check("qt_voice_from_speaker", qt_voice_from_speaker(get(), name.c_str(), &raw));
    return Voice(raw);
  }

  /// A voice described in words, for a VoiceDesign model (qt_voice_from_description).
  Voice voice_from_description(const std::string& description) const {
    qt_voice* raw = nullptr;
    check("qt_voice_from_description", qt_voice_from_description(get(), description.c_str(), &raw));
    return Voice(raw);
  }

  Voice deserialize_voice(const std::vector<uint8_t>& bytes) const {
    qt_voice* raw = nullptr;
    check("qt_voice_deserialize", qt_voice_deserialize(get(), bytes.data(), bytes.size(), &raw));
    return Voice(raw);
  }

  Voice load_voice(const std::string& path) const {
    qt_voice* raw = nullptr;
    check("qt_voice_load", qt_voice_load(get(), path.c_str(), &raw));
    return Voice(raw);
  }

  /// This model's generation defaults.
  GenParams gen_params() const {
    GenParams p;
    check("qt_gen_params_default", qt_gen_params_default(get(), &p.raw, sizeof p.raw));
    return p;
  }

  /// Speaks `text` in `voice`. Blocking; many threads may generate on one model at once.
  /// Returns the whole utterance (aborted() tells whether a callback stopped it); throws Error
  /// on failure, or rethrows what a callback threw.
  Audio generate(const Voice& voice, const std::string& text, const GenParams& params,
                 const ChunkHandler& on_chunk = nullptr) const {
    Hooks hooks{&on_chunk, &params.should_abort, nullptr};
    qt_gen_params raw = params.raw;
    raw.struct_size = sizeof raw;
    raw.language = params.language.c_str();
    raw.instruct = params.instruct ? params.instruct->c_str() : nullptr;
    raw.abort_cb = params.should_abort ? &Hooks::abort : nullptr;
    raw.abort_user_data = &hooks;
    qt_audio* out = nullptr;
    qt_status status = qt_generate(get(), voice.get(), text.c_str(), &raw, on_chunk ? &Hooks::chunk : nullptr,
                                   &hooks, &out);
    if (status < 0) {
      Error error("qt_generate", status);  // reads qt_last_error() before anything else
      if (hooks.error) std::rethrow_exception(hooks.error);
      throw error;
    }
    Audio audio(out);
    if (hooks.error) std::rethrow_exception(hooks.error);
    return audio;
  }

  /// Starts speaking `text` in `voice` on a background thread (qt_stream_start); read the
  /// audio from the engine's callback. `capacity`: samples the ring holds (0: two seconds).
  /// params.should_abort must be empty: stop a stream with Stream::cancel.
  Stream stream(const Voice& voice, const std::string& text, const GenParams& params, size_t capacity = 0) const {
    if (params.should_abort) throw std::invalid_argument("a stream is stopped with Stream::cancel, not should_abort");
    qt_gen_params raw = params.raw;
    raw.struct_size = sizeof raw;
    raw.language = params.language.c_str();
    raw.instruct = params.instruct ? params.instruct->c_str() : nullptr;
    raw.abort_cb = nullptr;
    raw.abort_user_data = nullptr;
    qt_stream* out = nullptr;
    check("qt_stream_start", qt_stream_start(get(), voice.get(), text.c_str(), &raw, capacity, &out));
    return Stream(out);
  }

  /// The C handle, for calls this wrapper does not cover. Still owned by this Model.
  const qt_model* get() const noexcept { return handle_.get(); }

 private:
  explicit Model(qt_model* raw) : handle_(raw) {}

  // The C callbacks: no exception may cross into the library, so one is caught, kept, and
  // turned into QT_STOP; generate rethrows it after qt_generate has returned.
  struct Hooks {
    const ChunkHandler* on_chunk;
    const std::function<bool()>* should_abort;
    std::exception_ptr error;

    static int32_t chunk(const qt_chunk* c, void* user_data) noexcept {
      auto* self = static_cast<Hooks*>(user_data);
      try {
        return (*self->on_chunk)(*c) ? QT_CONTINUE : QT_STOP;
      } catch (...) {
        self->error = std::current_exception();
        return QT_STOP;
      }
    }

    static int32_t abort(void* user_data) noexcept {
      auto* self = static_cast<Hooks*>(user_data);
      try {
        return (*self->should_abort)() ? QT_STOP : QT_CONTINUE;
      } catch (...) {
        self->error = std::current_exception();
        return QT_STOP;
      }
    }
  };

  using NameFn = qt_status (*)(const qt_model*, size_t, const char**);
  std::vector<std::string> names(const char* call, NameFn fn, size_t count) const {
    std::vector<std::string> out;
    out.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      const char* name = nullptr;
      check(call, fn(get(), i, &name));
      out.emplace_back(name);
    }
    return out;
  }

  std::unique_ptr<qt_model, Deleter> handle_;
};

}  // namespace qwentts

#endif  // QWENTTS_HPP
