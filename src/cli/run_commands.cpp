#include "cli/run_commands.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "cli/output.hpp"

namespace gpuq::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The run's status word, or "" when the reply has none.
std::string StatusOf(const json& run) {
  auto it = run.find("status");
  return it != run.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool Finished(const std::string& status) {
  return status == "completed" || status == "failed" || status == "cancelled";
}

int ExitForFinished(const json& run) {
  return StatusOf(run) == "completed" ? 0 : 1;
}

void PrintRun(const GlobalOptions& global, const json& run) {
  if (global.json) {
    fmt::print("{}\n", run.dump(2));
  } else {
    fmt::print("{}", DescribeRun(run));
  }
}

// Polls the run until it finishes, drawing one live progress line on a terminal.
Result<json> WaitForRun(ApiClient& api, const std::string& id, bool live) {
  std::string last_line;
  auto interval = std::chrono::milliseconds(100);
  while (true) {
    BOOST_OUTCOME_TRY(auto run, api.GetJson("/task_status/" + id));
    std::string line = ProgressLine(run);
    if (live && line != last_line) {
      fmt::print(stderr, "\r\033[K{}", line);
      std::fflush(stderr);
      last_line = line;
    }
    if (Finished(StatusOf(run))) {
      if (live) fmt::print(stderr, "\n");
      return run;
    }
    std::this_thread::sleep_for(interval);  // a poll interval, not a wait for a condition
    interval = std::min(interval * 2, std::chrono::milliseconds(500));
  }
}

}  // namespace

Result<json> BuildSubmitBody(const SubmitOptions& options) {
  json payload = json::object();
  if (!options.payload.empty()) {
    payload = json::parse(options.payload, nullptr, false);
    if (payload.is_discarded() || !payload.is_object()) {
      return Error{Errc::kInvalidArgument, "--payload must be a JSON object"};
    }
  }
  for (const auto& param : options.params) {
    auto json_eq = param.find(":=");
    auto eq = param.find('=');
    if (json_eq != std::string::npos && json_eq < eq) {
      std::string key = param.substr(0, json_eq);
      auto value = json::parse(param.substr(json_eq + 2), nullptr, false);
      if (key.empty() || value.is_discarded()) {
        return Error{Errc::kInvalidArgument,
                     fmt::format("--param '{}': expected KEY:=JSON with valid JSON", param)};
      }
      payload[key] = std::move(value);
    } else if (eq != std::string::npos && eq > 0) {
      payload[param.substr(0, eq)] = param.substr(eq + 1);
    } else {
      return Error{Errc::kInvalidArgument,
                   fmt::format("--param '{}': expected KEY=VALUE or KEY:=JSON", param)};
    }
  }
  json body = {{"task_type", options.type}, {"payload", std::move(payload)}};
  if (options.priority) body["priority"] = *options.priority;
  if (options.timeout_s) body["timeout_s"] = *options.timeout_s;
  if (options.max_attempts) body["max_attempts"] = *options.max_attempts;
  return body;
}

int Submit(const GlobalOptions& global, const SubmitOptions& options) {
  auto body = BuildSubmitBody(options);
  if (!body) return Fail(body.error());
  auto api = ApiClient::Connect(global);
  if (!api) return Fail(api.error());
  auto reply = api.value().PostJson("/submit_task", body.value(), options.idempotency_key);
  if (!reply) return Fail(reply.error());
  std::string id = reply.value().value("task_id", "");
  if (!options.wait) {
    if (global.json) {
      fmt::print("{}\n", reply.value().dump());
    } else {
      fmt::print("{}\n", id);
    }
    return 0;
  }
  bool live = !global.json && isatty(STDERR_FILENO);
  if (!global.json) fmt::print(stderr, "submitted {}\n", id);
  auto run = WaitForRun(api.value(), id, live);
  if (!run) return Fail(run.error());
  if (global.json) {
    fmt::print("{}\n", run.value().dump(2));
  } else {
    const auto& r = run.value();
    fmt::print("{} {}\n", id, StatusOf(r));
    if (!r["result"].is_null()) fmt::print("{}\n", r["result"].dump(2));
    if (r["error"].is_string()) fmt::print(stderr, "error: {}\n", r["error"].get<std::string>());
  }
  return ExitForFinished(run.value());
}

int Status(const GlobalOptions& global, const std::string& id) {
  auto api = ApiClient::Connect(global);
  if (!api) return Fail(api.error());
  auto run = api.value().GetJson("/task_status/" + UrlEncode(id));
  if (!run) return Fail(run.error());
  PrintRun(global, run.value());
  return 0;
}

