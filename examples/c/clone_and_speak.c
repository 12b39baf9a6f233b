/* clone_and_speak.c: clone a voice from a reference recording and its transcript, speak a
 * sentence in it (streaming the audio through a callback), and write the result as a WAV file.
 *
 * Build and run from the repository root (after `cargo build`):
 *   cc -std=c11 -Wall -Wextra -Iinclude examples/c/clone_and_speak.c \
 *      -Ltarget/debug -lqwentts -Wl,-rpath,"$PWD/target/debug" -o clone_and_speak
 *   ./clone_and_speak [MODEL_DIR [REF.wav [REF.txt [OUT.wav [TEXT]]]]]
 * The defaults use the tiny test checkpoint (its "speech" is noise; use a released Base
 * checkpoint for real speech) and write clone_and_speak.wav.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwentts.h"

/* Prints why `call` failed. Read qt_last_error() before any other qt_ call. */
static int report(const char *call, qt_status status) {
  fprintf(stderr, "%s failed: %s\n  %s\n", call, qt_status_str(status), qt_last_error());
  return 1;
}

/* Reads a whole text file (the reference transcript), without the trailing newline. */
static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  char *text = calloc(1, 65536);
  size_t n = text ? fread(text, 1, 65535, f) : 0;
  fclose(f);
  while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = '\0';
  return text;
}

/* Called on this thread with each piece of audio while it is generated. A game would queue
 * the samples for playback here; they are only valid during the call. */
static int32_t on_chunk(const qt_chunk *chunk, void *user_data) {
  int *chunks = user_data;
  if (chunk->index == 0) printf("first chunk: %zu samples\n", chunk->n_samples);
  ++*chunks;
  return QT_CONTINUE; /* QT_STOP would end generation with QT_STATUS_ABORTED */
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "tests/fixtures/tiny-base";
  const char *ref_wav = argc > 2 ? argv[2] : "tests/fixtures/audio/ref_24k.wav";
  const char *ref_txt = argc > 3 ? argv[3] : "tests/fixtures/audio/ref_24k.txt";
  const char *out_wav = argc > 4 ? argv[4] : "clone_and_speak.wav";
  const char *text = argc > 5 ? argv[5] : "Hello from qwentts.";

  if (qt_abi_version() != QT_ABI_VERSION) {
    fprintf(stderr, "qwentts ABI %u loaded, header has %u\n", qt_abi_version(), QT_ABI_VERSION);
    return 1;
  }
  char *transcript = read_text(ref_txt);
  if (transcript == NULL) {
    fprintf(stderr, "cannot read the transcript %s\n", ref_txt);
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

  /* With the transcript, the clone is in-context (closest imitation); NULL: x-vector only. */
  status = qt_clone_voice_from_file(model, ref_wav, transcript, NULL, &voice);
  if (status != QT_STATUS_OK) {
    rc = report("qt_clone_voice_from_file", status);
    goto done;
  }

  qt_gen_params params;
  status = qt_gen_params_default(model, &params, sizeof params);
  if (status != QT_STATUS_OK) {
    rc = report("qt_gen_params_default", status);
    goto done;
  }
  params.language = "English";
  params.seed = 42; /* reproducible; QT_SEED_RANDOM for a fresh take each time */

  int chunks = 0;
  status = qt_generate(model, voice, text, &params, on_chunk, &chunks, &audio);
  if (status != QT_STATUS_OK) { /* QT_STATUS_ABORTED cannot happen: on_chunk never stops */
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
  printf("wrote %s: %zu samples at %d Hz in %d chunks, %d frames, ended by %s\n", out_wav, info.n_samples,
         info.sample_rate, chunks, info.n_frames, info.finish == QT_FINISH_EOS ? "end of speech" : "the frame limit");
  rc = 0;

done: /* qt_free(NULL) is a no-op, so every path frees the same way, in reverse order */
  qt_free(audio);
  qt_free(voice);
  qt_free(model);
  free(transcript);
  return rc;
}
