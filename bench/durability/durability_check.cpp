// The durability check of bench/run.sh: "each accepted task is durable: it survives a kill -9
// right after its 200".
//
//   gpuq_bench_durability load --port P --pid PID --count K --ids-out FILE [--connections 64]
//     POSTs echo tasks on C connections until K have been answered 200, then sends SIGKILL to
//     PID at once, while the other connections still have submits in flight. Every 200 that
//     was read, before or after the kill, counts as accepted; the ids go to FILE, one a line.
//   gpuq_bench_durability verify --port P --ids-in FILE [--connections 64]
//     After the server was restarted on the same data dir: GET /task_status/<id> for every
//     id. Prints "durable: X/K" and exits 0 only when X == K.
#include <signal.h>
#include <sys/types.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "load/conn.hpp"

namespace asio = boost::asio;
using Json = nlohmann::json;

namespace {

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  int port = 0;
  pid_t pid = 0;
  int count = 2000;
  int connections = 64;
  std::string ids_file;
};

struct LoadState {
  explicit LoadState(const Options& o) : options(o) {}
  const Options& options;
  std::vector<std::string> accepted;
  bool killed = false;
  int errors_before_kill = 0;
  std::string first_error;
};

asio::awaitable<void> Submitter(LoadState& state, int worker) {
  gpuq::bench::Conn conn(co_await asio::this_coro::executor, state.options.host,
                         state.options.port);
  for (int k = worker; !state.killed; k += state.options.connections) {
    std::string body =
        R"({"task_type":"echo","priority":50,"payload":{"d":)" + std::to_string(k) + "}}";
    auto reply = co_await conn.Request("POST", "/submit_task", std::move(body));
    if (reply.status == 200) {
      auto json = Json::parse(reply.body, nullptr, false);
      if (!json.is_discarded() && json.contains("task_id") && json["task_id"].is_string()) {
        state.accepted.push_back(json["task_id"].get<std::string>());
      }
    } else if (!state.killed) {
      ++state.errors_before_kill;
      if (state.first_error.empty()) {
        state.first_error = reply.status ? std::to_string(reply.status) + " " + reply.body
                                         : reply.error;
      }
      if (state.errors_before_kill > 100) break;
    }
    if (!state.killed && static_cast<int>(state.accepted.size()) >= state.options.count) {
      // Right after the K-th 200, before anything else: the other connections' requests are
      // in flight, some committed and answered but not yet read. Those count too below.
      ::kill(state.options.pid, SIGKILL);
      state.killed = true;
    }
  }
}

int Load(const Options& options) {
  LoadState state(options);
  asio::io_context io(1);
  for (int w = 0; w < options.connections; ++w) {
    asio::co_spawn(io, Submitter(state, w), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
  }
  io.run();
  if (!state.killed) {
    std::fprintf(stderr, "durability load: server never accepted %d tasks (%zu); first error: %s\n",
                 options.count, state.accepted.size(), state.first_error.c_str());
    return 1;
  }
  std::ofstream out(options.ids_file);
  for (const auto& id : state.accepted) out << id << '\n';
  out.close();
  std::printf("accepted %zu, sent SIGKILL to %d right after the %d-th 200\n",
              state.accepted.size(), static_cast<int>(options.pid), options.count);
  return out ? 0 : 1;
}

asio::awaitable<void> Checker(const Options& options, const std::vector<std::string>& ids,
                              std::size_t& cursor, int& found, std::vector<std::string>& lost) {
  gpuq::bench::Conn conn(co_await asio::this_coro::executor, options.host, options.port);
  while (cursor < ids.size()) {
    const std::string& id = ids[cursor++];
    auto reply = co_await conn.Request("GET", "/task_status/" + id);
    if (reply.status == 200) ++found;
    else lost.push_back(id + " -> " + (reply.status ? std::to_string(reply.status) : reply.error));
  }
}

int Verify(const Options& options) {
  std::vector<std::string> ids;
  std::ifstream in(options.ids_file);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) ids.push_back(line);
  }
  std::size_t cursor = 0;
  int found = 0;
  std::vector<std::string> lost;
  asio::io_context io(1);
  for (int w = 0; w < options.connections; ++w) {
    asio::co_spawn(io, Checker(options, ids, cursor, found, lost), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
  }
  io.run();
  std::printf("durable: %d/%zu\n", found, ids.size());
  for (std::size_t i = 0; i < lost.size() && i < 5; ++i) {
    std::fprintf(stderr, "lost: %s\n", lost[i].c_str());
  }
  return !ids.empty() && found == static_cast<int>(ids.size()) ? 0 : 1;
}

std::optional<Options> ParseArgs(int argc, char** argv) {
  if (argc < 2) return std::nullopt;
  Options o;
  o.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string_view flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--host") o.host = value;
    else if (flag == "--port") o.port = std::atoi(value);
    else if (flag == "--pid") o.pid = static_cast<pid_t>(std::atoi(value));
    else if (flag == "--count") o.count = std::atoi(value);
    else if (flag == "--connections") o.connections = std::atoi(value);
    else if (flag == "--ids-out" || flag == "--ids-in") o.ids_file = value;
    else return std::nullopt;
  }
  if (argc % 2 != 0 || o.port <= 0 || o.ids_file.empty() || o.connections <= 0) {
    return std::nullopt;
  }
  if (o.mode == "load" && (o.pid <= 0 || o.count <= 0)) return std::nullopt;
  if (o.mode != "load" && o.mode != "verify") return std::nullopt;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  auto options = ParseArgs(argc, argv);
  if (!options) {
    std::fprintf(stderr,
                 "usage: %s load --port P --pid PID --count K --ids-out FILE [--connections C]\n"
                 "       %s verify --port P --ids-in FILE [--connections C]\n",
                 argv[0], argv[0]);
    return 2;
  }
  return options->mode == "load" ? Load(*options) : Verify(*options);
}
