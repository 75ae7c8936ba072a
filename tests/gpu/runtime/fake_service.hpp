#pragma once
// The gpuq-fake-service binary of this build tree and its URLs, for runtime tests.
#include <fmt/format.h>

#include <filesystem>
#include <string>

namespace gpuq::gpu {

inline std::string FakeServiceBinary() {
  return (std::filesystem::path(GPUQ_BINARY_DIR) / "gpuq-fake-service").string();
}

inline std::string HealthUrl(int port) { return fmt::format("http://127.0.0.1:{}/health", port); }

}  // namespace gpuq::gpu
