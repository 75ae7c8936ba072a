#include "connectors/container/container_connector.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <stop_token>
#include <thread>

#include "connectors/command/command_connector.hpp"
#include "core/placeholder.hpp"

namespace gpuq::connectors {

namespace {

using namespace std::chrono_literals;

constexpr size_t kLastLines = 3;   // lines quoted when a container fails
constexpr size_t kMaxLine = 1024;  // longer lines are cut in those quotes
constexpr auto kSettle = 10s;      // from the end of the log stream to the exited state
constexpr auto kWatchPoll = 250ms;  // how often the log watcher looks at the container
constexpr auto kLogGrace = 1s;      // stopped this long: its output has arrived

const std::set<std::string, std::less<>> kSettingKeys = {
    "image",   "allow_image_override", "command", "allow_command_override",
    "pull",    "name_prefix",          "network", "mounts",
    "workdir", "shm_size_mb",          "keep"};

bool NameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}

// "/host:/container[:ro|rw]" with both paths absolute.
bool ValidMount(const std::string& bind) {
  auto first = bind.find(':');
  if (first == std::string::npos || first == 0 || bind[0] != '/') return false;
  auto rest = std::string_view(bind).substr(first + 1);
  auto second = rest.find(':');
  auto target = rest.substr(0, second);
  if (target.empty() || target[0] != '/') return false;
  if (second == std::string_view::npos) return true;
  auto mode = rest.substr(second + 1);
  return mode == "ro" || mode == "rw";
}

Result<std::vector<std::string>> StringArray(const Json& value, std::string_view what) {
  if (!value.is_array()) {
    return Error{Errc::kInvalidArgument, fmt::format("{} must be an array of strings", what)};
  }
  std::vector<std::string> out;
  for (const auto& item : value) {
    if (!item.is_string()) {
      return Error{Errc::kInvalidArgument, fmt::format("{} must be an array of strings", what)};
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

// Appends the container's output to the log file and keeps its last lines for the error.
class LogRelay {
 public:
  explicit LogRelay(int fd) : fd_(fd) {}

  void Write(int stream, std::string_view bytes) {
    WriteRaw(bytes);
    std::string& partial = partial_[stream == 2 ? 1 : 0];
    for (char c : bytes) {
      if (c != '\n') {
        if (partial.size() < kMaxLine) partial.push_back(c);
        continue;
      }
      Keep(partial);
      partial.clear();
    }
  }

  void WriteRaw(std::string_view bytes) {
    while (!bytes.empty() && fd_ >= 0) {
      ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;  // a full disk must not fail the run; its output is lost
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  std::string LastLines() {
    for (auto& partial : partial_) {
      Keep(partial);
      partial.clear();
    }
    std::string out;
    for (const auto& line : lines_) out += (out.empty() ? "" : " | ") + line;
    return out;
  }

 private:
  void Keep(std::string line) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) return;
    lines_.push_back(std::move(line));
    if (lines_.size() > kLastLines) lines_.pop_front();
  }

  int fd_;
  std::string partial_[2];
  std::deque<std::string> lines_;
};

Result<Json> PayloadObject(const Json& payload) {
  if (!payload.is_object()) {
    return Error{Errc::kInvalidArgument, "container payload must be a JSON object"};
  }
  return payload;
}

}  // namespace

Result<ContainerSettings> ParseContainerSettings(const TaskType& type,
                                                 std::vector<SettingProblem>* problems) {
  std::vector<SettingProblem> found;
  ContainerSettings out;
  const Json& s = type.settings;
  auto problem = [&](std::string key, std::string message) {
    found.push_back({std::move(key), std::move(message)});
  };
  auto text = [&](const char* key, std::string& field) {
    if (!s.contains(key)) return;
    if (!s[key].is_string()) return problem(key, "must be a string");
    field = s[key].get<std::string>();
  };
  auto flag = [&](const char* key, bool& field) {
    if (!s.contains(key)) return;
    if (!s[key].is_boolean()) return problem(key, "must be true or false");
    field = s[key].get<bool>();
  };
  if (!s.is_object()) {
    problem("settings", "must be a table");
  } else {
    for (const auto& [key, value] : s.items()) {
      if (!kSettingKeys.count(key)) problem(key, "unknown setting of the container connector");
    }
    text("image", out.image);
    flag("allow_image_override", out.allow_image_override);
    flag("allow_command_override", out.allow_command_override);
    flag("pull", out.pull);
    flag("keep", out.keep);
    text("name_prefix", out.name_prefix);
    text("network", out.network);
    text("workdir", out.workdir);
    if (s.contains("command")) {
      auto command = StringArray(s["command"], "command");
      if (!command) {
        problem("command", "must be an array of strings");
      } else {
        out.command = std::move(command).value();
        for (const auto& element : out.command) {
          if (auto names = PlaceholderNames(element); !names) {
            problem("command", names.error().message);
            break;
          }
        }
      }
    }
    if (s.contains("mounts")) {
      auto mounts = StringArray(s["mounts"], "mounts");
      if (!mounts) {
        problem("mounts", "must be an array of strings");
      } else {
        for (const auto& bind : mounts.value()) {
          if (!ValidMount(bind)) {
            problem("mounts", fmt::format("'{}' is not /host/path:/container/path[:ro|rw]", bind));
            break;
          }
        }
        out.mounts = std::move(mounts).value();
      }
    }
    if (s.contains("shm_size_mb")) {
      if (!s["shm_size_mb"].is_number_integer() || s["shm_size_mb"].get<long long>() <= 0) {
        problem("shm_size_mb", "must be a positive integer");
      } else {
        out.shm_size_mb = s["shm_size_mb"].get<long long>();
      }
    }
  }
  if (out.image.empty() && !out.allow_image_override) {
    problem("image", "required (or set allow_image_override = true and give payload.image)");
  }
  if (out.name_prefix.empty() || !std::isalnum(static_cast<unsigned char>(out.name_prefix[0])) ||
      !std::all_of(out.name_prefix.begin(), out.name_prefix.end(), NameChar)) {
    problem("name_prefix", "must match [a-zA-Z0-9][a-zA-Z0-9_.-]*");
  }
  if (out.network.empty()) problem("network", "must not be empty");
  if (out.workdir.empty() || out.workdir[0] != '/' || out.workdir == "/") {
    problem("workdir", "must be an absolute path other than /");
  }
  if (!found.empty()) {
    std::string message = fmt::format("task type {}: ", type.name);
    for (size_t i = 0; i < found.size(); ++i) {
      message += fmt::format("{}{}: {}", i ? "; " : "", found[i].key, found[i].message);
    }
    if (problems) *problems = std::move(found);
    return Error{Errc::kInvalidArgument, message};
  }
  return out;
}

std::string ContainerName(std::string_view prefix, std::string_view type, std::string_view run_id) {
  std::string name = fmt::format("{}_{}_{}", prefix, type, run_id.substr(0, 8));
  for (char& c : name) {
    if (!NameChar(c)) c = '_';
  }
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) name.insert(0, "c");
  return name;
}

Result<http::ContainerSpec> BuildContainerSpec(const TaskType& type,
                                               const ContainerSettings& settings,
                                               const Json& payload, const ContainerRun& run) {
  BOOST_OUTCOME_TRY(PayloadObject(payload));
  http::ContainerSpec spec;
  spec.name = ContainerName(settings.name_prefix, type.name, run.run_id);
  spec.image = settings.image;
  if (payload.contains("image")) {
    if (!settings.allow_image_override) {
      return Error{Errc::kInvalidArgument,
                   fmt::format("task type {} does not allow payload.image (its image is fixed: "
                               "allow_image_override = true would allow it)",
                               type.name)};
    }
    if (!payload["image"].is_string() || payload["image"].get<std::string>().empty()) {
      return Error{Errc::kInvalidArgument, "payload.image must be a non-empty string"};
    }
    spec.image = payload["image"].get<std::string>();
  }
  if (spec.image.empty()) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("task type {} has no image: payload.image is required", type.name)};
  }

