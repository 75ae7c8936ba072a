#include "connectors/command/command_connector.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "core/placeholder.hpp"


namespace gpuq::connectors {

namespace {

constexpr std::string_view kProgressPrefix = "GPUQ_PROGRESS ";
constexpr size_t kMaxLine = 4096;  // longer lines are cut for progress and error reporting

// The argv to run: the task type's template filled, or payload.argv as-is.
Result<std::vector<std::string>> BuildArgv(const TaskType& type, const Json& payload,
                                           const Json& values) {
  std::vector<std::string> argv;
  if (type.argv.empty()) {
    auto it = payload.is_object() ? payload.find("argv") : payload.end();
    if (!payload.is_object() || it == payload.end() || !it->is_array() || it->empty()) {
      return Error{Errc::kInvalidArgument,
                   fmt::format("task type {} has no argv: payload.argv must be a non-empty "
                               "array of strings",
                               type.name)};
    }
    for (const auto& item : *it) {
      if (!item.is_string()) {
        return Error{Errc::kInvalidArgument, "payload.argv must be an array of strings"};
      }
      argv.push_back(item.get<std::string>());
    }
    if (argv.front().empty()) {
      return Error{Errc::kInvalidArgument, "payload.argv[0] must not be empty"};
    }
    return argv;
  }
  for (const auto& element : type.argv) {
    BOOST_OUTCOME_TRY(auto filled, FillText(element, values));
    argv.push_back(std::move(filled));
  }
  if (argv.front().empty()) {
    return Error{Errc::kInvalidArgument, "argv[0] is empty once filled"};
  }
  return argv;
}

std::string SignalName(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("{}", sig);
}

// Relays the child's output into the log file and watches it line by line for progress and
// for the last line (kept for the error message).
class OutputRelay {
 public:
  OutputRelay(int log_fd, const std::function<void(const Progress&)>& report)
      : log_fd_(log_fd), report_(report) {}

  void Write(std::string_view bytes) {
    while (!bytes.empty() && log_fd_ >= 0) {
      ssize_t n = ::write(log_fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;  // a full disk must not kill the run; its output is lost
      Scan(bytes.substr(0, static_cast<size_t>(n)));
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  // The last non-empty line the command wrote (progress lines excluded).
  std::string LastLine() const {
    return partial_.find_first_not_of(" \t\r") != std::string::npos ? partial_ : last_line_;
  }

 private:
  void Scan(std::string_view bytes) {
    for (char c : bytes) {
      if (c != '\n') {
        if (partial_.size() < kMaxLine) partial_.push_back(c);
        continue;
      }
      Line(partial_);
      partial_.clear();
    }
  }

  void Line(std::string& line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.starts_with(kProgressPrefix)) {
      std::string rest = line.substr(kProgressPrefix.size());
      char* end = nullptr;
      double fraction = std::strtod(rest.c_str(), &end);
      if (end != rest.c_str() && report_) {
        std::string_view message(end);
        while (!message.empty() && message.front() == ' ') message.remove_prefix(1);
        report_(Progress{std::clamp(fraction, 0.0, 1.0), std::string(message)});
      }
      return;
    }
    if (line.find_first_not_of(" \t") != std::string::npos) last_line_ = line;
  }

  int log_fd_;
  const std::function<void(const Progress&)>& report_;
  std::string partial_;
  std::string last_line_;
};

}  // namespace

Json CommandValues(const Json& payload, const std::string& run_id,
                   const std::filesystem::path& run_dir, const std::filesystem::path& data_dir,
                   int attempt) {
  Json values = payload.is_object() ? payload : Json::object();
  values["payload"] = payload;
  values["run_id"] = run_id;
  values["run_dir"] = run_dir.string();
  values["data_dir"] = data_dir.string();
  values["attempt"] = attempt;
  return values;
}

std::vector<std::string> ListRunFiles(const std::filesystem::path& run_dir,
                                      const std::filesystem::path& data_dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(run_dir, fs::directory_options::none, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path& path = it->path();
    if (it.depth() == 0 && path.filename() == "logs" && it->is_directory(ec)) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_symlink(ec) || !it->is_regular_file(ec)) continue;
    files.push_back(path.lexically_relative(data_dir).generic_string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

Result<void> CommandConnector::Validate(const TaskType& type, const Json& payload) const {
  if (!payload.is_object()) {
    return Error{Errc::kInvalidArgument, "command payload must be a JSON object"};
  }
  // The built-ins are known only at run time; any value shows that the name resolves.
  Json values = CommandValues(payload, "run-id", "/run-dir", "/data-dir", 1);
  BOOST_OUTCOME_TRY(BuildArgv(type, payload, values));
  for (const auto& [key, value] : type.env) {
    auto filled = FillText(value, values);
    if (!filled) {
      return Error{filled.error().code, fmt::format("env {}: {}", key, filled.error().message)};
    }
  }
  return Ok();
}

Result<Outcome> CommandConnector::Execute(RunContext& ctx) {
  const Run& run = ctx.run;
  Json values = CommandValues(run.payload, run.id, ctx.run_dir, ctx.data_dir, run.attempts);
  BOOST_OUTCOME_TRY(auto argv, BuildArgv(ctx.task_type, run.payload, values));
  std::map<std::string, std::string> extra;
  for (const auto& [key, value] : ctx.task_type.env) {
    BOOST_OUTCOME_TRY(auto filled, FillText(value, values));
    extra[key] = std::move(filled);
  }
  extra["GPUQ_RUN_ID"] = run.id;
  extra["GPUQ_RUN_DIR"] = ctx.run_dir.string();

  int log_fd = ::open(ctx.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Error{Errc::kInternal, fmt::format("cannot open log file {}: {}", ctx.log_file.string(),
                                              std::strerror(errno))};
  }
  OutputRelay relay(log_fd, ctx.report_progress);
  ChildSpec spec{
      .argv = std::move(argv), .env = EnvironmentWith(extra), .cwd = ctx.run_dir, .grace = grace_};
  auto exit = RunChild(spec, ctx.stop, [&relay](std::string_view bytes) { relay.Write(bytes); });
  if (!exit) {
    // Say it in the run's log too: that is where a person looks first.
    std::string line = exit.error().message + "\n";
    relay.Write(line);
  }
  ::close(log_fd);
  if (!exit) return exit.error();

  if (exit.value().stopped) return Error{Errc::kUnavailable, "command stopped"};
  if (exit.value().signaled) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("command killed by signal {}", SignalName(exit.value().signal))};
  }
  if (exit.value().code != 0) {
    std::string last = relay.LastLine();
    return Error{Errc::kInvalidArgument,
                 last.empty()
                     ? fmt::format("command exited with code {}", exit.value().code)
                     : fmt::format("command exited with code {}: {}", exit.value().code, last)};
  }
  return Outcome{.result = Json{{"exit_code", 0}},
                 .files = ListRunFiles(ctx.run_dir, ctx.data_dir)};
}

}  // namespace gpuq::connectors
