/* api_contract.c: the C API contract as a C program sees it: statuses, the thread-local last
 * error, out-parameters written only on success, ownership of returned strings, NULL handling,
 * qt_free of NULL / foreign / freed pointers, the log hook, and one model shared by threads.
 *
 * Built and run by tests/c_consumers.rs (also under valgrind when installed):
 *   cc -std=c11 -Wall -Wextra -Werror -pedantic -pthread -Iinclude tests/c/api_contract.c \
 *      -Ltarget/debug/deps -lqwentts -Wl,-rpath,"$PWD/target/debug/deps" -o api_contract
 *   ./api_contract tests/fixtures/tiny-base
 * Prints "api_contract: N checks passed" and exits 0, or lists each failed check and exits 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The last error contains `text` (and therefore is not empty). */
static int last_error_has(const char *text) { return strstr(qt_last_error(), text) != NULL; }
static int no_last_error(void) { return qt_last_error()[0] == '\0'; }

/* ---- log hook ------------------------------------------------------------------------ */

typedef struct {
  pthread_mutex_t lock;
  int warnings;
  char last[512];
} log_sink;

static void on_log(int32_t level, const char *message, void *user_data) {
  log_sink *sink = user_data;
  pthread_mutex_lock(&sink->lock);
  if (level == QT_LOG_WARN) sink->warnings++;
  snprintf(sink->last, sizeof sink->last, "%s", message);
  pthread_mutex_unlock(&sink->lock);
}

/* ---- threads ------------------------------------------------------------------------- */

typedef struct {
  const qt_model *model;
  int ok;
} worker_arg;

