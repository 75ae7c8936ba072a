#pragma once
// Internal to config/: the TOML reading helpers shared by config.cpp and services_config.cpp.
// Every helper reports a problem naming the field by its dotted path and keeps the default
// when the value is unusable, so one pass reports everything.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "config/config.hpp"

namespace gpuq::config::internal {

// Collects problems while reading one TOML document, naming each field by its dotted path.
class Reader {
 public:
  Reader(std::vector<Problem>* problems, std::filesystem::path base)
      : problems_(problems), base_(std::move(base)) {}

  void Report(std::string field, std::string message) {
    problems_->push_back({std::move(field), std::move(message)});
  }

  // Reports keys of `table` not in `known`: a typo must not silently fall back to a default.
  void CheckKeys(const toml::table& table, const std::string& prefix,
                 std::initializer_list<std::string_view> known) {
    for (const auto& [key, node] : table) {
      if (std::find(known.begin(), known.end(), key.str()) == known.end()) {
        Report(Join(prefix, key.str()), "unknown setting");
      }
    }
  }

  static std::string Join(const std::string& prefix, std::string_view key) {
    return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
  }

  void String(const toml::table& t, const std::string& prefix, std::string_view key,
              std::string& out) {
    if (auto* node = t.get(key)) {
      if (auto v = node->value<std::string>(); v && node->is_string()) {
        out = *v;
      } else {
        Report(Join(prefix, key), "must be a string");
      }
    }
  }

  void Bool(const toml::table& t, const std::string& prefix, std::string_view key, bool& out) {
    if (auto* node = t.get(key)) {
      if (auto v = node->value<bool>(); v && node->is_boolean()) {
        out = *v;
      } else {
        Report(Join(prefix, key), "must be true or false");
      }
    }
  }

  void Int(const toml::table& t, const std::string& prefix, std::string_view key, int& out,
           long long min, long long max) {
    if (auto* node = t.get(key)) {
      auto v = node->value<int64_t>();
      if (!node->is_integer() || !v) {
        Report(Join(prefix, key), "must be an integer");
      } else if (*v < min || *v > max) {
        Report(Join(prefix, key), fmt::format("must be between {} and {}", min, max));
      } else {
        out = static_cast<int>(*v);
      }
    }
  }

  // A duration given in the unit its key names (`lease_ttl_s`, `poll_ms`).
  void Duration(const toml::table& t, const std::string& prefix, std::string_view key, Millis& out,
                long long unit_ms, long long min, long long max) {
    int value = static_cast<int>(out.count() / unit_ms);
    bool present = t.contains(key);
    Int(t, prefix, key, value, min, max);
    if (present) out = Millis(static_cast<long long>(value) * unit_ms);
  }

  void Path(const toml::table& t, const std::string& prefix, std::string_view key,
            std::filesystem::path& out) {
    std::string text;
    if (!t.contains(key)) return;
    String(t, prefix, key, text);
    if (text.empty()) return;
    out = Resolve(text);
  }

  // `text` made absolute against the config file's directory (absolute paths unchanged).
  std::string Resolve(const std::string& text) const {
    std::filesystem::path p(text);
    return p.is_absolute() ? text : (base_ / p).lexically_normal().string();
  }

  // A program given as a relative path ("scripts/x.sh") is relative to the config file, like
  // every path in it; a bare name ("echo") is looked up in PATH when it runs, and a template
  // ("{{...}}") is left for whoever fills it.
  void ResolveProgram(std::vector<std::string>& argv) const {
    if (!argv.empty() && argv[0].find('/') != std::string::npos &&
        argv[0].find("{{") == std::string::npos) {
      argv[0] = Resolve(argv[0]);
    }
  }

  const std::filesystem::path& base() const { return base_; }

 private:
  std::vector<Problem>* problems_;
  std::filesystem::path base_;
};

// `key` as an array of strings into `out` (replacing it); a problem otherwise.
void ReadStringArray(Reader& r, const toml::table& t, const std::string& prefix,
                     std::string_view key, std::vector<std::string>& out);

// `key` as a table of strings into `out` (merged over it); a problem per bad value.
void ReadStringTable(Reader& r, const toml::table& t, const std::string& prefix,
                     std::string_view key, std::map<std::string, std::string>& out);

// [gpu] and its [[gpu.sim]] array. Form only; cross-field rules are in CheckGpuAndServices.
void ReadGpu(Reader& r, const toml::table& t, GpuConfig& gpu);

// [phases]: replaces `phases` with the table's entries ("1" = "crawl").
void ReadPhases(Reader& r, const toml::table& t, std::map<int, std::string>& phases);

// [services]: one ServiceSpec per [services.NAME]. Form only (types, ranges, unknown keys,
// keys that do not belong to the service's kind, placeholders); relative paths resolved.
void ReadServices(Reader& r, const toml::table& t, std::map<std::string, ServiceSpec>& services);

// Finalize's rules across [gpu], [phases], [services] and task types' `service`.
// Fills an external service's empty health_url from its url.
void CheckGpuAndServices(Config& config, std::vector<Problem>* problems);

}  // namespace gpuq::config::internal
