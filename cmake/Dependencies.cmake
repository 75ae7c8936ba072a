# Debian packages only (see README): libboost1.81-dev libboost-url1.81-dev libsqlite3-dev
# libhiredis-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev
# libgtest-dev libgmock-dev libbenchmark-dev
find_package(Boost 1.81 REQUIRED COMPONENTS url)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(Threads REQUIRED)
if(GPUQ_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(GPUQ_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

# Asio and Beast are compiled once, in src/http/asio_impl.cpp; every target that includes
# them links gpuq_asio so the separate-compilation macros are the same everywhere.
add_library(gpuq_asio_flags INTERFACE)
target_compile_definitions(gpuq_asio_flags INTERFACE
  BOOST_ASIO_SEPARATE_COMPILATION
  BOOST_BEAST_SEPARATE_COMPILATION
  BOOST_ASIO_NO_DEPRECATED)
target_link_libraries(gpuq_asio_flags INTERFACE Boost::headers Threads::Threads)
