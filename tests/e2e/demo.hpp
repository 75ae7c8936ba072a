#pragma once
// Running examples/demo.toml in end-to-end tests.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "e2e/daemon.hpp"

namespace gpuq::e2e {

// examples/demo.toml as a test runs it: a copy in `dir` whose programs are this build's
// (the file names ../build/...), next to links to the examples' workflows, voices, remotion
// project and scripts.
std::filesystem::path DemoConfig(const std::filesystem::path& dir);

// `gpuq submit TYPE ARGS --wait --json`: expects it completed, every listed file on disk in
// the run dir (at least one ending in each of `suffixes`), and `gpuq fetch` to bring each back
// with the same size. Returns the run.
nlohmann::json SubmitAndFetch(const Cluster& c, const std::string& type,
                              std::vector<std::string> args,
                              const std::vector<std::string>& suffixes);

}  // namespace gpuq::e2e