  Json values = CommandValues(payload, run.run_id, settings.workdir, run.data_dir, run.attempt);
  if (payload.contains("command")) {
    if (!settings.allow_command_override) {
      return Error{Errc::kInvalidArgument,
                   fmt::format("task type {} does not allow payload.command "
                               "(allow_command_override = true would allow it)",
                               type.name)};
    }
    BOOST_OUTCOME_TRY(spec.cmd, StringArray(payload["command"], "payload.command"));
    if (spec.cmd.empty()) {
      return Error{Errc::kInvalidArgument, "payload.command must not be empty"};
    }
  } else {
    for (const auto& element : settings.command) {
      auto filled = FillText(element, values);
      if (!filled) {
        return Error{filled.error().code, fmt::format("command: {}", filled.error().message)};
      }
      spec.cmd.push_back(std::move(filled).value());
    }
  }

  if (payload.contains("env")) {
    const Json& env = payload["env"];
    if (!env.is_object()) {
      return Error{Errc::kInvalidArgument, "payload.env must be an object of strings"};
    }
    for (const auto& [key, value] : env.items()) {
      if (!value.is_string() || key.empty() || key.find('=') != std::string::npos) {
        return Error{Errc::kInvalidArgument,
                     fmt::format("payload.env.{} must be a string named without '='", key)};
      }
      spec.env[key] = value.get<std::string>();
    }
  }
  for (const auto& [key, value] : type.env) {
    auto filled = FillText(value, values);
    if (!filled) {
      return Error{filled.error().code, fmt::format("env {}: {}", key, filled.error().message)};
    }
    spec.env[key] = std::move(filled).value();
  }
  spec.env["GPUQ_RUN_ID"] = run.run_id;
  spec.env["GPUQ_RUN_DIR"] = settings.workdir;
  spec.env["GPUQ_ATTEMPT"] = std::to_string(run.attempt);

