#pragma once
// A real gpuq-fake-service process for connector tests.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <string>
#include <vector>

#include "http/client.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::connectors {

inline std::string FakeServiceBinary() {
  return (std::filesystem::path(GPUQ_BINARY_DIR) / "gpuq-fake-service").string();
}

// A gpuq-fake-service on a free port (extra flags: "--personality", "comfyui", ...), waited for
// until /health answers 200 (healthy() says whether it did), killed at the end.
class FakeService {
 public:
  explicit FakeService(std::vector<std::string> extra = {})
      : port_(testing::FreePort()),
        child_(Argv(port_, std::move(extra)), dir_ / "fake.log", {{"CUDA_VISIBLE_DEVICES", "0"}}) {
    http::Client client(http::Endpoint{"127.0.0.1", port_}, std::chrono::seconds(5));
    healthy_ = testing::WaitUntil([&] {
      auto reply = client.Get("/health");
      return reply && reply.value().status == 200;
    });
  }
  ~FakeService() {
    int pid = child_.pid();
    child_.Signal(SIGKILL);
    child_.Wait();
    EXPECT_FALSE(testing::ProcessAlive(pid));
  }

  bool healthy() const { return healthy_; }
  std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }
  int port() const { return port_; }
  http::Endpoint endpoint() const { return http::Endpoint{"127.0.0.1", port_}; }
  const std::filesystem::path& dir() const { return dir_.path(); }  // a scratch dir of its own
  std::string Output() const { return child_.Output(); }

 private:
  static std::vector<std::string> Argv(int port, std::vector<std::string> extra) {
    std::vector<std::string> argv = {FakeServiceBinary(), "--port", std::to_string(port), "--name",
                                     "fake"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  testing::TempDir dir_;
  int port_;
  testing::ChildProcess child_;
  bool healthy_ = false;
};

}  // namespace gpuq::connectors
