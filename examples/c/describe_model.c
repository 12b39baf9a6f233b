/* describe_model.c: load a Qwen3-TTS checkpoint through the C API and print what it is.
 *
 * Build and run from the repository root (after `cargo build`):
 *   cc -std=c11 -Wall -Wextra -Iinclude examples/c/describe_model.c \
 *      -Ltarget/debug -lqwentts -Wl,-rpath,"$PWD/target/debug" -o describe_model
 *   ./describe_model tests/fixtures/tiny-base
 */
#include <stdio.h>

#include "qwentts.h"

/* Prints why `call` failed. Read qt_last_error() before any other qt_ call. */
static int report(const char *call, qt_status status) {
  fprintf(stderr, "%s failed: %s\n  %s\n", call, qt_status_str(status), qt_last_error());
  return 1;
}

static const char *kind_name(int32_t kind) {
  switch (kind) {
    case QT_MODEL_BASE: return "base";
    case QT_MODEL_CUSTOM_VOICE: return "custom-voice";
    case QT_MODEL_VOICE_DESIGN: return "voice-design";
    default: return "unknown";
  }
}

typedef qt_status (*name_fn)(const qt_model *, size_t, const char **);

/* Prints "label: a, b, c" (or "(none)"); the names belong to the model. */
static qt_status print_names(const char *label, const qt_model *model, size_t count, name_fn get) {
  printf("%s:", label);
  if (count == 0) printf(" (none)");
  for (size_t i = 0; i < count; i++) {
    const char *name = NULL;
    qt_status status = get(model, i, &name);
    if (status != QT_STATUS_OK) return status;
    printf("%s %s", i == 0 ? "" : ",", name);
  }
  printf("\n");
  return QT_STATUS_OK;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "tests/fixtures/tiny-base";

  /* The header this program was compiled with must match the library it loaded. */
  if (qt_abi_version() != QT_ABI_VERSION) {
    fprintf(stderr, "qwentts ABI %u loaded, header has %u\n", qt_abi_version(), QT_ABI_VERSION);
    return 1;
  }
  printf("qwentts %s (ABI %u)\n", qt_version(), qt_abi_version());

  qt_model_params params;
  qt_status status = qt_model_params_default(&params, sizeof params);
  if (status != QT_STATUS_OK) return report("qt_model_params_default", status);
  params.device = QT_DEVICE_CPU;

  qt_model *model = NULL;
  status = qt_load(dir, &params, &model);
  if (status != QT_STATUS_OK) return report("qt_load", status);

  qt_model_info info = {.struct_size = sizeof info};
  status = qt_model_get_info(model, &info);
  if (status != QT_STATUS_OK) {
    int rc = report("qt_model_get_info", status);
    qt_free(model);
    return rc;
  }

  printf("model: %s\n", dir);
  printf("kind: %s\n", kind_name(info.kind));
  printf("size: %s\n", info.size_label);
  printf("sample rate: %d Hz\n", info.sample_rate);
  printf("frame rate: %g Hz\n", (double)info.frame_rate);
  printf("codebooks: %d\n", info.n_codebooks);
  printf("talker: %d layers, hidden %d\n", info.talker_layers, info.talker_hidden_size);
  printf("code predictor: %d layers\n", info.code_predictor_layers);
  printf("can clone: %s\n", info.can_clone ? "yes" : "no");
  printf("weights: %llu tensors, %llu bytes\n", (unsigned long long)info.tensor_count,
         (unsigned long long)info.weight_bytes);

  status = print_names("languages", model, info.n_languages, qt_model_language);
  if (status == QT_STATUS_OK) status = print_names("speakers", model, info.n_speakers, qt_model_speaker);
  int rc = status == QT_STATUS_OK ? 0 : report("qt_model_language/speaker", status);

  qt_free(model);
  return rc;
}
