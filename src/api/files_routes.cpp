// GET /runs/{id}/logs?attempt=N[&follow=1] and GET /runs/{id}/files/{path}: files under
// <data_dir>/runs/<id>/, never outside it. GET /gpu/service/{name}/logs?gpu=N[&follow=1]: a
// managed service's own output, <data_dir>/services/<name>/gpu<N>.log, read the same way.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <filesystem>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "api/errors.hpp"
#include "api/routes.hpp"

namespace gpuq::api {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr auto kPollInterval = 100ms;     // how often a followed log is checked for growth
constexpr auto kKeepAliveEvery = 15s;     // an SSE comment so idle proxies keep the stream
constexpr size_t kReadChunk = 64 * 1024;  // bytes read from a log per step

fs::path RunDir(const ApiContext& ctx, std::string_view id) {
  return ctx.data_dir / "runs" / std::string(id);
}

Error Invalid(std::string message) { return Error{Errc::kInvalidArgument, std::move(message)}; }

// ?attempt=N: nullopt when absent; kInvalidArgument unless a positive integer.
Result<std::optional<int>> ParseAttempt(std::string_view query) {
  auto text = QueryParam(query, "attempt");
  if (!text || text->empty()) return std::optional<int>();
  int value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value < 1) {
    return Invalid(fmt::format("attempt must be a positive integer, not \"{}\"", *text));
  }
  return std::optional<int>(value);
}

bool WantsFollow(std::string_view query) {
  auto follow = QueryParam(query, "follow");
  return follow && (*follow == "1" || *follow == "true" || *follow == "yes");
}

// An open file descriptor, closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Follows one attempt's log file: reads what was appended since the last call and turns each
// complete line into an SSE `data:` event.
class LogTail {
 public:
  explicit LogTail(fs::path path) : path_(std::move(path)) {}

  // Appends events for new complete lines to `out`. Opens the file once it exists.
  void ReadNew(std::string& out) {
    if (!fd_) {
      fd_ = Fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd_) return;
    }
    // A service restarted with a fresh log: start again from its beginning.
    struct stat st {};
    if (::fstat(fd_.get(), &st) == 0 && st.st_size < offset_) {
      offset_ = 0;
      partial_.clear();
    }
    char buffer[kReadChunk];
    while (true) {
      ssize_t n = ::pread(fd_.get(), buffer, sizeof buffer, offset_);
      if (n <= 0) return;
      offset_ += n;
      partial_.append(buffer, static_cast<size_t>(n));
      size_t start = 0;
      for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
        AppendEvent(std::string_view(partial_).substr(start, nl - start), out);
      }
      partial_.erase(0, start);
      // A line longer than this goes out in pieces rather than growing without bound.
      if (partial_.size() > kReadChunk) Flush(out);
      if (static_cast<size_t>(n) < sizeof buffer) return;
    }
  }

  // The last line when the file does not end with a newline.
  void Flush(std::string& out) {
    if (!partial_.empty()) AppendEvent(partial_, out);
    partial_.clear();
  }

 private:
  static void AppendEvent(std::string_view line, std::string& out) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out += "data: ";
    // A lone '\r' would end the SSE line early: it cannot be sent inside one data field.
    for (char c : line) out.push_back(c == '\r' ? ' ' : c);
    out += "\n\n";
  }

  fs::path path_;
  Fd fd_;
  off_t offset_ = 0;
  std::string partial_;
};

