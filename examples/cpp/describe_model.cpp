// describe_model.cpp: load a Qwen3-TTS checkpoint through the C++ wrapper and print what it is.
//
// Build and run from the repository root (after `cargo build`):
//   c++ -std=c++17 -Wall -Wextra -Iinclude -Ibindings/cpp examples/cpp/describe_model.cpp
//       -Ltarget/debug -lqwentts -Wl,-rpath,"$PWD/target/debug" -o describe_model_cpp   (one line)
//   ./describe_model_cpp tests/fixtures/tiny-base
#include <iostream>
#include <string>
#include <vector>

#include "qwentts.hpp"

static const char* kind_name(int32_t kind) {
  switch (kind) {
    case QT_MODEL_BASE: return "base";
    case QT_MODEL_CUSTOM_VOICE: return "custom-voice";
    case QT_MODEL_VOICE_DESIGN: return "voice-design";
    default: return "unknown";
  }
}

static void print_names(const char* label, const std::vector<std::string>& names) {
  std::cout << label << ':';
  if (names.empty()) std::cout << " (none)";
  for (size_t i = 0; i < names.size(); ++i) std::cout << (i == 0 ? " " : ", ") << names[i];
  std::cout << '\n';
}

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "tests/fixtures/tiny-base";
  try {
    qwentts::require_abi();
    std::cout << "qwentts " << qwentts::version() << " (ABI " << qt_abi_version() << ")\n";

    const qwentts::Model model = qwentts::Model::load(dir);  // freed by its destructor
    const qwentts::ModelInfo info = model.info();

    std::cout << "model: " << dir << '\n'
              << "kind: " << kind_name(info.kind) << '\n'
              << "size: " << info.size_label << '\n'
              << "sample rate: " << info.sample_rate << " Hz\n"
              << "frame rate: " << info.frame_rate << " Hz\n"
              << "codebooks: " << info.n_codebooks << '\n'
              << "talker: " << info.talker_layers << " layers, hidden " << info.talker_hidden_size << '\n'
              << "code predictor: " << info.code_predictor_layers << " layers\n"
              << "can clone: " << (info.can_clone ? "yes" : "no") << '\n'
              << "weights: " << info.tensor_count << " tensors, " << info.weight_bytes << " bytes\n";
    print_names("languages", info.languages);
    print_names("speakers", info.speakers);
    return 0;
  } catch (const qwentts::Error& e) {
    std::cerr << e.what() << '\n';  // e.g. "QT_STATUS_NOT_FOUND: qt_load: model directory /x not found"
    return 1;
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 1;
  }
}
