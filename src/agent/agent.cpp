#include "agent/agent.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include "agent/housekeeper.hpp"
#include "agent/lease_keeper.hpp"
#include "agent/worker_pool.hpp"

namespace gpuq::agent {

struct Agent::State {
  explicit State(AgentDeps d) : deps(d) {}

  AgentDeps deps;
  std::string id;

  std::mutex lifecycle;  // serialises Start and Drain
  bool started = false;
  bool drained = false;
  // Destroyed in reverse: the pool (which uses the keeper) goes first.
  std::unique_ptr<LeaseKeeper> keeper;
  std::unique_ptr<Housekeeper> housekeeper;
  std::unique_ptr<WorkerPool> pool;
};

Agent::Agent(AgentDeps deps) : state_(std::make_unique<State>(deps)) {}

Agent::~Agent() { Drain(); }

const std::string &Agent::id() const { return state_->id; }

Result<void> Agent::Start() {
  State &s = *state_;
  std::lock_guard lock(s.lifecycle);
  if (s.started) return Error{Errc::kConflict, "agent already started"};
  const config::Config &config = s.deps.config;

  // Every service-less task type runs on the CPU pool; its connector must
  // exist. Service-bound types belong to GPU workers.
  std::map<std::string, Route> routes;
  std::vector<std::string> problems;
  for (const auto &[name, type] : config.task_types) {
    if (!type.service.empty()) continue;
    connectors::Connector *connector = s.deps.connectors.Find(type.connector);
    if (connector == nullptr) {
      problems.push_back(fmt::format("task type {}: unknown connector \"{}\" (known: {})", name,
                                     type.connector, fmt::join(s.deps.connectors.Names(), ", ")));
      continue;
    }
    routes.emplace(name, Route{&type, connector});
  }
  if (!problems.empty()) {
    return Error{Errc::kInvalidArgument, fmt::format("{}", fmt::join(problems, "; "))};
  }

  BOOST_OUTCOME_TRY(s.id, ResolveAgentId(config.data_dir, config.agent.id));

  // What a previous incarnation of this agent held is nobody's now.
  BOOST_OUTCOME_TRY(int requeued, s.deps.store.RequeueHeldBy(s.id + "/"));
  if (requeued > 0) {
    spdlog::info("runs of a previous incarnation requeued agent={} count={}", s.id, requeued);
  }

  s.keeper =
      std::make_unique<LeaseKeeper>(s.deps.store, config.agent.heartbeat, config.agent.lease_ttl);
  s.housekeeper = std::make_unique<Housekeeper>(
      s.deps.store, s.deps.clock,
      HousekeeperOptions{.interval = config.agent.heartbeat,
                         .retention_days = config.store.retention_days,
                         .data_dir = config.data_dir});
  std::vector<std::string> types;
  for (const auto &[name, route] : routes) types.push_back(name);
  s.pool = std::make_unique<WorkerPool>(s.deps.store, *s.keeper,
                                        WorkerPoolOptions{.agent_id = s.id,
                                                          .workers = config.agent.cpu_workers,
                                                          .routes = std::move(routes),
                                                          .lease_ttl = config.agent.lease_ttl,
                                                          .poll = config.agent.poll,
                                                          .data_dir = config.data_dir});
  s.keeper->Start();
  s.housekeeper->Start();
  s.pool->Start();
  s.started = true;
  spdlog::info("agent started id={} cpu_workers={} types={}", s.id, config.agent.cpu_workers,
               fmt::join(types, ","));
  return Ok();
}

void Agent::Drain() {
  State &s = *state_;
  std::lock_guard lock(s.lifecycle);  // a second caller waits for the first to finish
  if (!s.started || s.drained) return;
  spdlog::info("agent draining id={}", s.id);
  s.pool->Drain(s.deps.config.agent.drain_timeout);
  s.keeper->Stop();
  s.housekeeper->Stop();
  s.drained = true;
  spdlog::info("agent drained id={}", s.id);
}

}  // namespace gpuq::agent
