// Benchmark (a) of bench/run.sh: the queue end to end. Submits N `echo` tasks over HTTP on
// C concurrent keep-alive connections to a `gpuq serve` whose agent completes them, waits
// until all are completed, and checks each one completed exactly once.
//
//   gpuq_bench_submit_drain --port P [--host 127.0.0.1] [--tasks 20000] [--connections 64]
//                           [--timeout-s 300]
//
// Prints one JSON line: {"submitted":N,"completed":N,"seconds":..,"tasks_per_s":..,...}.
// `seconds` runs from the first submit to the last run's finished_at (read back from the
// server, so the polling interval does not count); `observed_seconds` is when this program
// saw the last one finish. Exit status 0 only when every task completed exactly once.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "load/conn.hpp"
#include "core/clock.hpp"

namespace asio = boost::asio;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int tasks = 20'000;
  int connections = 64;
  int timeout_s = 300;
};

struct TaskCheck {
  std::string status;
  int attempts = 0;
  std::optional<double> finished_at;  // seconds since the epoch
  bool payload_ok = false;
};

struct Shared {
  Options options;
  std::vector<std::string> ids;  // index k: the task whose payload is {"i": k}
  std::vector<TaskCheck> checks;
  int next = 0;
  int submit_errors = 0;
  int read_errors = 0;
  std::string first_error;

  void NoteError(std::string what) {
    if (first_error.empty()) first_error = std::move(what);
  }
};

asio::awaitable<void> Submitter(Shared& shared) {
  gpuq::bench::Conn conn(co_await asio::this_coro::executor, shared.options.host,
                         shared.options.port);
  while (shared.next < shared.options.tasks) {
    int k = shared.next++;
    std::string body =
        R"({"task_type":"echo","priority":50,"payload":{"i":)" + std::to_string(k) + "}}";
    auto reply = co_await conn.Request("POST", "/submit_task", std::move(body));
    if (reply.status != 200) {
      ++shared.submit_errors;
      shared.NoteError("submit: " + (reply.status ? std::to_string(reply.status) + " " + reply.body
                                                  : reply.error));
      continue;
    }
    auto json = Json::parse(reply.body, nullptr, false);
    if (json.is_discarded() || !json.contains("task_id") || !json["task_id"].is_string()) {
      ++shared.submit_errors;
      shared.NoteError("submit: no task_id in " + reply.body);
      continue;
    }
    shared.ids[k] = json["task_id"].get<std::string>();
  }
}

// Reads back every task from `begin` on (shared cursor), recording what it says.
asio::awaitable<void> Reader(Shared& shared, std::vector<int>& todo, std::size_t& cursor) {
  gpuq::bench::Conn conn(co_await asio::this_coro::executor, shared.options.host,
                         shared.options.port);
  while (cursor < todo.size()) {
    int k = todo[cursor++];
    auto reply = co_await conn.Request("GET", "/task_status/" + shared.ids[k]);
    TaskCheck check;
    auto json = reply.status == 200 ? Json::parse(reply.body, nullptr, false) : Json();
    if (reply.status != 200 || json.is_discarded() || !json.is_object()) {
      ++shared.read_errors;
      shared.NoteError("task_status " + shared.ids[k] + ": " +
                       (reply.status ? std::to_string(reply.status) : reply.error));
    } else {
      check.status = json.value("status", "");
      check.attempts = json.value("attempts", 0);
      if (json.contains("finished_at") && json["finished_at"].is_string()) {
        auto t = gpuq::ParseTime(json["finished_at"].get<std::string>());
        if (t) check.finished_at = gpuq::ToMillis(*t) / 1000.0;
      }
      const Json& payload = json.contains("payload") ? json["payload"] : Json();
      check.payload_ok = payload.is_object() && payload.value("i", -1) == k;
    }
    shared.checks[k] = std::move(check);
  }
}

bool Finished(const std::string& status) {
  return status == "completed" || status == "failed" || status == "cancelled";
}

