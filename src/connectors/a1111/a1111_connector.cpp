#include "connectors/a1111/a1111_connector.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stop_token>
#include <thread>

#include "core/base64.hpp"
#include "http/client.hpp"

namespace gpuq::connectors {

namespace fs = std::filesystem;

namespace {

using namespace std::chrono_literals;

constexpr int kDefaultIntervalMs = 250;
constexpr size_t kExcerpt = 200;
// Talking to A1111 after a stop: short, so that Execute returns well within a second even when
// the service hangs.
constexpr auto kStopRequestTimeout = 300ms;

std::string Excerpt(std::string_view text) {
  if (text.size() <= kExcerpt) return std::string(text);
  return std::string(text.substr(0, kExcerpt)) + "...";
}

// ---- payload

struct ParentFile {
  std::string run;
  fs::path file;  // normalised, relative, inside the run dir
};

// The mode a run uses: the payload's, else the task type's setting, else txt2img.
Result<std::string> ModeOf(const TaskType& type, const Json& payload) {
  const Json* mode = nullptr;
  if (auto it = payload.find("mode"); it != payload.end()) {
    mode = &*it;
  } else if (auto setting = type.settings.find("mode"); setting != type.settings.end()) {
    mode = &*setting;
  }
  if (mode == nullptr) return std::string("txt2img");
  if (!mode->is_string() || (*mode != "txt2img" && *mode != "img2img")) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("a1111 mode must be \"txt2img\" or \"img2img\", got {}",
                             mode->dump())};
  }
  return mode->get<std::string>();
}

// "data:image/png;base64,AAAA" -> "AAAA"; plain base64 is returned as is.
Result<std::string_view> StripDataUrl(std::string_view text) {
  if (!text.starts_with("data:")) return text;
  auto marker = text.find(";base64,");
  if (marker == std::string_view::npos) {
    return Error{Errc::kInvalidArgument, "a1111 init_image: a data: URL must be ;base64,"};
  }
  return text.substr(marker + 8);
}

Result<ParentFile> ParseParentFile(const Json& ref) {
  auto run = ref.find("run");
  auto file = ref.find("file");
  if (run == ref.end() || !run->is_string() || file == ref.end() || !file->is_string()) {
    return Error{Errc::kInvalidArgument,
                 "a1111 init_image must be base64 text or {\"run\": \"<run id>\", \"file\": "
                 "\"<path in that run's dir>\"}"};
  }
  if (ref.size() != 2) {
    return Error{Errc::kInvalidArgument, "a1111 init_image takes only \"run\" and \"file\""};
  }
  std::string id = run->get<std::string>();
  if (id.empty() || id == "." || id == ".." || id.find_first_of("/\\") != std::string::npos ||
      id.find('\0') != std::string::npos) {
    return Error{Errc::kInvalidArgument, fmt::format("a1111 init_image.run '{}' is not a run id",
                                                     Excerpt(id))};
  }
  std::string text = file->get<std::string>();
  fs::path path = fs::path(text).lexically_normal();
  if (text.empty() || text.find('\0') != std::string::npos || path.is_absolute() ||
      path.has_root_name() || path.empty() || *path.begin() == ".." || path == ".") {
    return Error{Errc::kInvalidArgument,
                 fmt::format("a1111 init_image.file '{}' must be a path inside run {}'s dir",
                             Excerpt(text), id)};
  }
  return ParentFile{std::move(id), std::move(path)};
}

// Reads a parent run's file, refusing one that leaves the run's dir through a symlink.
Result<std::string> ReadParentFile(const fs::path& data_dir, const ParentFile& parent) {
  fs::path run_dir = data_dir / "runs" / parent.run;
  fs::path path = run_dir / parent.file;
  std::error_code ec;
  fs::path real_dir = fs::canonical(run_dir, ec);
  if (ec) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("a1111 init_image: no run {} in {}", parent.run, data_dir.string())};
  }
  fs::path real = fs::canonical(path, ec);
  if (ec || !fs::is_regular_file(real)) {
    return Error{Errc::kInvalidArgument, fmt::format("a1111 init_image: run {} has no file {}",
                                                     parent.run, parent.file.string())};
  }
  auto rel = real.lexically_relative(real_dir);
  if (rel.empty() || *rel.begin() == "..") {
    return Error{Errc::kInvalidArgument,
                 fmt::format("a1111 init_image: {} of run {} leads outside the run's dir",
                             parent.file.string(), parent.run)};
  }
  std::ifstream in(real, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (!in) {
    return Error{Errc::kInternal, fmt::format("a1111 init_image: cannot read {}", real.string())};
  }
  return bytes.str();
}