int ListRuns(const GlobalOptions& global, const std::string& status, const std::string& type,
             int limit) {
  auto api = ApiClient::Connect(global);
  if (!api) return Fail(api.error());
  std::string target = fmt::format("/runs?limit={}", limit);
  if (!status.empty()) target += "&status=" + UrlEncode(status);
  if (!type.empty()) target += "&type=" + UrlEncode(type);
  auto page = api.value().GetJson(target);
  if (!page) return Fail(page.error());
  if (global.json) {
    fmt::print("{}\n", page.value().dump(2));
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "TYPE", "STATUS", "PRI", "TRY", "CREATED", "WORKER", "PROGRESS"}};
  for (const auto& run : page.value()["runs"]) {
    std::string progress;
    const auto& p = run["progress"];
    if (p.is_object() && p["fraction"].is_number()) {
      progress = fmt::format("{:.0f}%", p["fraction"].get<double>() * 100);
    }
    if (run["error"].is_string()) progress = run["error"].get<std::string>().substr(0, 40);
    rows.push_back({run.value("id", ""), run.value("type", ""), run.value("status", ""),
                    std::to_string(run.value("priority", 0)),
                    fmt::format("{}/{}", run.value("attempts", 0), run.value("max_attempts", 0)),
                    run.value("created_at", ""),
                    run["worker"].is_string() ? run["worker"].get<std::string>() : "-",
                    progress});
  }
  fmt::print("{}", RenderTable(rows));
  return 0;
}

int Logs(const GlobalOptions& global, const std::string& id, bool follow, int attempt) {
  auto api = ApiClient::Connect(global);
  if (!api) return Fail(api.error());
  std::string target = "/runs/" + UrlEncode(id) + "/logs";
  std::string sep = "?";
  if (attempt > 0) {
    target += fmt::format("?attempt={}", attempt);
    sep = "&";
  }
  if (!follow) {
    auto text = api.value().GetRaw(target);
    if (!text) return Fail(text.error());
    fmt::print("{}", text.value());
    return 0;
  }
  std::string final_status;
  auto streamed = api.value().http().Stream(target + sep + "follow=1",
                                            [&](std::string_view event, std::string_view data) {
                                              if (event == "end") {
                                                final_status = std::string(data);
                                                return false;
                                              }
                                              fmt::print("{}\n", data);
                                              std::fflush(stdout);
                                              return true;
                                            });
  if (!streamed) return Fail(streamed.error());
  if (streamed.value().status != 200) return Fail(ErrorFromResponse(streamed.value()));
  return 0;
}

namespace {
int PostRunAction(const GlobalOptions& global, const std::string& id, const char* action) {
  auto api = ApiClient::Connect(global);
  if (!api) return Fail(api.error());
  auto run = api.value().PostJson(fmt::format("/runs/{}/{}", UrlEncode(id), action), json::object());
  if (!run) return Fail(run.error());
  if (global.json) {
    fmt::print("{}\n", run.value().dump(2));
  } else {
    std::string status = StatusOf(run.value());
    bool requested = run.value().value("cancel_requested", false) && status == "processing";
    fmt::print("{} {}\n", id, requested ? "cancel requested (the worker is stopping it)" : status);
  }
  return 0;
}
}  // namespace

int Cancel(const GlobalOptions& global, const std::string& id) {
  return PostRunAction(global, id, "cancel");
}

int Retry(const GlobalOptions& global, const std::string& id) {
  return PostRunAction(global, id, "retry");
}

int Fetch(const GlobalOptions& global, const std::string& id, const std::string& out_dir) {
  auto api = ApiClient::Connect(global);
  if (!api) return Fail(api.error());
  auto run = api.value().GetJson("/runs/" + UrlEncode(id));
  if (!run) return Fail(run.error());
  fs::path out = out_dir.empty() ? fs::path(id) : fs::path(out_dir);
  std::string prefix = "runs/" + id + "/";
  int count = 0;
  for (const auto& file : run.value()["files"]) {
    std::string path = file.get<std::string>();
    std::string relative = path.starts_with(prefix) ? path.substr(prefix.size()) : path;
    // The server confines paths to the run dir; check again so a bad reply cannot write
    // outside --out.
    fs::path target = (out / relative).lexically_normal();
    if (relative.empty() || fs::path(relative).is_absolute() ||
        relative.find("..") != std::string::npos) {
      return Fail(Error{Errc::kInternal, fmt::format("refusing file path '{}'", path)});
    }
    auto bytes = api.value().GetRaw(fmt::format("/runs/{}/files/{}", UrlEncode(id),
                                                UrlEncode(relative)));
    if (!bytes) return Fail(bytes.error());
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    std::ofstream f(target, std::ios::binary);
    f.write(bytes.value().data(), static_cast<std::streamsize>(bytes.value().size()));
    if (!f) {
      return Fail(Error{Errc::kInternal, fmt::format("cannot write {}", target.string())});
    }
    fmt::print("{}\n", target.string());
    ++count;
  }
  if (count == 0) fmt::print(stderr, "run {} has no files\n", id);
  return 0;
}

}  // namespace gpuq::cli
