/* generate_contract.c: voices and generation as a C program sees them: the golden greedy run
 * (its samples written for tests/c_consumers.rs to compare with the official waveform), the
 * chunk callback and abort hook, the two-call pattern, cloning, persistence, and bad input of
 * every kind (NULLs, struct sizes, enum values, invalid UTF-8, objects of the wrong type or
 * model), streams read to the end, cancelled and freed while running, with every object freed
 * at the end.
 *
 * Built and run by tests/c_consumers.rs (also under valgrind when installed):
 *   cc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude tests/c/generate_contract.c \
 *      -Ltarget/debug/deps -lqwentts -Wl,-rpath,"$PWD/target/debug/deps" -o generate_contract
 *   ./generate_contract tests/fixtures/tiny-base tests/fixtures/tiny-customvoice \
 *      EMBEDDING.f32 "TEXT" OUT_PREFIX tests/fixtures/audio/ref_24k.wav "TRANSCRIPT"
 * EMBEDDING.f32 holds the golden x-vector as raw little-endian floats. Writes OUT_PREFIX.f32
 * (the generated samples, raw floats) and OUT_PREFIX.wav, prints "generate_contract: N checks
 * passed" and exits 0, or lists each failed check and exits 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qwentts.h"

static int checks, failures;

#define CHECK(cond)                                                                          \
  do {                                                                                       \
    checks++;                                                                                \
    if (!(cond)) {                                                                           \
      failures++;                                                                            \
      fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: \"%s\"\n", __FILE__, __LINE__, \
              #cond, qt_last_error());                                                       \
    }                                                                                        \
  } while (0)

static int last_error_has(const char *text) { return strstr(qt_last_error(), text) != NULL; }
static int no_last_error(void) { return qt_last_error()[0] == '\0'; }

/* Stops the program when a call that must work does not. */
static void must(const char *call, qt_status st) {
  if (st != QT_STATUS_OK) {
    fprintf(stderr, "%s failed: %s: %s\n", call, qt_status_str(st), qt_last_error());
    exit(1);
  }
}

/* ---- chunk collection ---------------------------------------------------------------- */

typedef struct {
  float *samples;
  size_t n, cap;
  int chunks, last_seen, broken; /* broken: a chunk out of sequence */
  int frames;
  int stop_after;                /* return QT_STOP after this many chunks (0: never) */
  int32_t bogus;                 /* nonzero: return this instead */
} collector;

static int32_t on_chunk(const qt_chunk *chunk, void *user_data) {
  collector *c = user_data;
  if (chunk->struct_size < sizeof *chunk || chunk->index != c->chunks || chunk->first_sample != c->n ||
      chunk->first_frame != c->frames || chunk->sample_rate != 24000 || c->last_seen ||
      (chunk->n_samples > 0 && chunk->samples == NULL))
    c->broken = 1;
  if (c->n + chunk->n_samples > c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 4096;
    while (cap < c->n + chunk->n_samples) cap *= 2;
    float *grown = realloc(c->samples, cap * sizeof *grown);
    if (grown == NULL) return QT_STOP;
    c->samples = grown;
    c->cap = cap;
  }
  if (chunk->n_samples > 0) memcpy(c->samples + c->n, chunk->samples, chunk->n_samples * sizeof(float));
  c->n += chunk->n_samples;
  c->frames += chunk->n_frames;
  c->chunks++;
  c->last_seen = chunk->is_last;
  if (c->bogus) return c->bogus;
  return c->stop_after > 0 && c->chunks >= c->stop_after ? QT_STOP : QT_CONTINUE;
}

typedef struct {
  int polls, stop_at;
} poll_counter;

static int32_t abort_at_poll(void *user_data) {
  poll_counter *c = user_data;
  return ++c->polls >= c->stop_at ? QT_STOP : QT_CONTINUE;
}

/* ---- files --------------------------------------------------------------------------- */

static float *read_floats(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  long bytes = ftell(f);
  fseek(f, 0, SEEK_SET);
  float *data = malloc(bytes > 0 ? (size_t)bytes : 1);
  *n = bytes > 0 ? (size_t)bytes / sizeof(float) : 0;
  if (data != NULL && fread(data, sizeof(float), *n, f) != *n) {
    free(data);
    data = NULL;
  }
  fclose(f);
  return data;
}