void Spawn(asio::io_context& io, asio::awaitable<void> task) {
  asio::co_spawn(io, std::move(task), [](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
}

// Runs `count` copies of make() to completion on `io`.
template <class Make>
void RunAll(asio::io_context& io, int count, Make make) {
  for (int i = 0; i < count; ++i) Spawn(io, make());
  io.restart();
  io.run();
}

std::optional<Options> ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--host") o.host = value;
    else if (flag == "--port") o.port = std::atoi(value);
    else if (flag == "--tasks") o.tasks = std::atoi(value);
    else if (flag == "--connections") o.connections = std::atoi(value);
    else if (flag == "--timeout-s") o.timeout_s = std::atoi(value);
    else return std::nullopt;
  }
  if (argc % 2 == 0 || o.port <= 0 || o.tasks <= 0 || o.connections <= 0) return std::nullopt;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  auto options = ParseArgs(argc, argv);
  if (!options) {
    std::fprintf(stderr,
                 "usage: %s --port P [--host H] [--tasks N] [--connections C] [--timeout-s S]\n",
                 argv[0]);
    return 2;
  }
  Shared shared;
  shared.options = *options;
  const int n = options->tasks;
  shared.ids.resize(n);
  shared.checks.resize(n);
  asio::io_context io(1);

  // 1. Submit everything.
  const double wall_start =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto start = SteadyClock::now();
  RunAll(io, options->connections, [&] { return Submitter(shared); });
  const double submit_seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  if (shared.submit_errors > 0) {
    std::fprintf(stderr, "submit_drain: %d submits failed; first: %s\n", shared.submit_errors,
                 shared.first_error.c_str());
    return 1;
  }

  // 2. Wait for the drain: read back every task not yet seen finished, with all connections,
  // pausing between sweeps. Claims are FIFO, so the tail of the list is polled cheaply first:
  // a sweep of everything only starts once the last task has finished.
  std::vector<int> todo;
  const auto deadline = start + std::chrono::seconds(options->timeout_s);
  std::optional<SteadyClock::time_point> observed;
  for (;;) {
    todo.clear();
    if (!Finished(shared.checks[n - 1].status)) {
      todo.push_back(n - 1);
    } else {
      for (int k = 0; k < n; ++k) {
        if (!Finished(shared.checks[k].status)) todo.push_back(k);
      }
      if (todo.empty()) {
        observed = SteadyClock::now();
        break;
      }
    }
    std::size_t cursor = 0;
    int readers = std::min<int>(options->connections, static_cast<int>(todo.size()));
    RunAll(io, readers, [&] { return Reader(shared, todo, cursor); });
    if (shared.read_errors > 0) {
      std::fprintf(stderr, "submit_drain: status reads failed; first: %s\n",
                   shared.first_error.c_str());
      return 1;
    }
    if (SteadyClock::now() > deadline) break;
    if (todo.size() < 1000) {  // a small sweep: give the agent time before asking again
      asio::steady_timer pause(io, std::chrono::milliseconds(5));
      pause.wait();
    }
  }

  // 3. Verify: every task completed, exactly one attempt, its own payload, distinct ids.
  int completed = 0, failed = 0, unfinished = 0, retried = 0, wrong_payload = 0;
  double last_finish = 0;
  for (int k = 0; k < n; ++k) {
    const TaskCheck& c = shared.checks[k];
    if (c.status == "completed") ++completed;
    else if (Finished(c.status)) ++failed;
    else ++unfinished;
    if (c.status == "completed" && c.attempts != 1) ++retried;
    if (!c.payload_ok) ++wrong_payload;
    if (c.finished_at && *c.finished_at > last_finish) last_finish = *c.finished_at;
  }
  std::vector<std::string> sorted_ids = shared.ids;
  std::sort(sorted_ids.begin(), sorted_ids.end());
  int duplicate_ids =
      static_cast<int>(sorted_ids.end() - std::unique(sorted_ids.begin(), sorted_ids.end()));

  double observed_seconds =
      observed ? std::chrono::duration<double>(*observed - start).count() : -1;
  // finished_at has millisecond precision; fall back to what we observed when it is absent.
  double seconds = last_finish > 0 ? last_finish - wall_start : observed_seconds;
  if (seconds <= 0) seconds = observed_seconds;
  bool ok = completed == n && retried == 0 && wrong_payload == 0 && duplicate_ids == 0;

  Json out{{"submitted", n},
           {"completed", completed},
           {"failed", failed},
           {"unfinished", unfinished},
           {"retried", retried},
           {"wrong_payload", wrong_payload},
           {"duplicate_ids", duplicate_ids},
           {"connections", options->connections},
           {"submit_seconds", submit_seconds},
           {"seconds", seconds},
           {"observed_seconds", observed_seconds},
           {"tasks_per_s", ok && seconds > 0 ? n / seconds : 0.0},
           {"ok", ok}};
  std::printf("%s\n", out.dump().c_str());
  return ok ? 0 : 1;
}
