# gpuq_library(NAME SOURCES ... DEPS ...): one src/ folder = one static library.
# Headers are included as "core/run.hpp", so every library exposes src/ as its include root.
set(GPUQ_PCH_HEADERS
  <string> <string_view> <vector> <map> <memory> <optional> <chrono> <functional>
  <nlohmann/json.hpp> <fmt/format.h>)

function(gpuq_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  target_precompile_headers(${name} PRIVATE ${GPUQ_PCH_HEADERS})
endfunction()

# gpuq_test(NAME SOURCES ... DEPS ... [LABELS ...] [PROPERTIES key value ...]): one GoogleTest
# binary per module; PROPERTIES go to every test discovered in it.
function(gpuq_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS;PROPERTIES" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_precompile_headers(${name} PRIVATE ${GPUQ_PCH_HEADERS} <gtest/gtest.h> <gmock/gmock.h>)
  target_compile_definitions(${name} PRIVATE
    GPUQ_BINARY_DIR="${PROJECT_BINARY_DIR}"
    GPUQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  include(GoogleTest)
  set(labels ${ARG_LABELS})
  if(NOT labels)
    set(labels unit)
  endif()
  # A hung test fails after 10 minutes instead of CTest's 25, which would take CI past its hour.
  gtest_discover_tests(${name} PROPERTIES LABELS "${labels}" TIMEOUT 600 ${ARG_PROPERTIES}
                       DISCOVERY_TIMEOUT 60)
endfunction()
