/* stream_playback.c: speak through a real audio callback. A qt_stream generates on its own
 * thread; PortAudio's callback (the audio thread, which must never wait) pulls the samples
 * with qt_stream_read and plays silence whenever none is ready yet.
 *
 * Build and run from the repository root (after `cargo build`; Debian: portaudio19-dev):
 *   cc -std=c11 -Wall -Wextra -Iinclude examples/c/stream_playback.c $(pkg-config --cflags --libs portaudio-2.0) \
 *      -Ltarget/debug -lqwentts -Wl,-rpath,"$PWD/target/debug" -o stream_playback
 *   ./stream_playback [MODEL_DIR [REF.wav [OUT.f32 [TEXT]]]]
 * Plays on the default output device at 48 kHz and writes what it played (without the
 * silence) to OUT.f32 (raw little-endian float32, mono). Without a sound card, ALSA's null
 * device works (the tests use it): ALSA_CONFIG_PATH naming a file with
 *   pcm.!default { type file; slave.pcm "null"; file "/dev/null"; format "raw" }
 * That device takes audio as fast as the callback makes it (no clock), so the callback then
 * runs back to back, mostly finding nothing ready, and its slowest call measures the
 * machine's scheduling rather than the library; on a sound card it runs every 5.3 ms.
 */
#define _POSIX_C_SOURCE 200809L
#include <portaudio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qwentts.h"

enum { RATE = 48000, FRAMES_PER_CALLBACK = 256, MAX_SECONDS = 120 };

/* Everything the callback touches, allocated before the audio starts. */
typedef struct {
  qt_stream *stream;
  float *heard; /* what was played, for OUT.f32 */
  size_t n_heard, cap_heard;
  long callbacks, starved;
  double slowest_us;
  int failed; /* a read was refused: its status (the callback cannot print) */
} player;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t); /* vDSO: no system call */
  return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

/* The audio thread: no allocation, no lock, no waiting. */
static int on_audio(const void *input, void *output, unsigned long frames, const PaStreamCallbackTimeInfo *time,
                    PaStreamCallbackFlags flags, void *user_data) {
  (void)input, (void)time, (void)flags;
  player *p = user_data;
  float *out = output;
  double t0 = now_us();
  size_t n = 0;
  int32_t ended = 0;
  qt_status st = qt_stream_read(p->stream, out, frames, &n, &ended);
  if (st != QT_STATUS_OK) {
    p->failed = st;
    n = 0, ended = 1;
  }
  if (n > p->cap_heard - p->n_heard) n = p->cap_heard - p->n_heard;
  memcpy(p->heard + p->n_heard, out, n * sizeof *out);
  p->n_heard += n;
  memset(out + n, 0, (frames - n) * sizeof *out); /* silence until audio is ready */
  if (n < frames && !ended) p->starved++;
  p->callbacks++;
  double took = now_us() - t0;
  if (took > p->slowest_us) p->slowest_us = took;
  return ended ? paComplete : paContinue;
}

static int report(const char *call, qt_status status) {
  fprintf(stderr, "%s failed: %s\n  %s\n", call, qt_status_str(status), qt_last_error());
  return 1;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "tests/fixtures/tiny-base";
  const char *ref_wav = argc > 2 ? argv[2] : "tests/fixtures/audio/ref_24k.wav";
  const char *out_path = argc > 3 ? argv[3] : "stream_playback.f32";
  const char *text = argc > 4 ? argv[4] : "Hello from the audio thread.";

  int rc = 1;
  qt_model *model = NULL;
  qt_voice *voice = NULL;
  player p = {0};
  PaStream *pa = NULL;
  int pa_up = 0;
  qt_status st = qt_load(dir, NULL, &model);
  if (st != QT_STATUS_OK) {
    rc = report("qt_load", st);
    goto done;
  }
  st = qt_clone_voice_from_file(model, ref_wav, NULL, NULL, &voice); /* x-vector only */
  if (st != QT_STATUS_OK) {
    rc = report("qt_clone_voice_from_file", st);
    goto done;
  }
  qt_gen_params params;
  st = qt_gen_params_default(model, &params, sizeof params);
  if (st != QT_STATUS_OK) {
    rc = report("qt_gen_params_default", st);
    goto done;
  }
  params.language = "English";
  params.seed = 7;
  params.output_sample_rate = RATE; /* the device's rate: no resampling on the audio thread */

  p.cap_heard = (size_t)RATE * MAX_SECONDS;
  p.heard = malloc(p.cap_heard * sizeof *p.heard);
  if (p.heard == NULL) goto done;
  /* Half a second of ring: generation runs ahead of playback and waits when it is full. */
  st = qt_stream_start(model, voice, text, &params, RATE / 2, &p.stream);
  if (st != QT_STATUS_OK) {
    rc = report("qt_stream_start", st);
    goto done;
  }

  PaError e = Pa_Initialize();
  if (e != paNoError) {
    fprintf(stderr, "Pa_Initialize: %s\n", Pa_GetErrorText(e));
    goto done;
  }
  pa_up = 1;
  e = Pa_OpenDefaultStream(&pa, 0, 1, paFloat32, RATE, FRAMES_PER_CALLBACK, on_audio, &p);
  if (e == paNoError) e = Pa_StartStream(pa);
  if (e != paNoError) {
    fprintf(stderr, "PortAudio: %s\n", Pa_GetErrorText(e));
    goto done;
  }
  while (Pa_IsStreamActive(pa) == 1) Pa_Sleep(10);

  if (p.failed) {
    fprintf(stderr, "qt_stream_read failed: %s\n", qt_status_str(p.failed));
    goto done;
  }
  st = qt_stream_result(p.stream);
  if (st < 0) {
    rc = report("the stream", st);
    goto done;
  }
  FILE *f = fopen(out_path, "wb");
  if (f == NULL || fwrite(p.heard, sizeof *p.heard, p.n_heard, f) != p.n_heard) {
    fprintf(stderr, "cannot write %s\n", out_path);
    if (f) fclose(f);
    goto done;
  }
  fclose(f);
  printf("played %zu samples at %d Hz in %ld callbacks (%ld short of audio, played as silence)\n", p.n_heard, RATE,
         p.callbacks, p.starved);
  printf("slowest callback: %.0f us (the budget is %.0f us)\n", p.slowest_us, 1e6 * FRAMES_PER_CALLBACK / RATE);
  rc = 0;

done:
  if (pa) Pa_CloseStream(pa);
  if (pa_up) Pa_Terminate();
  qt_free(p.stream); /* cancels and waits if it still runs */
  free(p.heard);
  qt_free(voice);
  qt_free(model);
  return rc;
}