// The SSE producer. Parameters by value: it outlives the request that started it. Follows the
// given attempt, or (attempt 0) the latest one, moving on to a newer attempt's log when the run
// is retried. Ends with `event: end` once the run is finished and its log fully sent, or
// silently when the client leaves or the server stops.
asio::awaitable<void> FollowLog(ApiContext& ctx, EventSink& sink, std::string id,
                                int fixed_attempt) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  int attempt = 0;
  std::optional<LogTail> tail;
  std::string events;
  auto last_send = std::chrono::steady_clock::now();
  while (!sink.Stopping()) {
    // State first, then the file: a run seen finished has written its whole log, so the
    // read that follows gets every line before `end` goes out.
    auto run = ctx.store.Get(id);
    if (!run) co_return;  // purged meanwhile
    const bool finished = IsFinished(run.value().state);
    int wanted = fixed_attempt > 0 ? fixed_attempt : std::max(run.value().attempts, 1);
    events.clear();
    if (wanted != attempt) {
      if (tail) {
        tail->ReadNew(events);
        tail->Flush(events);
      }
      attempt = wanted;
      tail.emplace(RunDir(ctx, id) / "logs" / fmt::format("attempt-{}.log", attempt));
    }
    tail->ReadNew(events);
    if (finished) {
      tail->Flush(events);
      events += fmt::format("event: end\ndata: {}\n\n", ToString(run.value().state));
    } else if (events.empty() && std::chrono::steady_clock::now() - last_send > kKeepAliveEvery) {
      events = ": keep-alive\n\n";
    }
    if (!events.empty()) {
      if (!co_await sink.Send(events)) co_return;
      last_send = std::chrono::steady_clock::now();
    }
    if (finished) co_return;
    timer.expires_after(kPollInterval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<Response> Logs(ApiContext& ctx, const Request& request, PathParams params) {
  auto run = GetRun(ctx, params[0]);
  if (!run) co_return RunErrorResponse(params[0], run.error());
  auto attempt = ParseAttempt(request.query);
  if (!attempt) co_return ToHttpResponse(attempt.error());
  const std::string& id = run.value().id;

  if (WantsFollow(request.query)) {
    int fixed = attempt.value().value_or(0);
    if (fixed > std::max(run.value().attempts, 1)) {
      co_return ToHttpResponse(
          Error{Errc::kNotFound, fmt::format("run {} has no attempt {}", id, fixed)});
    }
    Response response;
    response.content_type = "text/event-stream";
    response.events = [&ctx, id, fixed](EventSink& sink) {
      return FollowLog(ctx, sink, id, fixed);
    };
    co_return response;
  }

  int n = attempt.value().value_or(run.value().attempts);
  if (n < 1) {
    co_return ToHttpResponse(Error{Errc::kNotFound, fmt::format("run {} has no log yet", id)});
  }
  fs::path file = RunDir(ctx, id) / "logs" / fmt::format("attempt-{}.log", n);
  std::error_code ec;
  if (n > run.value().attempts || !fs::is_regular_file(file, ec)) {
    co_return ToHttpResponse(
        Error{Errc::kNotFound, fmt::format("run {} has no log for attempt {}", id, n)});
  }
  Response response;
  response.content_type = "text/plain; charset=utf-8";
  response.file = std::move(file);
  co_return response;
}

std::string_view ContentTypeFor(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {".png", "image/png"},        {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},      {".gif", "image/gif"},
      {".webp", "image/webp"},      {".svg", "image/svg+xml"},
      {".wav", "audio/wav"},        {".mp3", "audio/mpeg"},
      {".flac", "audio/flac"},      {".ogg", "audio/ogg"},
      {".mp4", "video/mp4"},        {".webm", "video/webm"},
      {".mov", "video/quicktime"},  {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"}, {".log", "text/plain; charset=utf-8"},
      {".html", "text/html; charset=utf-8"}, {".css", "text/css"},
      {".js", "text/javascript"},   {".pdf", "application/pdf"},
  };
  for (const auto& [e, type] : kTypes) {
    if (ext == e) return type;
  }
  return "application/octet-stream";
}

Response OutsideRunDir() {
  return ErrorResponse(422, "path_outside_run_dir", "the path leaves the run's directory");
}

bool IsUnder(const fs::path& child, const fs::path& root) {
  auto [root_end, child_it] = std::mismatch(root.begin(), root.end(), child.begin(), child.end());
  return root_end == root.end();
}

asio::awaitable<Response> RunFile(ApiContext& ctx, const Request&, PathParams params) {
  auto run = GetRun(ctx, params[0]);
  if (!run) co_return RunErrorResponse(params[0], run.error());
  auto decoded = PercentDecode(params[1], false);
  if (!decoded) {
    co_return ToHttpResponse(Invalid("the file path has a bad percent escape or a NUL byte"));
  }
  // Lexical check first, so `..` is refused whether or not its target exists.
  fs::path relative(*decoded);
  if (relative.is_absolute()) co_return OutsideRunDir();
  relative = relative.lexically_normal();
  if (!relative.empty() && *relative.begin() == "..") co_return OutsideRunDir();

  fs::path run_dir = RunDir(ctx, run.value().id);
  std::error_code ec;
  fs::path real = fs::canonical(run_dir / relative, ec);
  if (ec) co_return ToHttpResponse(Error{Errc::kNotFound, "no such file in the run's directory"});
  // Then the real path: a symlink inside the run dir may point anywhere.
  fs::path real_root = fs::canonical(run_dir, ec);
  if (ec || !IsUnder(real, real_root)) co_return OutsideRunDir();
  if (!fs::is_regular_file(real, ec)) {
    co_return ToHttpResponse(Error{Errc::kNotFound, "not a file in the run's directory"});
  }
  Response response;
  response.content_type = ContentTypeFor(real);
  response.file = std::move(real);
  co_return response;
}

// Follows a service's log until the client leaves or the server stops: a service has no end.
asio::awaitable<void> FollowServiceLog(EventSink& sink, fs::path path) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  LogTail tail(std::move(path));
  std::string events;
  auto last_send = std::chrono::steady_clock::now();
  while (!sink.Stopping()) {
    events.clear();
    tail.ReadNew(events);
    if (events.empty() && std::chrono::steady_clock::now() - last_send > kKeepAliveEvery) {
      events = ": keep-alive\n\n";
    }
    if (!events.empty()) {
      if (!co_await sink.Send(events)) co_return;
      last_send = std::chrono::steady_clock::now();
    }
    timer.expires_after(kPollInterval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<Response> ServiceLogs(ApiContext& ctx, const Request& request, PathParams params) {
  auto name = PercentDecode(params[0], false);
  if (!name || !ctx.config.services.contains(*name)) {
    co_return ToHttpResponse(
        Error{Errc::kNotFound, fmt::format("unknown service \"{}\"", params[0].substr(0, 64))});
  }
  int gpu = 0;
  if (auto text = QueryParam(request.query, "gpu"); text && !text->empty()) {
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), gpu);
    if (ec != std::errc() || end != text->data() + text->size() || gpu < 0) {
      co_return ToHttpResponse(
          Invalid(fmt::format("gpu must be a GPU index (0, 1, ...), not \"{}\"", *text)));
    }
  }
  fs::path file = ctx.data_dir / "services" / *name / fmt::format("gpu{}.log", gpu);
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    co_return ToHttpResponse(
        Error{Errc::kNotFound, fmt::format("service {} has no log on GPU {} yet", *name, gpu)});
  }
  Response response;
  if (WantsFollow(request.query)) {
    response.content_type = "text/event-stream";
    response.events = [file](EventSink& sink) { return FollowServiceLog(sink, file); };
    co_return response;
  }
  response.content_type = "text/plain; charset=utf-8";
  response.file = std::move(file);
  co_return response;
}

}  // namespace

void AddFileRoutes(Router& router) {
  router.Add(Method::kGet, "/runs/{id}/logs", &Logs);
  router.Add(Method::kGet, "/runs/{id}/files/{path*}", &RunFile);
  router.Add(Method::kGet, "/gpu/service/{name}/logs", &ServiceLogs);
}

}  // namespace gpuq::api