// ---- replies

// A1111's words for a failed call: `detail` (a string, or FastAPI's 422 list), else
// "<error>: <errors>" (an exception in the job), else the start of the body.
std::string A1111Words(const std::string& body) {
  auto json = Json::parse(body, nullptr, false);
  if (!json.is_object()) return Excerpt(body);
  auto text = [&](const char* key) {
    auto it = json.find(key);
    return it != json.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (auto detail = json.find("detail"); detail != json.end() && detail->is_array()) {
    std::string out;
    for (const auto& problem : *detail) {
      std::string where;
      for (const auto& part : problem.value("loc", Json::array())) {
        if (!where.empty()) where += '.';
        where += part.is_string() ? part.get<std::string>() : part.dump();
      }
      if (!out.empty()) out += "; ";
      out += fmt::format("{}: {}", where, problem.value("msg", problem.dump()));
    }
    return out;
  }
  std::string detail = text("detail");
  std::string errors = text("errors");
  std::string error = text("error");
  if (!detail.empty()) return detail;
  if (!errors.empty()) return error.empty() ? errors : fmt::format("{}: {}", error, errors);
  if (!error.empty()) return error;
  return Excerpt(body);
}

// The file extension for an image's bytes; empty when they are not PNG, JPEG or WebP.
std::string_view ImageExtension(std::string_view bytes) {
  if (bytes.starts_with("\x89PNG\r\n\x1a\n")) return "png";
  if (bytes.starts_with("\xff\xd8\xff")) return "jpg";
  if (bytes.size() >= 12 && bytes.substr(0, 4) == "RIFF" && bytes.substr(8, 4) == "WEBP") {
    return "webp";
  }
  return {};
}

// ---- the attempt's log: written by the POSTing thread and the progress poller.

class AttemptLog {
 public:
  explicit AttemptLog(const fs::path& file) : out_(file, std::ios::app) {}
  void Line(const std::string& line) {
    std::lock_guard lock(mutex_);
    out_ << line << '\n' << std::flush;
  }

 private:
  std::mutex mutex_;
  std::ofstream out_;
};

// Polls /sdapi/v1/progress on a connection of its own while the generation call blocks, and
// reports the progress of our task only.
class ProgressPoller {
 public:
  ProgressPoller(http::Endpoint endpoint, std::string prefix, std::string task_id,
                 std::chrono::milliseconds interval, std::function<void(const Progress&)> report,
                 AttemptLog& log)
      : client_(std::move(endpoint), std::max(interval * 4, std::chrono::milliseconds(2000))),
        target_(std::move(prefix) + "/sdapi/v1/progress?skip_current_image=true"),
        task_id_(std::move(task_id)),
        interval_(interval),
        report_(std::move(report)),
        log_(log),
        thread_([this] { Loop(); }) {}

  ~ProgressPoller() { Stop(); }

  // Callable from any thread; returns at once. The thread is joined by the destructor.
  void Stop() {
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;
      stopped_ = true;
    }
    wake_.notify_all();
    client_.Abort();
  }

  void Join() {
    Stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    std::string other_logged;
    while (true) {
      auto reply = client_.Get(target_);
      if (reply && reply.value().status == 200) {
        auto json = Json::parse(reply.value().body, nullptr, false);
        if (json.is_object()) Take(json, other_logged);
      }
      std::unique_lock lock(mutex_);
      if (wake_.wait_for(lock, interval_, [&] { return stopped_; })) return;
    }
  }

  void Take(const Json& json, std::string& other_logged) {
    auto task = json.find("current_task");
    if (task == json.end() || !task->is_string()) return;
    if (*task != task_id_) {
      // A UI user's job (or another worker's) holds A1111's queue lock: its progress is not ours.
      if (*task != other_logged) {
        other_logged = task->get<std::string>();
        log_.Line(fmt::format("waiting: a1111 is running {}", other_logged));
      }
      return;
    }
    Progress progress;
    if (auto p = json.find("progress"); p != json.end() && p->is_number()) {
      progress.fraction = std::clamp(p->get<double>(), 0.0, 1.0);
    }
    const Json state = json.value("state", Json::object());
    int step = state.value("sampling_step", 0);
    int steps = state.value("sampling_steps", 0);
    int job_no = state.value("job_no", 0);
    int job_count = state.value("job_count", 0);
    progress.message = job_count > 1 ? fmt::format("image {}/{}, step {}/{}", job_no + 1,
                                                   job_count, step, steps)
                                     : fmt::format("step {}/{}", step, steps);
    report_(progress);
  }

  http::Client client_;
  std::string target_;
  std::string task_id_;
  std::chrono::milliseconds interval_;
  std::function<void(const Progress&)> report_;
  AttemptLog& log_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopped_ = false;
  std::thread thread_;  // last: starts once everything above is ready
};

