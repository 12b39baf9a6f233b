# CMake package of qwentts (tools/install.sh): find_package(qwentts) defines the imported
# target qwentts::qwentts (the shared library, its include directory with qwentts.h and the
# C++ wrapper qwentts.hpp). Relocatable: paths follow this file
# (PREFIX/lib/cmake/qwentts/qwenttsConfig.cmake).
get_filename_component(_qwentts_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET qwentts::qwentts)
  add_library(qwentts::qwentts SHARED IMPORTED)
  set_target_properties(qwentts::qwentts PROPERTIES
    IMPORTED_LOCATION "${_qwentts_prefix}/lib/libqwentts.so"
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${_qwentts_prefix}/include")
endif()
set(qwentts_INCLUDE_DIRS "${_qwentts_prefix}/include")
set(qwentts_LIBRARIES qwentts::qwentts)
unset(_qwentts_prefix)