  spec.labels = {{"gpuq.run", run.run_id},
                 {"gpuq.type", type.name},
                 {"gpuq.attempt", std::to_string(run.attempt)},
                 {"gpuq.managed", "true"}};
  spec.binds.push_back(fmt::format("{}:{}:rw", run.run_dir.string(), settings.workdir));
  for (const auto& bind : settings.mounts) spec.binds.push_back(bind);
  spec.network_mode = settings.network;
  spec.working_dir = settings.workdir;
  if (settings.shm_size_mb) spec.shm_size_bytes = *settings.shm_size_mb * 1024 * 1024;
  // A GPU only where the agent named a real NVIDIA one: asking for the nvidia driver on a host
  // without the toolkit fails the create.
  if (!run.gpu_uuid.empty()) {
    spec.devices.push_back(http::DeviceRequest{
        .driver = "nvidia", .count = 0, .device_ids = {run.gpu_uuid}, .capabilities = {{"gpu"}}});
  }
  return spec;
}

ContainerConnector::ContainerConnector(const ConnectorOptions& options)
    : docker_(std::make_unique<http::DockerClient>(
          http::DockerOptions{.socket = options.docker_socket, .timeout = 30s})) {}

ContainerConnector::~ContainerConnector() = default;

std::vector<SettingProblem> ContainerConnector::CheckSettings(const TaskType& type) const {
  std::vector<SettingProblem> problems;
  (void)ParseContainerSettings(type, &problems);
  return problems;
}

Result<void> ContainerConnector::Validate(const TaskType& type, const Json& payload) const {
  BOOST_OUTCOME_TRY(auto settings, ParseContainerSettings(type));
  ContainerRun run{
      .run_id = "00000000-run", .attempt = 1, .run_dir = "/run-dir", .data_dir = "/data-dir"};
  BOOST_OUTCOME_TRY(BuildContainerSpec(type, settings, payload, run));
  return Ok();
}

