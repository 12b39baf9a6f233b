// clone_and_speak.cpp: clone a voice from a reference recording and its transcript, speak a
// sentence in it (streaming the audio through a lambda), and write the result as a WAV file,
// through the C++ wrapper (errors are exceptions; objects free themselves).
//
// Build and run from the repository root (after `cargo build`):
//   c++ -std=c++17 -Wall -Wextra -Iinclude -Ibindings/cpp examples/cpp/clone_and_speak.cpp
//       -Ltarget/debug -lqwentts -Wl,-rpath,"$PWD/target/debug" -o clone_and_speak_cpp   (one line)
//   ./clone_and_speak_cpp [MODEL_DIR [REF.wav [REF.txt [OUT.wav [TEXT]]]]]
// The defaults use the tiny test checkpoint (its "speech" is noise; use a released Base
// checkpoint for real speech) and write clone_and_speak_cpp.wav.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "qwentts.hpp"

static std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read the transcript " + path);
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "tests/fixtures/tiny-base";
  const std::string ref_wav = argc > 2 ? argv[2] : "tests/fixtures/audio/ref_24k.wav";
  const std::string ref_txt = argc > 3 ? argv[3] : "tests/fixtures/audio/ref_24k.txt";
  const std::string out_wav = argc > 4 ? argv[4] : "clone_and_speak_cpp.wav";
  const std::string text = argc > 5 ? argv[5] : "Hello from qwentts.";
  try {
    qwentts::require_abi();
    auto model = qwentts::Model::load(dir);
    // With the transcript the clone is in-context (closest imitation); without, x-vector only.
    qwentts::Voice voice = model.clone_voice_from_file(ref_wav, read_text(ref_txt));

    qwentts::GenParams params = model.gen_params();
    params.language = "English";
    params.raw.seed = 42;  // reproducible; QT_SEED_RANDOM for a fresh take each time

    // Runs on this thread with each piece of audio; a game would queue c.samples for playback.
    int chunks = 0;
    qwentts::Audio audio = model.generate(voice, text, params, [&chunks](const qt_chunk& c) {
      if (c.index == 0) std::cout << "first chunk: " << c.n_samples << " samples\n";
      ++chunks;
      return true;  // false would stop generation (audio.aborted() is then true)
    });

    audio.write_wav(out_wav);
    const qt_audio_info& info = audio.info();
    std::cout << "wrote " << out_wav << ": " << info.n_samples << " samples at " << info.sample_rate << " Hz in "
              << chunks << " chunks, " << info.n_frames << " frames, ended by "
              << (info.finish == QT_FINISH_EOS ? "end of speech" : "the frame limit") << '\n';
    return 0;  // audio, voice and model are freed here, in reverse order
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';  // "QT_STATUS_NOT_FOUND: qt_load: ..."
    return 1;
  }
}
