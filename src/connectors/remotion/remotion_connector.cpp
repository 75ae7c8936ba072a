#include "connectors/remotion/remotion_connector.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <string.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>

#include "connectors/remotion/render_output.hpp"


namespace gpuq::connectors {

namespace {

namespace fs = std::filesystem;

constexpr std::array<std::string_view, 11> kCodecs = {
    "h264", "h265", "vp8", "vp9", "mp3", "aac", "wav", "prores", "h264-mkv", "h264-ts", "gif"};
constexpr size_t kMaxLine = 4096;  // longer lines are cut before they are parsed

struct Settings {
  fs::path project_dir;
  std::string entry_point = "src/index.ts";
  std::string composition = "Main";
  std::string remotion_bin;
  std::string codec;
  std::string concurrency;
  std::vector<std::string> extra_args;
};

bool IsNonEmptyString(const Json& value) {
  return value.is_string() && !value.get<std::string>().empty();
}

// An argument that would be read as a flag, or one with a control character in it.
bool LooksLikeFlagOrIsOdd(const std::string& text) {
  if (text.starts_with("-")) return true;
  for (unsigned char c : text) {
    if (c < 0x20) return true;
  }
  return false;
}

// "8" or "50%": what --concurrency takes.
bool IsConcurrency(const std::string& text) {
  static const std::regex re(R"(^([1-9][0-9]{0,5})(%?)$)");
  std::smatch match;
  if (!std::regex_match(text, match, re)) return false;
  return match[2].str().empty() || std::stoi(match[1].str()) <= 100;
}

// The settings with their defaults; each bad key adds a problem (when `problems` is given) and
// keeps its default.
Settings ReadSettings(const Json& settings, std::vector<SettingProblem>* problems) {
  Settings s;
  auto problem = [&](const std::string& key, std::string message) {
    if (problems != nullptr) problems->push_back({key, std::move(message)});
  };
  if (!settings.is_object()) return s;
  for (const auto& [key, value] : settings.items()) {
    if (key == "project_dir") {
      if (IsNonEmptyString(value)) {
        s.project_dir = value.get<std::string>();
      } else {
        problem(key, "must be the path of the Remotion project (a non-empty string)");
      }
    } else if (key == "entry_point") {
      if (IsNonEmptyString(value) && !LooksLikeFlagOrIsOdd(value.get<std::string>())) {
        s.entry_point = value.get<std::string>();
      } else {
        problem(key, "must be a file of the project (\"src/index.ts\") or a serve URL");
      }
    } else if (key == "composition") {
      if (IsNonEmptyString(value) && !LooksLikeFlagOrIsOdd(value.get<std::string>())) {
        s.composition = value.get<std::string>();
      } else {
        problem(key, "must be a composition id (a non-empty string not starting with '-')");
      }
    } else if (key == "remotion_bin") {
      if (IsNonEmptyString(value)) {
        s.remotion_bin = value.get<std::string>();
      } else {
        problem(key, "must be the path or name of the remotion CLI (a non-empty string)");
      }
    } else if (key == "codec") {
      std::string codec = value.is_string() ? value.get<std::string>() : "";
      if (std::find(kCodecs.begin(), kCodecs.end(), codec) != kCodecs.end()) {
        s.codec = codec;
      } else {
        problem(key, fmt::format("must be one of {}", fmt::join(kCodecs, ", ")));
      }
    } else if (key == "concurrency") {
      std::string text = value.is_number_integer() ? std::to_string(value.get<int64_t>())
                         : value.is_string()       ? value.get<std::string>()
                                                   : "";
      if (IsConcurrency(text)) {
        s.concurrency = text;
      } else {
        problem(key, "must be an integer >= 1 or a percentage such as \"50%\"");
      }
    } else if (key == "extra_args") {
      bool ok = value.is_array();
      std::vector<std::string> args;
      for (const auto& arg : ok ? value : Json::array()) {
        if (!arg.is_string()) {
          ok = false;
          break;
        }
        args.push_back(arg.get<std::string>());
      }
      if (ok) {
        s.extra_args = std::move(args);
      } else {
        problem(key, "must be an array of strings");
      }
    } else {
      problem(key, "unknown setting");
    }
  }
  return s;
}

struct Request {
  Json props = Json::object();
  std::string composition;
  fs::path output = "out.mp4";  // relative to the run dir, normalised
  std::string frames;           // --frames value, empty for all
};

Error Invalid(std::string message) { return Error{Errc::kInvalidArgument, std::move(message)}; }

// Numbers Remotion's composition takes from the timeline must make sense, or the render fails
// late with a message about React rather than the payload.
Result<void> CheckTimeline(const Json& timeline) {
  for (const char* key : {"width", "height", "durationInFrames"}) {
    auto it = timeline.find(key);
    if (it != timeline.end() && !(it->is_number_integer() && it->get<int64_t>() > 0)) {
      return Invalid(fmt::format("remotion payload: timeline.{} must be a positive integer", key));
    }
  }
  auto fps = timeline.find("fps");
  if (fps != timeline.end() && !(fps->is_number() && fps->get<double>() > 0)) {
    return Invalid("remotion payload: timeline.fps must be a positive number");
  }
  return Ok();
}

Result<Request> ReadRequest(const Settings& settings, const Json& payload) {
  if (!payload.is_object()) return Invalid("remotion payload must be a JSON object");
  Request request;
  request.composition = settings.composition;
  auto timeline = payload.find("timeline");
  auto props = payload.find("props");
  if (timeline != payload.end() && props != payload.end()) {
    return Invalid("remotion payload: give either timeline or props, not both");
  }
  if (timeline != payload.end()) {
    if (!timeline->is_object()) return Invalid("remotion payload: timeline must be an object");
    BOOST_OUTCOME_TRY(CheckTimeline(*timeline));
    request.props = *timeline;
  } else if (props != payload.end()) {
    if (!props->is_object()) return Invalid("remotion payload: props must be an object");
    request.props = *props;
  }
  if (auto it = payload.find("composition"); it != payload.end()) {
    if (!IsNonEmptyString(*it) || LooksLikeFlagOrIsOdd(it->get<std::string>())) {
      return Invalid(
          "remotion payload: composition must be a composition id (a non-empty string not "
          "starting with '-')");
    }
    request.composition = it->get<std::string>();
  }
  if (auto it = payload.find("output"); it != payload.end()) {
    std::string text = it->is_string() ? it->get<std::string>() : "";
    fs::path path = fs::path(text).lexically_normal();
    bool inside = !text.empty() && !path.has_root_path() && !path.empty() && path != "." &&
                  *path.begin() != ".." && !path.filename().empty() && *path.begin() != "logs" &&
                  path != "props.json" && !LooksLikeFlagOrIsOdd(text);
    if (!inside) {
      return Invalid(
          fmt::format("remotion payload: output '{}' must be a file name inside the run dir (like "
                      "\"out.mp4\"; no absolute path, no '..', not logs/ or props.json)",
                      text));
    }
    request.output = path;
  }
  if (auto it = payload.find("frames"); it != payload.end()) {
    static const std::regex range(R"(^(\d{1,9})(?:-(\d{1,9})?)?$)");
    std::string text = it->is_number_integer() ? std::to_string(it->get<int64_t>())
                       : it->is_string()       ? it->get<std::string>()
                                               : "";
    std::smatch match;
    bool ok = std::regex_match(text, match, range);
    if (ok && match[2].matched) ok = std::stol(match[1].str()) <= std::stol(match[2].str());
    if (!ok) {
      return Invalid(
          "remotion payload: frames must be a frame number (42) or an inclusive range (\"0-9\", "
          "\"10-\")");
    }
    request.frames = text;
  }
  return request;
}

// `name` in the PATH of `env`, as the child's execvpe would find it; empty when it is not there.
fs::path FindInPath(const std::string& name, const std::vector<std::string>& env) {
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& entry : env) {
    if (entry.starts_with("PATH=")) path = entry.substr(5);
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    fs::path dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";
    fs::path candidate = dir / name;
    std::error_code ec;
    if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return {};
}

Error NotInstalled(const TaskType& type, const Settings& settings, const std::string& why) {
  return Invalid(
      fmt::format("Remotion is not installed: {}. Install it with `npm i --save-exact remotion "
                  "@remotion/cli` in {}, or set task_types.{}.remotion_bin to the remotion CLI",
                  why, settings.project_dir.string(), type.name));
}

// The command that starts the CLI, up to (not including) "render".
Result<std::vector<std::string>> RemotionCommand(const TaskType& type, const Settings& settings,
                                                 const std::vector<std::string>& env) {
  std::error_code ec;
  if (!settings.remotion_bin.empty()) {
    const std::string& bin = settings.remotion_bin;
    if (bin.find('/') == std::string::npos) {
      fs::path found = FindInPath(bin, env);
      if (found.empty()) {
        return NotInstalled(type, settings, fmt::format("remotion_bin '{}' is not on PATH", bin));
      }
      return std::vector<std::string>{found.string()};
    }
    fs::path path = settings.project_dir / bin;  // an absolute bin replaces project_dir
    if (!fs::exists(path, ec)) {
      return NotInstalled(type, settings,
                          fmt::format("remotion_bin {} does not exist", path.string()));
    }
    return std::vector<std::string>{path.string()};
  }
  fs::path local = settings.project_dir / "node_modules" / ".bin" / "remotion";
  if (fs::exists(local, ec)) return std::vector<std::string>{local.string()};
  fs::path npx = FindInPath("npx", env);
  if (npx.empty()) {
    return NotInstalled(type, settings, fmt::format("no {} and no npx on PATH", local.string()));
  }
  // --no: npx must never download a package in the middle of a run (without a TTY it would
  // install whatever "remotion" resolves to without asking).
  return std::vector<std::string>{npx.string(), "--no", "remotion"};
}

std::string SignalName(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? fmt::format("SIG{}", abbrev) : fmt::format("{}", sig);
}

std::string Join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

// Appends the CLI's output to the log file, splits it into lines and reads them.
class Relay {
 public:
  Relay(int log_fd, RenderOutput& output, const std::function<void(const Progress&)>& report)
      : log_fd_(log_fd), output_(output), report_(report) {}