static void *worker(void *p) {
  worker_arg *arg = p;
  arg->ok = 1;
  for (int i = 0; i < 100; i++) {
    qt_model_info info = {.struct_size = sizeof info};
    if (qt_model_get_info(arg->model, &info) != QT_STATUS_OK || info.sample_rate != 24000) arg->ok = 0;
    /* Each thread's failures are its own. */
    const char *name = NULL;
    if (qt_model_language(arg->model, (size_t)-1, &name) != QT_STATUS_INVALID_ARGUMENT) arg->ok = 0;
    if (name != NULL || !last_error_has("out of range")) arg->ok = 0;
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "tests/fixtures/tiny-base";

  /* Versions: the loaded library is the one this header describes. */
  CHECK(qt_abi_version() == QT_ABI_VERSION);
  CHECK(strcmp(qt_version(), QT_VERSION_STRING) == 0);
  CHECK(strstr(qt_build_info(), QT_VERSION_STRING) != NULL);
  CHECK(no_last_error());

  /* Devices: this build has no CUDA backend (see the device 0 check below), so none. */
  CHECK(qt_device_count() == 0 && qt_device_count() == 0 && no_last_error());

  /* Status strings are static, never NULL, and leave the last error alone. */
  CHECK(strncmp(qt_status_str(QT_STATUS_NOT_FOUND), "QT_STATUS_NOT_FOUND", 19) == 0);
  CHECK(strncmp(qt_status_str(QT_STATUS_NO_CUDA_DRIVER), "QT_STATUS_NO_CUDA_DRIVER: ", 26) == 0);
  CHECK(strncmp(qt_status_str(QT_STATUS_NO_DEVICE), "QT_STATUS_NO_DEVICE: ", 21) == 0);
  CHECK(strncmp(qt_status_str(QT_STATUS_OUT_OF_MEMORY), "QT_STATUS_OUT_OF_MEMORY: ", 25) == 0);
  CHECK(strncmp(qt_status_str(QT_STATUS_CUDA), "QT_STATUS_CUDA: ", 16) == 0);
  CHECK(strncmp(qt_status_str(12345), "QT_STATUS_UNKNOWN", 17) == 0);

  /* NULL arguments: a status, a message, and the out-parameter untouched. */
  qt_model *model = NULL;
  qt_status st = qt_load(NULL, NULL, &model);
  CHECK(st == QT_STATUS_NULL_ARGUMENT && model == NULL && last_error_has("model_dir"));
  const char *error_before = qt_last_error();
  CHECK(qt_status_str(st) != NULL && qt_last_error() == error_before); /* unchanged */
  CHECK(qt_load(dir, NULL, NULL) == QT_STATUS_NULL_ARGUMENT && last_error_has("out_model"));
  CHECK(qt_load("", NULL, &model) == QT_STATUS_INVALID_ARGUMENT && model == NULL);
  CHECK(qt_load("/nonexistent/qwentts-model", NULL, &model) == QT_STATUS_NOT_FOUND && model == NULL);
  CHECK(last_error_has("/nonexistent/qwentts-model"));

  /* Params: sized by the caller; too small is an ABI mismatch; devices are validated. */
  qt_model_params params;
  memset(&params, 0x7f, sizeof params);
  CHECK(qt_model_params_default(&params, sizeof params) == QT_STATUS_OK && no_last_error());
  CHECK(params.struct_size == sizeof params && params.device == QT_DEVICE_CPU && params.engine == QT_ENGINE_AUTO);
  CHECK(qt_model_params_default(&params, 2) == QT_STATUS_ABI_MISMATCH);
  CHECK(qt_model_params_default(NULL, sizeof params) == QT_STATUS_NULL_ARGUMENT);
  qt_model_params old = params;
  old.struct_size = 4;
  CHECK(qt_load(dir, &old, &model) == QT_STATUS_ABI_MISMATCH && model == NULL);
  params.device = 0;
  CHECK(qt_load(dir, &params, &model) == QT_STATUS_UNSUPPORTED && last_error_has("CUDA"));
  CHECK(qt_device_count() == 0 && last_error_has("CUDA")); /* leaves the last error alone */
  params.device = -2;
  CHECK(qt_load(dir, &params, &model) == QT_STATUS_INVALID_ARGUMENT && model == NULL);
  params.device = QT_DEVICE_CPU;
  params.engine = 7;
  CHECK(qt_load(dir, &params, &model) == QT_STATUS_INVALID_ARGUMENT && last_error_has("engine") && model == NULL);
  params.engine = QT_ENGINE_MEGAKERNEL; /* needs a CUDA device */
  CHECK(qt_load(dir, &params, &model) == QT_STATUS_UNSUPPORTED && last_error_has("megakernel") && model == NULL);
  params.engine = QT_ENGINE_AUTO;

  /* The real thing. */
  st = qt_load(dir, &params, &model);
  CHECK(st == QT_STATUS_OK && model != NULL && no_last_error());
  if (st != QT_STATUS_OK) {
    fprintf(stderr, "cannot load %s: %s: %s\n", dir, qt_status_str(st), qt_last_error());
    return 1;
  }

  qt_model_info info;
  memset(&info, 0, sizeof info);
  CHECK(qt_model_get_info(model, &info) == QT_STATUS_ABI_MISMATCH && info.kind == 0);
  info.struct_size = sizeof info;
  CHECK(qt_model_get_info(model, &info) == QT_STATUS_OK && info.struct_size == sizeof info);
  CHECK(info.kind == QT_MODEL_BASE && info.can_clone == 1 && info.device == QT_DEVICE_CPU);
  CHECK(info.sample_rate == 24000 && info.frame_rate == 12.5f && info.n_codebooks == 16);
  CHECK(info.n_languages > 0 && info.n_speakers == 0 && strlen(info.size_label) > 0);
  CHECK(qt_model_get_info(NULL, &info) == QT_STATUS_NULL_ARGUMENT);

  /* Names belong to the model: the same pointer every time, valid until qt_free. */
  const char *first = NULL, *again = NULL, *untouched = "untouched";
  CHECK(qt_model_language(model, 0, &first) == QT_STATUS_OK && strcmp(first, "auto") == 0);
  CHECK(qt_model_language(model, 0, &again) == QT_STATUS_OK && again == first);
  const char *name = untouched;
  CHECK(qt_model_language(model, info.n_languages, &name) == QT_STATUS_INVALID_ARGUMENT);
  CHECK(name == untouched && last_error_has("out of range"));
  CHECK(qt_model_speaker(model, 0, &name) == QT_STATUS_INVALID_ARGUMENT && name == untouched);

  /* One model, many threads. */
  pthread_t threads[4];
  worker_arg args[4];
  for (int i = 0; i < 4; i++) {
    args[i].model = model;
    CHECK(pthread_create(&threads[i], NULL, worker, &args[i]) == 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(threads[i], NULL);
    CHECK(args[i].ok);
  }

  /* The log hook receives the warning about a pointer the library does not own. */
  static log_sink sink = {PTHREAD_MUTEX_INITIALIZER, 0, ""};
  CHECK(qt_log_set(on_log, &sink) == QT_STATUS_OK);
  CHECK(qt_log_set_level(QT_LOG_TRACE + 1) == QT_STATUS_INVALID_ARGUMENT);
  long not_an_object[4] = {1, 2, 3, 4};
  qt_free(not_an_object);
  CHECK(last_error_has("not a live qwentts object") && not_an_object[0] == 1);
  CHECK(sink.warnings == 1 && strstr(sink.last, "not a live qwentts object") != NULL);

  /* qt_free: NULL is a no-op; the model once; a second free is reported, not fatal. */
  qt_free(NULL);
  CHECK(no_last_error());
  qt_free(model);
  CHECK(no_last_error());
  qt_free(model);
  CHECK(last_error_has("not a live qwentts object") && sink.warnings == 2);

  /* Back to the default (stderr); the sink is not called again. */
  CHECK(qt_log_set(NULL, NULL) == QT_STATUS_OK);
  qt_free(not_an_object);
  CHECK(sink.warnings == 2);

  if (failures) {
    fprintf(stderr, "api_contract: %d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("api_contract: %d checks passed\n", checks);
  return 0;
}
