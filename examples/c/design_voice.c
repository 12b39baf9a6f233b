/* design_voice.c: describe a voice in words and speak a sentence in it (VoiceDesign models),
 * then write the result as a WAV file.
 *
 * Build and run from the repository root (after `cargo build`):
 *   cc -std=c11 -Wall -Wextra -Iinclude examples/c/design_voice.c \
 *      -Ltarget/debug -lqwentts -Wl,-rpath,"$PWD/target/debug" -o design_voice
 *   ./design_voice MODEL_DIR [OUT.wav [DESCRIPTION [TEXT]]]
 * MODEL_DIR is a VoiceDesign checkpoint (Qwen3-TTS-12Hz-1.7B-VoiceDesign); other kinds are
 * refused with QT_STATUS_UNSUPPORTED. The output is design_voice.wav by default.
 */
#include <stdio.h>

#include "qwentts.h"

/* Prints why `call` failed. Read qt_last_error() before any other qt_ call. */
static int report(const char *call, qt_status status) {
  fprintf(stderr, "%s failed: %s\n  %s\n", call, qt_status_str(status), qt_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL_DIR [OUT.wav [DESCRIPTION [TEXT]]]\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  const char *out_wav = argc > 2 ? argv[2] : "design_voice.wav";
  const char *description =
      argc > 3 ? argv[3] : "A warm, low-pitched male voice, speaking slowly and calmly, like a narrator.";
  const char *text = argc > 4 ? argv[4] : "The old lighthouse keeper lit the lamp once more.";

  if (qt_abi_version() != QT_ABI_VERSION) {
    fprintf(stderr, "qwentts ABI %u loaded, header has %u\n", qt_abi_version(), QT_ABI_VERSION);
    return 1;
  }

  int rc = 1;
  qt_model *model = NULL;
  qt_voice *voice = NULL;
  qt_audio *audio = NULL;
  qt_status status = qt_load(dir, NULL, &model);
  if (status != QT_STATUS_OK) {
    rc = report("qt_load", status);
    goto done;
  }

  /* The description is part of every prompt spoken with this voice: it sets timbre, pace and
   * mood. A voice can be saved (qt_voice_save) and reused like a cloned one. */
  status = qt_voice_from_description(model, description, &voice);
  if (status != QT_STATUS_OK) {
    rc = report("qt_voice_from_description", status);
    goto done;
  }
  qt_voice_info vinfo = {.struct_size = sizeof vinfo};
  status = qt_voice_get_info(voice, &vinfo);
  if (status != QT_STATUS_OK) {
    rc = report("qt_voice_get_info", status);
    goto done;
  }
  /* A library older than this header fills fewer fields: struct_size says which. */
  if (vinfo.kind == QT_VOICE_DESIGN && vinfo.struct_size >= sizeof vinfo && vinfo.description != NULL)
    printf("voice: %s\n", vinfo.description);

  qt_gen_params params;
  status = qt_gen_params_default(model, &params, sizeof params);
  if (status != QT_STATUS_OK) {
    rc = report("qt_gen_params_default", status);
    goto done;
  }
  params.language = "English";
  params.seed = 7; /* reproducible; QT_SEED_RANDOM for a fresh take each time */

  status = qt_generate(model, voice, text, &params, NULL, NULL, &audio);
  if (status != QT_STATUS_OK) {
    rc = report("qt_generate", status);
    goto done;
  }
  qt_audio_info info = {.struct_size = sizeof info};
  status = qt_audio_get_info(audio, &info);
  if (status != QT_STATUS_OK) {
    rc = report("qt_audio_get_info", status);
    goto done;
  }
  status = qt_audio_write_wav(audio, out_wav);
  if (status != QT_STATUS_OK) {
    rc = report("qt_audio_write_wav", status);
    goto done;
  }
  printf("wrote %s: %zu samples at %d Hz, %d frames, ended by %s\n", out_wav, info.n_samples, info.sample_rate,
         info.n_frames, info.finish == QT_FINISH_EOS ? "end of speech" : "the frame limit");
  rc = 0;

done: /* qt_free(NULL) is a no-op, so every path frees the same way, in reverse order */
  qt_free(audio);
  qt_free(voice);
  qt_free(model);
  return rc;
}
