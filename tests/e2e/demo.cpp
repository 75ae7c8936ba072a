#include "e2e/demo.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

namespace gpuq::e2e {

namespace fs = std::filesystem;

namespace {

void ReplaceAll(std::string& text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
}

}  // namespace

fs::path DemoConfig(const fs::path& dir) {
  fs::path examples = fs::path(GPUQ_SOURCE_DIR) / "examples";
  std::ifstream in(examples / "demo.toml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string bin = std::string(GPUQ_BINARY_DIR) + "/";
  ReplaceAll(text, "\"../../build/", "\"" + bin);
  ReplaceAll(text, "\"../build/", "\"" + bin);
  fs::path config_dir = dir / "demo";
  fs::create_directories(config_dir);
  for (const auto& entry : fs::directory_iterator(examples)) {
    if (entry.is_directory()) fs::create_directory_symlink(entry.path(), config_dir / entry.path().filename());
  }
  std::ofstream(config_dir / "demo.toml") << text;
  return config_dir / "demo.toml";
}

nlohmann::json SubmitAndFetch(const Cluster& c, const std::string& type,
                              std::vector<std::string> args,
                              const std::vector<std::string>& suffixes) {
  args.insert(args.begin(), {"submit", type});
  args.insert(args.end(), {"--wait", "--json"});
  auto r = c.Cli(args);
  EXPECT_EQ(r.exit_code, 0) << type << ": " << r.output;
  auto run = r.Json();
  if (!run.is_object()) return run;
  EXPECT_EQ(run["status"], "completed") << run.dump(2);
  std::string id = run.value("id", "");
  std::string prefix = "runs/" + id + "/";
  fs::path out = c.dir() / ("fetched-" + type);
  auto fetched = c.Cli({"fetch", id, "--out", out.string()});
  EXPECT_EQ(fetched.exit_code, 0) << fetched.output;
  for (const auto& suffix : suffixes) {
    bool found = false;
    for (const auto& file : run["files"]) {
      found = found || file.get<std::string>().ends_with(suffix);
    }
    EXPECT_TRUE(found) << type << " listed no *" << suffix << " file: " << run["files"].dump();
  }
  for (const auto& file : run["files"]) {
    std::string path = file.get<std::string>();
    fs::path on_disk = c.data_dir() / path;
    EXPECT_TRUE(path.starts_with(prefix)) << path;
    EXPECT_TRUE(fs::is_regular_file(on_disk)) << on_disk;
    std::error_code ec;
    auto size = fs::file_size(on_disk, ec);
    EXPECT_GT(size, 0u) << on_disk;
    fs::path copy = out / path.substr(prefix.size());
    EXPECT_EQ(fs::file_size(copy, ec), size) << copy;
  }
  return run;
}

}  // namespace gpuq::e2e
