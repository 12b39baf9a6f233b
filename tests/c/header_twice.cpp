// C++17 check of include/qwentts.h, included twice (the include guard must hold), run by
// tests/header.rs:
//   g++ -std=c++17 -Wall -Wextra -Werror -pedantic -fsyntax-only -Iinclude tests/c/header_twice.cpp
#include "qwentts.h"
#include "qwentts.h"

#include <cstdint>
#include <type_traits>

static_assert(std::is_same<qt_status, std::int32_t>::value, "qt_status is int32_t");
static_assert(std::is_standard_layout<qt_model_params>::value, "plain C struct");
static_assert(std::is_trivially_copyable<qt_model_info>::value, "plain C struct");
static_assert(std::is_same<decltype(&qt_load),
                           qt_status (*)(const char*, const qt_model_params*, qt_model**)>::value,
              "qt_load signature");
static_assert(std::is_same<decltype(&qt_free), void (*)(void*)>::value, "qt_free signature");
static_assert(QT_STATUS_INVALID_HANDLE < 0 && -QT_STATUS_INVALID_HANDLE > 0,
              "negative statuses expand to one expression");

// Names must have C linkage (extern "C"): this declaration conflicts if they do not.
extern "C" const char* qt_version(void);

int main() {
  return qt_abi_version() == QT_ABI_VERSION ? 0 : 1;
}