Result<Outcome> ContainerConnector::Execute(RunContext& ctx) {
  const Run& run = ctx.run;
  BOOST_OUTCOME_TRY(auto settings, ParseContainerSettings(ctx.task_type));
  ContainerRun inputs{.run_id = run.id,
                      .attempt = run.attempts,
                      .run_dir = ctx.run_dir,
                      .data_dir = ctx.data_dir,
                      .gpu_uuid = ctx.gpu_uuid};
  BOOST_OUTCOME_TRY(auto spec, BuildContainerSpec(ctx.task_type, settings, run.payload, inputs));
  http::DockerClient& docker = *docker_;
  auto started = std::chrono::steady_clock::now();
  auto deadline = started + std::chrono::seconds(run.timeout_s > 0 ? run.timeout_s : 365 * 86400);

  int log_fd = ::open(ctx.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return Error{Errc::kInternal, fmt::format("cannot open log file {}: {}", ctx.log_file.string(),
                                              std::strerror(errno))};
  }
  LogRelay relay(log_fd);
  // Every failure is also said in the run's log: that is where a person looks first.
  auto fail = [&](Error error) {
    relay.WriteRaw("gpuq: " + error.message + "\n");
    return error;
  };
  auto stopped = [&] { return fail(Error{Errc::kUnavailable, "container stopped"}); };
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } close_fd{log_fd};

  if (ctx.stop.stop_requested()) return stopped();

  // A container by this name is left from an earlier attempt of this run (an agent that died,
  // or keep = true): remove it. One of another run (the first 8 characters of the ids agree)
  // is not ours: take a name with the whole run id instead.
  auto leftover = docker.Inspect(spec.name);
  if (!leftover && leftover.error().code != Errc::kNotFound) {
    return fail(Error{leftover.error().code,
                      fmt::format("docker engine unavailable: {}", leftover.error().message)});
  }
  if (leftover) {
    auto owner = leftover.value().labels.find("gpuq.run");
    if (owner != leftover.value().labels.end() && owner->second != run.id) {
      spec.name = fmt::format("{}_{}_{}", settings.name_prefix, ctx.task_type.name, run.id);
      for (char& c : spec.name) {
        if (!NameChar(c)) c = '_';
      }
    }
    (void)docker.Kill(spec.name, "SIGKILL");
    (void)docker.Remove(spec.name, /*force=*/true);
  }

  auto created = docker.Create(spec);
  if (!created && created.error().code == Errc::kNotFound) {
    if (!settings.pull) {
      return fail(Error{Errc::kInvalidArgument,
                        fmt::format("image {} not found: pull it or set pull = true", spec.image)});
    }
    relay.WriteRaw(fmt::format("gpuq: pulling image {}\n", spec.image));
    auto pulled = docker.Pull(spec.image, ctx.stop, deadline);
    if (ctx.stop.stop_requested()) return stopped();
    if (!pulled) {
      return fail(Error{pulled.error().code, fmt::format("pull image {} failed: {}", spec.image,
                                                         pulled.error().message)});
    }
    created = docker.Create(spec);
  }
  if (!created && created.error().code == Errc::kConflict) {
    // Another create of this name won a race with the removal above: remove it and go again.
    (void)docker.Remove(spec.name, /*force=*/true);
    created = docker.Create(spec);
  }
  if (!created) return fail(created.error());

  // From here on the container exists: remove it on every way out (unless kept).
  auto remove = [&] {
    if (settings.keep) return;
    (void)docker.Remove(spec.name, /*force=*/true);
  };
  auto kill_and_remove = [&] {
    // SIGKILL first: podman's forced removal sends SIGTERM and waits out the stop timeout,
    // which a shell as PID 1 ignores.
    (void)docker.Kill(spec.name, "SIGKILL");
    if (!settings.keep) (void)docker.Remove(spec.name, /*force=*/true);
  };

  if (ctx.stop.stop_requested()) {
    remove();
    return stopped();
  }
  if (auto ok = docker.Start(spec.name); !ok) {
    remove();
    return fail(Error{ok.error().code,
                      fmt::format("start container {}: {}", spec.name, ok.error().message)});
  }
  // Podman (4.3) at times keeps a follow=1 log stream open after a container that exited at
  // once: a CI run waited 25 minutes on `exit 0`. A watcher ends the stream once the container
  // has been stopped for kLogGrace, by when its output has arrived.
  std::stop_source end_logs;
  std::stop_callback forward_stop(ctx.stop, [&] { end_logs.request_stop(); });
  std::atomic<bool> ended_by_exit{false};
  std::jthread watcher([&](std::stop_token watching) {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    auto pause = [&](auto how_long) {  // false once the watcher is told to stop
      cv.wait_for(lock, watching, how_long, [] { return false; });
      return !watching.stop_requested();
    };
    while (pause(kWatchPoll)) {
      auto info = docker.Inspect(spec.name);
      bool gone = !info && info.error().code == Errc::kNotFound;
      if (!gone && (!info || info.value().running)) continue;
      if (!pause(kLogGrace)) return;
      ended_by_exit = true;
      end_logs.request_stop();
      return;
    }
  });
  auto followed = docker.FollowLogs(
      spec.name, [&](int stream, std::string_view bytes) { relay.Write(stream, bytes); },
      end_logs.get_token(), deadline);
  watcher.request_stop();
  watcher.join();
  if (ctx.stop.stop_requested()) {
    kill_and_remove();
    return stopped();
  }
  if (ended_by_exit) followed = Ok();
  if (!followed && followed.error().code == Errc::kTimeout) {
    kill_and_remove();
    return fail(
        Error{Errc::kTimeout, fmt::format("container {} ran past the run's timeout of {} s; killed",
                                          spec.name, run.timeout_s)});
  }
  if (!followed) {
    kill_and_remove();
    return fail(Error{followed.error().code,
                      fmt::format("container {}: {}", spec.name, followed.error().message)});
  }

  // The log stream ends as the container stops; its state may trail by a moment.
  auto exited = docker.WaitExited(spec.name, kSettle);
  if (!exited) {
    kill_and_remove();
    return fail(Error{exited.error().code == Errc::kTimeout ? Errc::kInternal : exited.error().code,
                      fmt::format("container {}: {}", spec.name, exited.error().message)});
  }
  remove();
  const http::ContainerInfo& info = exited.value();
  if (info.exit_code != 0 || info.oom_killed) {
    std::string last = relay.LastLines();
    std::string what =
        info.oom_killed
            ? fmt::format("container {} was killed by the out-of-memory killer (exit code {})",
                          spec.name, info.exit_code)
            : fmt::format("container {} exited with code {}", spec.name, info.exit_code);
    if (!last.empty()) what += "; last lines: " + last;
    return fail(Error{Errc::kInvalidArgument, what});
  }
  auto files = ListRunFiles(ctx.run_dir, ctx.data_dir);
  Outcome outcome;
  outcome.result = Json{{"container", spec.name},
                        {"image", spec.image},
                        {"exit_code", info.exit_code},
                        {"files", files}};
  outcome.files = std::move(files);
  return outcome;
}

}  // namespace gpuq::connectors