  void Write(std::string_view bytes) {
    Log(bytes);
    for (char c : bytes) {
      if (c != '\n' && c != '\r') {  // '\r': a progress bar redrawn in place
        if (partial_.size() < kMaxLine) partial_.push_back(c);
        continue;
      }
      Line();
    }
  }

  void Finish() { Line(); }

  void Log(std::string_view bytes) {
    while (!bytes.empty() && log_fd_ >= 0) {
      ssize_t n = ::write(log_fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;  // a full disk must not kill the render; its log is lost
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

 private:
  void Line() {
    if (partial_.empty()) return;
    auto progress = output_.Feed(partial_);
    partial_.clear();
    if (progress && report_) report_(*progress);
  }

  int log_fd_;
  RenderOutput& output_;
  const std::function<void(const Progress&)>& report_;
  std::string partial_;
};

}  // namespace

std::vector<SettingProblem> RemotionConnector::CheckSettings(const TaskType& type) const {
  std::vector<SettingProblem> problems;
  ReadSettings(type.settings, &problems);
  return problems;
}

Result<void> RemotionConnector::Validate(const TaskType& type, const Json& payload) const {
  BOOST_OUTCOME_TRY(ReadRequest(ReadSettings(type.settings, nullptr), payload));
  return Ok();
}

Result<Outcome> RemotionConnector::Execute(RunContext& ctx) {
  const TaskType& type = ctx.task_type;
  std::vector<SettingProblem> problems;
  Settings settings = ReadSettings(type.settings, &problems);
  if (!problems.empty()) {
    return Invalid(fmt::format("task_types.{}.{}: {}", type.name, problems.front().key,
                               problems.front().message));
  }
  BOOST_OUTCOME_TRY(auto request, ReadRequest(settings, ctx.run.payload));
  if (settings.project_dir.empty()) {
    return Invalid(fmt::format(
        "task type {} has no Remotion project: set task_types.{}.project_dir to its folder "
        "(the one with package.json and node_modules/)",
        type.name, type.name));
  }
  std::error_code ec;
  if (!fs::is_directory(settings.project_dir, ec)) {
    return Invalid(fmt::format("task_types.{}.project_dir {} is not a directory", type.name,
                               settings.project_dir.string()));
  }
  bool is_url = settings.entry_point.find("://") != std::string::npos;
  if (!is_url && !fs::exists(settings.project_dir / settings.entry_point, ec)) {
    return Invalid(
        fmt::format("remotion entry point {} not found in {} (task_types.{}.entry_point)",
                    settings.entry_point, settings.project_dir.string(), type.name));
  }
  if (ctx.stop.stop_requested()) return Error{Errc::kUnavailable, "remotion render stopped"};

  std::vector<std::string> env = EnvironmentWith(type.env);
  BOOST_OUTCOME_TRY(auto argv, RemotionCommand(type, settings, env));

  // Remotion reads --props from a file when the value names one: no quoting, no argv limit.
  fs::path props_file = ctx.run_dir / "props.json";
  {
    std::ofstream out(props_file, std::ios::trunc);
    out << request.props.dump(2) << '\n';
    if (!out.flush()) {
      return Error{Errc::kInternal,
                   fmt::format("cannot write {}: {}", props_file.string(), std::strerror(errno))};
    }
  }
  fs::path output = ctx.run_dir / request.output;
  fs::create_directories(output.parent_path(), ec);
  fs::remove(output, ec);  // a file left by an earlier attempt must not pass for this one's

  argv.insert(argv.end(), {"render", settings.entry_point, request.composition, output.string(),
                           "--props=" + props_file.string()});
  if (!settings.codec.empty()) argv.push_back("--codec=" + settings.codec);
  if (!settings.concurrency.empty()) argv.push_back("--concurrency=" + settings.concurrency);
  if (!request.frames.empty()) argv.push_back("--frames=" + request.frames);
  argv.push_back("--log=info");  // one line per update when stdout is a pipe
  argv.insert(argv.end(), settings.extra_args.begin(), settings.extra_args.end());

  int log_fd = ::open(ctx.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Error{Errc::kInternal, fmt::format("cannot open log file {}: {}", ctx.log_file.string(),
                                              std::strerror(errno))};
  }
  RenderOutput parsed;
  Relay relay(log_fd, parsed, ctx.report_progress);
  relay.Log(fmt::format("remotion render in {}: {}\n", settings.project_dir.string(), Join(argv)));
  ChildSpec spec{.argv = argv, .env = std::move(env), .cwd = settings.project_dir, .grace = grace_};
  auto exit = RunChild(spec, ctx.stop, [&relay](std::string_view bytes) { relay.Write(bytes); });
  relay.Finish();

  auto fail = [&](Error error) -> Result<Outcome> {
    relay.Log(error.message + "\n");  // where a person looks first
    ::close(log_fd);
    return error;
  };
  if (!exit) {
    if (exit.error().code == Errc::kInvalidArgument &&
        exit.error().message.ends_with(std::strerror(ENOENT))) {
      return fail(NotInstalled(type, settings, exit.error().message));
    }
    return fail(exit.error());
  }
  if (exit.value().stopped) return fail(Error{Errc::kUnavailable, "remotion render stopped"});
  std::string error_line = parsed.ErrorLine();
  if (exit.value().signaled) {
    return fail(Invalid(fmt::format("remotion render killed by signal {}{}",
                                    SignalName(exit.value().signal),
                                    error_line.empty() ? "" : ": " + error_line)));
  }
  if (exit.value().code != 0) {
    if (parsed.npx_missing_package()) {
      return fail(NotInstalled(type, settings, "npx found no remotion package"));
    }
    return fail(Invalid(error_line.empty()
                            ? fmt::format("remotion render exited with code {}", exit.value().code)
                            : fmt::format("remotion render exited with code {}: {}",
                                          exit.value().code, error_line)));
  }
  auto size = fs::file_size(output, ec);
  if (ec || size == 0) {
    return fail(Invalid(fmt::format("remotion render exited 0 but wrote {} {}",
                                    ec ? "no" : "an empty", request.output.string())));
  }
  if (!parsed.finished()) {
    return fail(Invalid(
        "remotion render exited 0 before its last frame (no final \"Rendered N/N\" line; was it "
        "interrupted?)"));
  }
  ::close(log_fd);

  int frames = parsed.frames();
  std::string relative = output.lexically_relative(ctx.data_dir).generic_string();
  Json result = {{"output", relative}, {"frames", frames}, {"size_bytes", size}};
  auto fps = request.props.find("fps");
  if (fps != request.props.end() && fps->is_number() && fps->get<double>() > 0) {
    result["duration_s"] = frames / fps->get<double>();
  }
  if (ctx.report_progress) {
    ctx.report_progress(Progress{1.0, fmt::format("rendered {} frames", frames)});
  }
  return Outcome{.result = std::move(result), .files = {relative}};
}

}  // namespace gpuq::connectors
