#pragma once
// The HTTP API: the notes' contract plus runs, logs, files, task types. Beast lives in .cpp files.
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "core/clock.hpp"
#include "connectors/connector.hpp"
#include "core/result.hpp"
#include "store/store.hpp"

namespace gpuq::api {

// What the server reads and writes. All referenced objects outlive the Server.
struct ServerDeps {
  store::Store& store;
  const config::Config& config;  // task types, data_dir, server section (token, body limit)
  const connectors::ConnectorRegistry& connectors;  // payload validation at submit
  // The store's clock: GPU lock TTLs and command deadlines are in its time. Null: the system
  // clock.
  const Clock* clock = nullptr;
  // Tests: how long a GPU command (/gpu/service/..., prepare-phase, release-all) waits for the
  // agent's reply, instead of the defaults (300 s, 120 s for a stop).
  std::optional<Millis> gpu_command_timeout;
};

class Server {
 public:
  explicit Server(ServerDeps deps);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens; port 0 picks a free port. Returns the bound port. Refuses a
  // non-loopback host when no token is configured (kInvalidArgument saying so).
  Result<int> Listen(const std::string& host, int port);

  // Serves on `threads` threads (0: half the cores) until Stop(); returns when they have ended.
  void Run(int threads);

  // Thread-safe. Stops accepting, ends open connections (SSE streams too), and makes Run return.
  void Stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace gpuq::api