std::string JoinPrefix(std::string target) {
  if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
  while (!target.empty() && target.back() == '/') target.pop_back();
  return target;
}

// After a stop: interrupts A1111's current job if it is ours. Interrupting is global, so a job of
// someone else's that still holds the queue lock is left alone (ours then never started; A1111
// will still run it when the lock frees, as it does not notice the client leaving).
void InterruptIfOurs(const http::Endpoint& endpoint, const std::string& prefix,
                     const std::string& task_id, AttemptLog& log) {
  http::Client client(endpoint, kStopRequestTimeout);
  auto progress = client.Get(prefix + "/sdapi/v1/progress?skip_current_image=true");
  if (progress && progress.value().status == 200) {
    auto json = Json::parse(progress.value().body, nullptr, false);
    if (json.is_object()) {
      auto task = json.find("current_task");
      if (task != json.end() && task->is_string() && *task != task_id) {
        log.Line(fmt::format("stopped while a1111 was still running {}: not interrupting it; "
                             "our queued job may still run later",
                             task->get<std::string>()));
        return;
      }
    }
  }
  auto reply = client.Post(prefix + "/sdapi/v1/interrupt", "{}");
  if (reply) {
    log.Line(fmt::format("POST /sdapi/v1/interrupt -> {}", reply.value().status));
  } else {
    log.Line(fmt::format("POST /sdapi/v1/interrupt failed: {}", reply.error().message));
  }
}

}  // namespace

A1111Connector::A1111Connector(ConnectorOptions options) : options_(std::move(options)) {}

std::vector<SettingProblem> A1111Connector::CheckSettings(const TaskType& type) const {
  std::vector<SettingProblem> problems;
  for (const auto& [key, value] : type.settings.items()) {
    if (key == "mode") {
      if (!value.is_string() || (value != "txt2img" && value != "img2img")) {
        problems.push_back({key, "must be \"txt2img\" or \"img2img\""});
      }
    } else if (key == "progress_interval_ms") {
      if (!value.is_number_integer() || value.get<int64_t>() < 50 ||
          value.get<int64_t>() > 60000) {
        problems.push_back({key, "must be an integer from 50 to 60000"});
      }
    } else if (key == "params") {
      if (!value.is_object()) problems.push_back({key, "must be a table of A1111 request fields"});
    } else {
      problems.push_back({key, "unknown setting (a1111 takes mode, progress_interval_ms, params)"});
    }
  }
  return problems;
}

