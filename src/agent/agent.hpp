#pragma once
// An agent: one per host. Claims runs it can serve, runs them through connectors on its
// workers, keeps their leases alive, and gives work back when it stops.
#include <map>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "connectors/connector.hpp"
#include "core/clock.hpp"
#include "core/result.hpp"
#include "store/store.hpp"

namespace gpuq::agent {

struct Route;  // worker_pool.hpp

struct AgentDeps {
  store::Store& store;
  const config::Config& config;  // agent section, task types, data_dir
  const connectors::ConnectorRegistry& connectors;
  Clock& clock;
};

class Agent {
 public:
  explicit Agent(AgentDeps deps);
  ~Agent();  // Drain()s if still running
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Resolves the stable agent id, requeues what a previous incarnation held, starts the
  // workers, the lease keeper and the expiry sweeper. Returns once they run.
  Result<void> Start();

  // Stops claiming; lets running runs finish for up to config.agent.drain_timeout, then stops
  // the rest and gives them back to the queue (pending, attempt not counted). Blocks until done.
  // Thread-safe, idempotent.
  void Drain();

  const std::string& id() const;

 private:
  Result<void> StartGpuSide(std::map<std::string, Route> routes);
  struct State;
  std::unique_ptr<State> state_;
};

// The agent id kept in <data_dir>/agent-id (created as "<hostname>-<8 hex>" on first use),
// unless `configured` is non-empty.
Result<std::string> ResolveAgentId(const std::filesystem::path& data_dir,
                                   const std::string& configured);

}  // namespace gpuq::agent