static int write_floats(const char *path, const float *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return 0;
  int ok = fwrite(data, sizeof(float), n, f) == n;
  return fclose(f) == 0 && ok;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: %s BASE_DIR CUSTOMVOICE_DIR EMBEDDING.f32 TEXT OUT_PREFIX REF.wav REF_TEXT\n", argv[0]);
    return 2;
  }
  const char *text = argv[4], *prefix = argv[5], *ref_wav = argv[6], *ref_text = argv[7];
  char path[4096];
  CHECK(qt_abi_version() == QT_ABI_VERSION);

  qt_model *base = NULL, *custom = NULL;
  must("qt_load(base)", qt_load(argv[1], NULL, &base));
  must("qt_load(customvoice)", qt_load(argv[2], NULL, &custom));
  qt_model_info minfo = {.struct_size = sizeof minfo};
  must("qt_model_get_info", qt_model_get_info(base, &minfo));

  /* ---- the golden voice: an x-vector read from a file ---- */
  size_t dim = 0;
  float *embedding = read_floats(argv[3], &dim);
  if (embedding == NULL || dim != (size_t)minfo.talker_hidden_size) {
    fprintf(stderr, "cannot read %zu floats from %s\n", (size_t)minfo.talker_hidden_size, argv[3]);
    return 1;
  }
  qt_voice *voice = NULL, *untouched_voice = (qt_voice *)&checks;
  qt_voice *out_voice = untouched_voice;
  CHECK(qt_voice_from_embedding(base, embedding, dim - 1, &out_voice) == QT_STATUS_VOICE_MISMATCH);
  CHECK(qt_voice_from_embedding(base, NULL, dim, &out_voice) == QT_STATUS_NULL_ARGUMENT);
  CHECK(qt_voice_from_embedding(custom, embedding, dim, &out_voice) == QT_STATUS_UNSUPPORTED);
  CHECK(out_voice == untouched_voice);
  must("qt_voice_from_embedding", qt_voice_from_embedding(base, embedding, dim, &voice));
  qt_voice_info vinfo = {.struct_size = sizeof vinfo};
  CHECK(qt_voice_get_info(voice, &vinfo) == QT_STATUS_OK && vinfo.kind == QT_VOICE_XVECTOR);
  CHECK(vinfo.embedding_dim == dim && vinfo.ref_frames == 0 && vinfo.ref_text == NULL);

  /* Two-call pattern on the x-vector: size query, then the copy. */
  size_t needed = 0;
  CHECK(qt_voice_embedding(voice, NULL, 0, &needed) == QT_STATUS_BUFFER_TOO_SMALL && needed == dim);
  float *copy = calloc(dim, sizeof *copy);
  size_t written = 0;
  CHECK(copy != NULL && qt_voice_embedding(voice, copy, dim, &written) == QT_STATUS_OK && written == dim);
  CHECK(copy != NULL && memcmp(copy, embedding, dim * sizeof(float)) == 0);
  free(copy);

  /* ---- the golden run: greedy, English, at most 23 frames ---- */
  qt_gen_params p;
  must("qt_gen_params_default", qt_gen_params_default(base, &p, sizeof p));
  CHECK(p.struct_size == sizeof p && strcmp(p.language, "auto") == 0 && p.seed == QT_SEED_RANDOM);
  CHECK(p.chunk_frames == 4 && p.first_chunk_frames == 1 && p.reserved == 0);
  p.do_sample = 0;
  p.sub_do_sample = 0;
  p.language = "English";
  p.max_frames = 23;
  collector got = {0};
  qt_audio *audio = NULL;
  must("qt_generate", qt_generate(base, voice, text, &p, on_chunk, &got, &audio));
  CHECK(no_last_error());

  qt_audio_info info = {.struct_size = sizeof info};
  must("qt_audio_get_info", qt_audio_get_info(audio, &info));
  const float *samples = NULL;
  size_t n_samples = 0;
  must("qt_audio_samples", qt_audio_samples(audio, &samples, &n_samples));
  CHECK(info.struct_size == sizeof info && info.finish == QT_FINISH_EOS && info.n_frames == 18);
  CHECK(info.sample_rate == 24000 && info.channels == 1 && info.chunk_offset == 0);
  CHECK(info.samples == samples && info.n_samples == n_samples && n_samples == 18 * 1920);
  CHECK(info.total_ms > 0 && info.prefill_ms > 0 && info.rtf > 0);
  /* The chunks, in order and contiguous, are the returned audio: 1, 2, 4, 4, 4 and 3 frames. */
  CHECK(!got.broken && got.last_seen && got.chunks == 6 && got.frames == info.n_frames);
  CHECK(got.n == n_samples && memcmp(got.samples, samples, n_samples * sizeof(float)) == 0);
  snprintf(path, sizeof path, "%s.f32", prefix);
  CHECK(write_floats(path, samples, n_samples));
  snprintf(path, sizeof path, "%s.wav", prefix);
  CHECK(qt_audio_write_wav(audio, path) == QT_STATUS_OK);
  free(got.samples);

  /* ---- stopping ---- */
  collector stopper = {0};
  stopper.stop_after = 1;
  qt_audio *partial = NULL;
  qt_gen_params small = p;
  small.chunk_frames = 2;
  small.first_chunk_frames = 2; /* every chunk 2 frames */
  CHECK(qt_generate(base, voice, text, &small, on_chunk, &stopper, &partial) == QT_STATUS_ABORTED);
  CHECK(no_last_error() && partial != NULL && stopper.chunks == 1 && !stopper.last_seen);
  qt_audio_info pinfo = {.struct_size = sizeof pinfo};
  CHECK(qt_audio_get_info(partial, &pinfo) == QT_STATUS_OK && pinfo.finish == QT_FINISH_ABORTED);
  CHECK(pinfo.n_frames == 2);
  qt_free(partial);
  free(stopper.samples);

  /* Poll 1 comes before the prefill, one follows each of its L layers (one pass: the calls
   * above left this voice's prefix in the prefix cache), poll L + 1 + n comes after frame n:
   * stopping at poll L + 3 keeps 2 frames, at poll 2 (inside the prefill) none. */
  int layers = minfo.talker_layers;
  for (int i = 0; i < 2; ++i) {
    poll_counter counter = {0, i == 0 ? layers + 3 : 2};
    qt_gen_params hooked = p;
    hooked.abort_cb = abort_at_poll;
    hooked.abort_user_data = &counter;
    partial = NULL;
    CHECK(qt_generate(base, voice, text, &hooked, NULL, NULL, &partial) == QT_STATUS_ABORTED);
    CHECK(counter.polls == counter.stop_at);
    CHECK(qt_audio_get_info(partial, &pinfo) == QT_STATUS_OK && pinfo.n_frames == (i == 0 ? 2 : 0));
    qt_free(partial);
  }

  collector bogus = {0};
  bogus.bogus = 42;
  qt_audio *untouched_audio = (qt_audio *)&checks, *out_audio = untouched_audio;
  CHECK(qt_generate(base, voice, text, &p, on_chunk, &bogus, &out_audio) == QT_STATUS_INVALID_ARGUMENT);
  CHECK(last_error_has("returned 42") && out_audio == untouched_audio);
  free(bogus.samples);

  /* ---- bad input: a status and a message, and out_audio untouched ---- */
  CHECK(qt_generate(NULL, voice, text, &p, NULL, NULL, &out_audio) == QT_STATUS_NULL_ARGUMENT && last_error_has("model"));
  CHECK(qt_generate(base, NULL, text, &p, NULL, NULL, &out_audio) == QT_STATUS_NULL_ARGUMENT && last_error_has("voice"));
  CHECK(qt_generate(base, voice, NULL, &p, NULL, NULL, &out_audio) == QT_STATUS_NULL_ARGUMENT && last_error_has("text"));
  CHECK(qt_generate(base, voice, "caf\xe9", &p, NULL, NULL, &out_audio) == QT_STATUS_INVALID_ARGUMENT);
  CHECK(last_error_has("not valid UTF-8"));
  qt_gen_params bad = p;
  bad.struct_size = 4;
  CHECK(qt_generate(base, voice, text, &bad, NULL, NULL, &out_audio) == QT_STATUS_ABI_MISMATCH);
  CHECK(qt_gen_params_default(base, &bad, 4) == QT_STATUS_ABI_MISMATCH);
  bad = p;
  bad.do_sample = 2;
  CHECK(qt_generate(base, voice, text, &bad, NULL, NULL, &out_audio) == QT_STATUS_INVALID_ARGUMENT);
  bad = p;
  bad.non_streaming_mode = 7;
  CHECK(qt_generate(base, voice, text, &bad, NULL, NULL, &out_audio) == QT_STATUS_INVALID_ARGUMENT);
  bad = p;
  bad.max_frames = -1;
  CHECK(qt_generate(base, voice, text, &bad, NULL, NULL, &out_audio) == QT_STATUS_INVALID_ARGUMENT);
  bad = p;
  bad.language = "klingon";
  CHECK(qt_generate(base, voice, text, &bad, NULL, NULL, &out_audio) == QT_STATUS_INVALID_ARGUMENT);
  CHECK(qt_generate(base, (const qt_voice *)base, text, &p, NULL, NULL, &out_audio) == QT_STATUS_INVALID_HANDLE);
  CHECK(last_error_has("is a qt_model"));
  /* A voice of another model family, and a voice of the wrong kind. */
  CHECK(qt_generate(custom, voice, text, NULL, NULL, NULL, &out_audio) == QT_STATUS_VOICE_MISMATCH);
  qt_voice *speaker = NULL;
  must("qt_voice_from_speaker", qt_voice_from_speaker(custom, "Ryan", &speaker));
  CHECK(qt_generate(base, speaker, text, NULL, NULL, NULL, &out_audio) == QT_STATUS_UNSUPPORTED);
  CHECK(qt_voice_from_speaker(custom, "nobody", &out_voice) == QT_STATUS_INVALID_ARGUMENT);
  CHECK(out_audio == untouched_audio && out_voice == untouched_voice);

  /* ---- cloning from a file, persistence ---- */
  qt_voice *cloned = NULL;
  must("qt_clone_voice_from_file", qt_clone_voice_from_file(base, ref_wav, ref_text, NULL, &cloned));
  qt_voice_info cinfo = {.struct_size = sizeof cinfo};
  CHECK(qt_voice_get_info(cloned, &cinfo) == QT_STATUS_OK && cinfo.kind == QT_VOICE_ICL);
  CHECK(cinfo.ref_frames == 39 && strcmp(cinfo.ref_text, ref_text) == 0);
  qt_clone_params cp;
  CHECK(qt_clone_params_default(&cp, sizeof cp) == QT_STATUS_OK && cp.mode == QT_CLONE_AUTO);
  cp.mode = QT_CLONE_ICL;
  CHECK(qt_clone_voice_from_file(base, ref_wav, NULL, &cp, &out_voice) == QT_STATUS_INVALID_ARGUMENT);
  cp.mode = 9;
  CHECK(qt_clone_voice_from_file(base, ref_wav, ref_text, &cp, &out_voice) == QT_STATUS_INVALID_ARGUMENT);
  CHECK(qt_clone_voice_from_file(custom, ref_wav, ref_text, NULL, &out_voice) == QT_STATUS_UNSUPPORTED);
  CHECK(qt_clone_voice_from_file(base, "/nonexistent/ref.wav", NULL, NULL, &out_voice) == QT_STATUS_NOT_FOUND);
  CHECK(out_voice == untouched_voice);

  size_t len = 0;
  CHECK(qt_voice_serialize(cloned, NULL, 0, &len) == QT_STATUS_BUFFER_TOO_SMALL && len > 0);
  unsigned char *bytes = malloc(len);
  size_t got_len = 0;
  CHECK(bytes != NULL && qt_voice_serialize(cloned, bytes, len - 1, &got_len) == QT_STATUS_BUFFER_TOO_SMALL);
  CHECK(got_len == len && qt_voice_serialize(cloned, bytes, len, &got_len) == QT_STATUS_OK && got_len == len);
  qt_voice *restored = NULL;
  CHECK(qt_voice_deserialize(base, bytes, len, &restored) == QT_STATUS_OK && restored != NULL);
  CHECK(qt_voice_deserialize(custom, bytes, len, &out_voice) == QT_STATUS_VOICE_MISMATCH);
  bytes[len / 2] ^= 0x55;
  CHECK(qt_voice_deserialize(base, bytes, len, &out_voice) == QT_STATUS_BAD_VOICE);
  free(bytes);
  snprintf(path, sizeof path, "%s.qtvoice", prefix);
  CHECK(qt_voice_save(restored, path) == QT_STATUS_OK);
  qt_voice *loaded = NULL;
  CHECK(qt_voice_load(base, path, &loaded) == QT_STATUS_OK && loaded != NULL);
  CHECK(out_voice == untouched_voice);

  /* The loaded ICL voice speaks (a few frames). */
  qt_gen_params quick = p;
  quick.max_frames = 3;
  qt_audio *spoken = NULL;
  CHECK(qt_generate(base, loaded, "Hi.", &quick, NULL, NULL, &spoken) == QT_STATUS_OK);
  qt_audio_info sinfo = {.struct_size = sizeof sinfo};
  CHECK(qt_audio_get_info(spoken, &sinfo) == QT_STATUS_OK && sinfo.n_frames > 0);

  /* ---- streams: read to the end; cancelled mid-speech; freed while generating (under
   * valgrind, the worker threads and rings must leave nothing behind) ---- */
  {
    qt_gen_params sp = p;
    sp.max_frames = 6;
    qt_stream *stream = NULL;
    CHECK(qt_stream_start(base, voice, "Hi.", &sp, 2048, &stream) == QT_STATUS_OK && stream != NULL);
    float chunk[512];
    size_t n = 0, total = 0;
    int32_t ended = 0;
    int refused = 0;
    const struct timespec ms = {0, 1000000};
    for (long polls = 0; !ended && !refused && polls < 1000000L; ++polls) {
      refused = qt_stream_read(stream, chunk, 512, &n, &ended) != QT_STATUS_OK;
      total += n;
      if (n == 0) nanosleep(&ms, NULL); /* a reader that yields, like an audio callback */
    }
    CHECK(!refused);
    qt_stream_info si = {.struct_size = sizeof si};
    CHECK(ended && qt_stream_get_info(stream, &si) == QT_STATUS_OK && si.state == QT_STREAM_FINISHED);
    CHECK(si.samples_read == total && total == 6 * 1920 && qt_stream_result(stream) == QT_STATUS_OK);
    qt_free(stream);

    sp.max_frames = 400;
    CHECK(qt_stream_start(base, voice, "Hi.", &sp, 2048, &stream) == QT_STATUS_OK);
    for (n = 0, refused = 0; n == 0 && !refused;) {
      refused = qt_stream_read(stream, chunk, 512, &n, &ended) != QT_STATUS_OK;
      if (n == 0) nanosleep(&ms, NULL);
    }
    CHECK(!refused);
    CHECK(qt_stream_cancel(stream) == QT_STATUS_OK);
    qt_free(stream); /* waits for the worker, which stops within a frame */
    CHECK(no_last_error());
    CHECK(qt_stream_start(base, voice, "Hi.", &sp, 2048, &stream) == QT_STATUS_OK);
    qt_free(stream); /* never read: freed while generating */
    CHECK(no_last_error());
    qt_stream *untouched_stream = (qt_stream *)&checks, *out_stream = untouched_stream;
    CHECK(qt_stream_start(base, voice, "Hi.", &sp, 3, &out_stream) == QT_STATUS_INVALID_ARGUMENT);
    CHECK(out_stream == untouched_stream);
  }

  /* ---- release: everything once; a second free is reported, not fatal ---- */
  qt_free(spoken);
  qt_free(loaded);
  qt_free(restored);
  qt_free(cloned);
  qt_free(speaker);
  qt_free(audio);
  qt_free(voice);
  CHECK(no_last_error());
  qt_free(voice);
  CHECK(last_error_has("not a live qwentts object"));
  qt_free(custom);
  qt_free(base);
  CHECK(no_last_error());
  free(embedding);

  if (failures) {
    fprintf(stderr, "generate_contract: %d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("generate_contract: %d checks passed\n", checks);
  return 0;
}