Result<void> A1111Connector::Validate(const TaskType& type, const Json& payload) const {
  if (!payload.is_object()) {
    return Error{Errc::kInvalidArgument, "a1111 payload must be a JSON object"};
  }
  for (const auto& [key, value] : payload.items()) {
    if (key != "mode" && key != "params" && key != "init_image") {
      return Error{Errc::kInvalidArgument,
                   fmt::format("a1111 payload: unknown key \"{}\" (mode, params, init_image)", key)};
    }
  }
  BOOST_OUTCOME_TRY(auto mode, ModeOf(type, payload));
  const Json params = payload.value("params", Json::object());
  if (!params.is_object()) {
    return Error{Errc::kInvalidArgument, "a1111 params must be an object of A1111 request fields"};
  }
  auto init_images = params.find("init_images");
  bool has_init_images = init_images != params.end() && !init_images->is_null();
  if (has_init_images) {
    if (!init_images->is_array() || init_images->empty() ||
        !std::all_of(init_images->begin(), init_images->end(),
                     [](const Json& image) { return image.is_string(); })) {
      return Error{Errc::kInvalidArgument,
                   "a1111 params.init_images must be a non-empty list of base64 strings"};
    }
  }
  auto init_image = payload.find("init_image");
  if (init_image != payload.end()) {
    if (mode != "img2img") {
      return Error{Errc::kInvalidArgument, "a1111 init_image is only for mode \"img2img\""};
    }
    if (has_init_images) {
      return Error{Errc::kInvalidArgument,
                   "a1111: give init_image or params.init_images, not both"};
    }
    if (init_image->is_string()) {
      BOOST_OUTCOME_TRY(auto text, StripDataUrl(init_image->get_ref<const std::string&>()));
      auto bytes = Base64Decode(text);
      if (!bytes) {
        return Error{Errc::kInvalidArgument,
                     fmt::format("a1111 init_image is not valid {}", bytes.error().message)};
      }
      if (bytes.value().empty()) {
        return Error{Errc::kInvalidArgument, "a1111 init_image is empty"};
      }
    } else if (init_image->is_object()) {
      BOOST_OUTCOME_TRY(ParseParentFile(*init_image));
    } else {
      return Error{Errc::kInvalidArgument,
                   "a1111 init_image must be base64 text or {\"run\", \"file\"}"};
    }
  } else if (mode == "img2img" && !has_init_images) {
    return Error{Errc::kInvalidArgument,
                 "a1111 img2img needs an init image: init_image (base64 or {\"run\", \"file\"}) "
                 "or params.init_images"};
  }
  return Ok();
}

