#pragma once
// Scripts for the fake libnvidia-ml.so.1 and the fake nvidia-smi built next to these tests
// (see fake_nvml.cpp and fake_nvidia_smi.cpp for what they read).
#include <stdlib.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace gpuq::gpu {

inline constexpr unsigned long long kMiB = 1024ull * 1024ull;

// Points the fakes at files in a fresh temp dir for one test; unsets the variables after.
class FakeDriver {
 public:
  FakeDriver() {
    ::setenv("FAKE_NVML_SCRIPT", script().c_str(), 1);
    ::setenv("FAKE_NVML_LOG", log().c_str(), 1);
    ::setenv("FAKE_NVIDIA_SMI_DIR", dir_.path().c_str(), 1);
    Nvml("");
  }
  ~FakeDriver() {
    ::unsetenv("FAKE_NVML_SCRIPT");
    ::unsetenv("FAKE_NVML_LOG");
    ::unsetenv("FAKE_NVIDIA_SMI_DIR");
  }

  // The NVML script, replaced whole.
  void Nvml(const std::string& text) { Write(script(), text); }
  // The exported calls the fake NVML saw, one name per entry, in order.
  std::vector<std::string> Calls() const {
    std::ifstream in(log());
    std::vector<std::string> calls;
    for (std::string line; std::getline(in, line);) calls.push_back(line);
    return calls;
  }
  // A file in the fake nvidia-smi's folder: gpus.csv, apps.csv, exit, hang.
  void Smi(const std::string& name, const std::string& text) { Write(dir_ / name, text); }
  std::string SmiArgs() const {
    std::ifstream in(dir_ / "args.log");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::string script() const { return (dir_ / "nvml.script").string(); }
  std::string log() const { return (dir_ / "nvml.log").string(); }
  static void Write(const std::filesystem::path& path, const std::string& text) {
    std::ofstream(path, std::ios::trunc) << text;
  }

  testing::TempDir dir_;
};

}  // namespace gpuq::gpu
