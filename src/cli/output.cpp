#include "cli/output.hpp"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace gpuq::cli {

int ToExitCode(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
    case Errc::kMalformed:
    case Errc::kResourceExhausted: return 2;
    case Errc::kNotFound: return 3;
    case Errc::kConflict: return 4;
    case Errc::kUnavailable: return 5;
    case Errc::kUnauthenticated: return 6;
    case Errc::kTimeout: return 7;
    case Errc::kInternal: return 8;
  }
  return 8;
}

int Fail(const Error& error) {
  fmt::print(stderr, "gpuq: {}\n", error.message);
  return ToExitCode(error.code);
}

std::string RenderTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

namespace {
std::string Str(const nlohmann::json& run, const char* key) {
  auto it = run.find(key);
  if (it == run.end() || it->is_null()) return "-";
  return it->is_string() ? it->get<std::string>() : it->dump();
}
}  // namespace

std::string ProgressLine(const nlohmann::json& run) {
  std::string line = fmt::format("{} {} {}", Str(run, "id"), Str(run, "type"), Str(run, "status"));
  if (auto p = run.find("progress"); p != run.end() && p->is_object()) {
    if (p->contains("fraction") && (*p)["fraction"].is_number()) {
      line += fmt::format(" {:.0f}%", (*p)["fraction"].get<double>() * 100);
    }
    if (p->contains("message") && (*p)["message"].is_string() &&
        !(*p)["message"].get<std::string>().empty()) {
      line += " " + (*p)["message"].get<std::string>();
    }
  }
  if (run.contains("waiting_reason") && run["waiting_reason"].is_string()) {
    line += " (" + run["waiting_reason"].get<std::string>() + ")";
  }
  return line;
}

std::string DescribeRun(const nlohmann::json& run) {
  std::vector<std::vector<std::string>> rows;
  for (const char* key : {"id", "type", "status", "priority", "attempts", "max_attempts",
                          "worker", "gpu", "created_at", "started_at", "finished_at", "error",
                          "waiting_reason", "log_path"}) {
    rows.push_back({std::string(key) + ":", Str(run, key)});
  }
  std::string out = RenderTable(rows);
  if (run.contains("progress")) out += "progress:     " + run["progress"].dump() + "\n";
  if (run.contains("result") && !run["result"].is_null()) {
    out += "result:       " + run["result"].dump() + "\n";
  }
  if (run.contains("files") && !run["files"].empty()) {
    out += "files:\n";
    for (const auto& f : run["files"]) out += "  " + f.get<std::string>() + "\n";
  }
  return out;
}

}  // namespace gpuq::cli
