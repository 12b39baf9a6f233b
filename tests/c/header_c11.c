/* Strict C11 check of include/qwentts.h, run by tests/header.rs:
 *   gcc -std=c11 -Wall -Wextra -Werror -pedantic -Wstrict-prototypes -fsyntax-only -Iinclude tests/c/header_c11.c
 * It only has to compile: layouts, types and constants are checked at compile time. */
#include "qwentts.h"

#include <stddef.h>

/* The ABI the Rust side asserts too (src/ffi/types.rs). */
_Static_assert(sizeof(qt_status) == 4, "qt_status is int32_t");
_Static_assert(offsetof(qt_model_params, struct_size) == 0, "struct_size comes first");
_Static_assert(sizeof(qt_model_params) == 16, "qt_model_params v3 is 16 bytes (v1: 8, v2: 12)");
_Static_assert(offsetof(qt_model_params, engine) == 8, "v2 appends engine");
_Static_assert(offsetof(qt_model_params, prefix_cache_mb) == 12, "v3 appends prefix_cache_mb");
_Static_assert(offsetof(qt_audio_info, reused_prompt_rows) == offsetof(qt_audio_info, rtf) + 8 + 4,
               "qt_audio_info v2 appends prompt_rows and reused_prompt_rows after rtf");
_Static_assert(sizeof(qt_audio_info) == offsetof(qt_audio_info, reused_prompt_rows) + 4, "qt_audio_info: no tail padding");
_Static_assert(offsetof(qt_model_info, struct_size) == 0, "struct_size comes first");
_Static_assert(offsetof(qt_model_info, size_label) == 8, "size_label at 8");
_Static_assert(offsetof(qt_model_info, n_languages) == 8 + sizeof(void *) + 8 * 4, "no padding");
_Static_assert(sizeof(qt_model_info) == offsetof(qt_model_info, weight_bytes) + 8, "no tail padding");
_Static_assert(offsetof(qt_gen_params, first_chunk_frames) == offsetof(qt_gen_params, abort_user_data) + sizeof(void *),
               "qt_gen_params v2 appends first_chunk_frames right after v1's last field");
_Static_assert(sizeof(qt_gen_params) == offsetof(qt_gen_params, reserved) + 4, "qt_gen_params v2: no tail padding");
_Static_assert(QT_STATUS_OK == 0 && QT_STATUS_ABORTED > 0 && QT_STATUS_PANIC < 0, "sign convention");
_Static_assert(QT_VERSION_NUMBER == QT_VERSION_MAJOR * 1000000 + QT_VERSION_MINOR * 1000 + QT_VERSION_PATCH,
               "QT_VERSION_NUMBER packs the three components");

/* Duplicate case labels do not compile, so the statuses are distinct. */
int qt_test_status_known(qt_status status);
int qt_test_status_known(qt_status status) {
  switch (status) {
    case QT_STATUS_OK: case QT_STATUS_ABORTED: case QT_STATUS_INVALID_ARGUMENT:
    case QT_STATUS_NULL_ARGUMENT: case QT_STATUS_ABI_MISMATCH: case QT_STATUS_NOT_FOUND:
    case QT_STATUS_IO: case QT_STATUS_BAD_CONFIG: case QT_STATUS_BAD_WEIGHTS:
    case QT_STATUS_MISSING_TENSOR: case QT_STATUS_SHAPE_MISMATCH: case QT_STATUS_BAD_TOKENIZER:
    case QT_STATUS_UNSUPPORTED: case QT_STATUS_BUFFER_TOO_SMALL: case QT_STATUS_INVALID_HANDLE:
    case QT_STATUS_VOICE_MISMATCH: case QT_STATUS_BAD_VOICE: case QT_STATUS_NO_CUDA_DRIVER:
    case QT_STATUS_NO_DEVICE: case QT_STATUS_OUT_OF_MEMORY: case QT_STATUS_CUDA:
    case QT_STATUS_PANIC:
      return 1;
    default:
      return 0;
  }
}

static void on_log(int32_t level, const char *message, void *user_data) {
  (void)level; (void)message; (void)user_data;
}

/* Every function has the signature the documentation promises. */
int qt_test_signatures(void);
int qt_test_signatures(void) {
  const char *(*last_error)(void) = qt_last_error;
  const char *(*status_str)(qt_status) = qt_status_str;
  const char *(*version)(void) = qt_version;
  uint32_t (*abi_version)(void) = qt_abi_version;
  const char *(*build_info)(void) = qt_build_info;
  int32_t (*device_count)(void) = qt_device_count;
  qt_status (*log_set)(qt_log_cb, void *) = qt_log_set;
  qt_status (*log_set_level)(int32_t) = qt_log_set_level;
  void (*free_any)(void *) = qt_free;
  qt_status (*params_default)(qt_model_params *, size_t) = qt_model_params_default;
  qt_status (*load)(const char *, const qt_model_params *, qt_model **) = qt_load;
  qt_status (*get_info)(const qt_model *, qt_model_info *) = qt_model_get_info;
  qt_status (*language)(const qt_model *, size_t, const char **) = qt_model_language;
  qt_status (*speaker)(const qt_model *, size_t, const char **) = qt_model_speaker;
  qt_log_cb cb = on_log;
  int32_t levels[] = {QT_LOG_OFF, QT_LOG_ERROR, QT_LOG_WARN, QT_LOG_INFO, QT_LOG_DEBUG, QT_LOG_TRACE};
  int32_t kinds[] = {QT_MODEL_BASE, QT_MODEL_CUSTOM_VOICE, QT_MODEL_VOICE_DESIGN, QT_DEVICE_CPU};
  const char *version_string = QT_VERSION_STRING;
  return last_error != NULL && status_str != NULL && version != NULL && abi_version != NULL &&
         build_info != NULL && device_count != NULL && log_set != NULL && log_set_level != NULL &&
         free_any != NULL && params_default != NULL && load != NULL && get_info != NULL &&
         language != NULL && speaker != NULL && cb != NULL && levels[0] == 0 && kinds[0] == 1 &&
         version_string[0] != '\0' && QT_ABI_VERSION > 0;
}