Result<Outcome> A1111Connector::Execute(RunContext& ctx) {
  if (ctx.service_url.empty()) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("task type {} has no service URL: the a1111 connector needs a "
                             "service-bound task type",
                             ctx.task_type.name)};
  }
  const Json& payload = ctx.run.payload;
  BOOST_OUTCOME_TRY(Validate(ctx.task_type, payload));
  BOOST_OUTCOME_TRY(auto mode, ModeOf(ctx.task_type, payload));
  BOOST_OUTCOME_TRY(auto base, http::ParseHttpUrl(ctx.service_url));
  std::string prefix = JoinPrefix(base.target);
  fs::path data_dir = ctx.data_dir.empty() ? options_.data_dir : ctx.data_dir;
  std::string task_id = fmt::format("task(gpuq-{})", ctx.run.id);

  // The request: the task type's default params, the payload's over them, then ours.
  Json request = ctx.task_type.settings.value("params", Json::object());
  const Json params = payload.value("params", Json::object());
  for (const auto& [key, value] : params.items()) request[key] = value;
  request["force_task_id"] = task_id;
  request["send_images"] = true;
  if (auto init = payload.find("init_image"); init != payload.end()) {
    std::string image;
    if (init->is_string()) {
      BOOST_OUTCOME_TRY(auto text, StripDataUrl(init->get_ref<const std::string&>()));
      image = std::string(text);
    } else {
      BOOST_OUTCOME_TRY(auto parent, ParseParentFile(*init));
      BOOST_OUTCOME_TRY(auto bytes, ReadParentFile(data_dir, parent));
      image = Base64Encode(bytes);
    }
    request["init_images"] = Json::array({std::move(image)});
  }
  int interval_ms = ctx.task_type.settings.value("progress_interval_ms", kDefaultIntervalMs);

  AttemptLog log(ctx.log_file);
  std::string target = prefix + "/sdapi/v1/" + mode;
  // The agent enforces the run's timeout through ctx.stop; the socket deadline only catches a
  // service that went silent.
  int timeout_s = ctx.run.timeout_s > 0 ? ctx.run.timeout_s : ctx.task_type.timeout_s;
  http::Client client(base.endpoint, std::chrono::seconds(std::max(timeout_s, 1)));
  ProgressPoller poller(base.endpoint, prefix, task_id, std::chrono::milliseconds(interval_ms),
                        ctx.report_progress ? ctx.report_progress
                                            : std::function<void(const Progress&)>([](const Progress&) {}),
                        log);
  std::stop_callback abort_on_stop(ctx.stop, [&] {
    client.Abort();
    poller.Stop();
  });

  log.Line(fmt::format("POST http://{}:{}{} task={}", base.endpoint.host, base.endpoint.port,
                       target, task_id));
  auto started = std::chrono::steady_clock::now();
  auto response = client.Post(target, request.dump());
  auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
  poller.Join();

  if (ctx.stop.stop_requested()) {
    log.Line(fmt::format("stopped after {} ms", took.count()));
    InterruptIfOurs(base.endpoint, prefix, task_id, log);
    return Error{Errc::kUnavailable, "a1111 run stopped"};
  }
  if (!response) {
    log.Line(fmt::format("failed after {} ms: {}", took.count(), response.error().message));
    return Error{response.error().code,
                 fmt::format("a1111 {} at {}: {}", mode, ctx.service_url, response.error().message)};
  }
  const auto& reply = response.value();
  log.Line(fmt::format("status {} after {} ms, {} bytes", reply.status, took.count(),
                       reply.body.size()));
  if (reply.status != 200) {
    log.Line(Excerpt(reply.body));
    bool transient = reply.status == 502 || reply.status == 503 || reply.status == 504;
    std::string words = A1111Words(reply.body);
    if (reply.status == 404 && words == "Not Found") {
      words += " (is A1111 started with --api?)";
    }
    return Error{transient ? Errc::kUnavailable : Errc::kInvalidArgument,
                 fmt::format("a1111 {} replied {}: {}", mode, reply.status, words)};
  }

  auto json = Json::parse(reply.body, nullptr, false);
  if (!json.is_object()) {
    log.Line(Excerpt(reply.body));
    return Error{Errc::kInvalidArgument,
                 fmt::format("a1111 {} replied 200 with a body that is not a JSON object: {}", mode,
                             Excerpt(reply.body))};
  }
  auto images = json.find("images");
  if (images == json.end() || !images->is_array()) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("a1111 {} replied 200 without an \"images\" list", mode)};
  }
  // `info` is a JSON document inside a string.
  Json info = Json::object();
  if (auto it = json.find("info"); it != json.end()) {
    if (it->is_string()) {
      info = Json::parse(it->get<std::string>(), nullptr, false);
      if (info.is_discarded()) {
        log.Line("info is not JSON; kept as text");
        info = *it;
      }
    } else {
      info = *it;
    }
  }
  size_t first = 0;
  if (info.is_object()) {
    auto index = info.find("index_of_first_image");
    if (index != info.end() && index->is_number_unsigned()) first = index->get<size_t>();
  }
  if (images->size() <= first) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("a1111 {} returned no images (was it interrupted from elsewhere?)",
                             mode)};
  }

  Outcome outcome;
  Json paths = Json::array();
  Json grid = nullptr;
  for (size_t i = 0; i < images->size(); ++i) {
    const Json& image = (*images)[i];
    if (!image.is_string()) {
      return Error{Errc::kInvalidArgument,
                   fmt::format("a1111 {} reply: image {} is not a string", mode, i)};
    }
    auto text = StripDataUrl(image.get_ref<const std::string&>());
    auto bytes = text ? Base64Decode(text.value()) : Result<std::string>(text.error());
    if (!bytes) {
      return Error{Errc::kInvalidArgument, fmt::format("a1111 {} reply: image {} is not {}", mode,
                                                       i, bytes.error().message)};
    }
    std::string_view ext = ImageExtension(bytes.value());
    if (ext.empty()) {
      return Error{Errc::kInvalidArgument,
                   fmt::format("a1111 {} reply: image {} is not a PNG, JPEG or WebP", mode, i)};
    }
    fs::path file = ctx.run_dir / fmt::format("image-{}.{}", i, ext);
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out.write(bytes.value().data(), static_cast<std::streamsize>(bytes.value().size()));
      if (!out) {
        return Error{Errc::kInternal, fmt::format("a1111: cannot write {}", file.string())};
      }
    }
    std::string rel = file.lexically_relative(data_dir).generic_string();
    outcome.files.push_back(rel);
    if (i < first) {
      grid = rel;
    } else {
      paths.push_back(rel);
    }
  }
  log.Line(fmt::format("wrote {} image(s)", images->size()));
  if (ctx.report_progress) ctx.report_progress(Progress{1.0, "done"});

  Json result = {{"images", paths}, {"grid", grid}, {"task_id", task_id}, {"mode", mode}};
  if (info.is_object()) {
    result["seed"] = info.value("seed", Json(nullptr));
    result["all_seeds"] = info.value("all_seeds", Json::array());
  }
  result["info"] = std::move(info);
  outcome.result = std::move(result);
  return outcome;
}

}  // namespace gpuq::connectors
