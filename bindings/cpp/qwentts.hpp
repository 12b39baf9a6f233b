// qwentts.hpp: header-only C++17 wrapper over the qwentts C API (include/qwentts.h).
//
// Ownership only, no logic: every handle is a std::unique_ptr whose deleter calls qt_free, and
// every failing status becomes a qwentts::Error carrying the status, its name and
// qt_last_error(). Use it with -I include -I bindings/cpp and link libqwentts.
//
//   auto model = qwentts::Model::load("tests/fixtures/tiny-base");
//   qwentts::ModelInfo info = model.info();
//
// Threads: a Model may be used from many threads at once (share it by reference or in a
// std::shared_ptr); it is movable, not copyable.
#ifndef QWENTTS_HPP
#define QWENTTS_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
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

/// A loaded checkpoint (qt_model).
class Model {
 public:
  /// qt_load with default params on `device` (QT_DEVICE_CPU is the only backend today).
  static Model load(const std::string& dir, int32_t device = QT_DEVICE_CPU) {
    qt_model_params params;
    check("qt_model_params_default", qt_model_params_default(&params, sizeof params));
    params.device = device;
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

  /// The C handle, for calls this wrapper does not cover. Still owned by this Model.
  const qt_model* get() const noexcept { return handle_.get(); }

 private:
  explicit Model(qt_model* raw) : handle_(raw) {}

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
