#include "agent/agent.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <mutex>

#include <unistd.h>

#include "agent/gpu_host.hpp"
#include "agent/housekeeper.hpp"
#include "agent/lease_keeper.hpp"
#include "agent/worker_pool.hpp"
#include "gpu/manager/manager.hpp"
#include "gpu/vram/vram.hpp"
#include "http/docker_client.hpp"

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
  // The GPU side, only with [services]: tracker, Docker client, manager, then its threads.
  std::unique_ptr<gpu::VramBackend> vram;
  std::unique_ptr<http::DockerClient> docker;
  std::unique_ptr<gpu::Manager> manager;
  std::unique_ptr<GpuHost> gpu_host;
};

namespace {

std::string HostName(const config::GpuConfig& config) {
  if (!config.host.empty()) return config.host;
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == 0) return "localhost";
  return name;
}

}  // namespace

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
  std::map<std::string, Route> gpu_routes;
  std::vector<std::string> problems;
  for (const auto &[name, type] : config.task_types) {
    // A service-bound type is the GPU side's, and only when its service is configured here.
    if (!type.service.empty() && !config.services.contains(type.service)) continue;
    connectors::Connector *connector = s.deps.connectors.Find(type.connector);
    if (connector == nullptr) {
      problems.push_back(fmt::format("task type {}: unknown connector \"{}\" (known: {})", name,
                                     type.connector, fmt::join(s.deps.connectors.Names(), ", ")));
      continue;
    }
    (type.service.empty() ? routes : gpu_routes).emplace(name, Route{&type, connector});
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
  if (!config.services.empty()) {
    BOOST_OUTCOME_TRY(StartGpuSide(std::move(gpu_routes)));
  }
  s.housekeeper->Start();
  s.pool->Start();
  s.started = true;
  spdlog::info("agent started id={} cpu_workers={} types={}", s.id, config.agent.cpu_workers,
               fmt::join(types, ","));
  return Ok();
}

Result<void> Agent::StartGpuSide(std::map<std::string, Route> routes) {
  State &s = *state_;
  const config::Config &config = s.deps.config;
  const config::GpuConfig &gpu = config.gpu;
  bool managed = false;  // services gpuq starts and stops (their memory must be tracked)
  bool docker = false;
  for (const auto &[name, service] : config.services) {
    managed = managed || service.kind != ServiceKind::kExternal;
    docker = docker || service.kind == ServiceKind::kDocker;
  }
  gpu::VramOptions vram{.backend = gpu.vram_backend,
                        .nvml_library = gpu.nvml_library,
                        .nvidia_smi = gpu.nvidia_smi,
                        .gpu_services_configured = managed};
  for (const auto &sim : gpu.sim) {
    vram.sim_gpus.push_back(gpu::SimGpu{.index = sim.index, .name = sim.name, .total_mb = sim.total_mb});
  }
  BOOST_OUTCOME_TRY(auto tracker, gpu::OpenVram(vram));
  s.vram = std::move(tracker);
  if (docker) {
    s.docker = std::make_unique<http::DockerClient>(http::DockerOptions{.socket = gpu.docker_socket});
  }
  std::string host = HostName(gpu);
  gpu::RuntimeFactory runtimes = [&s](const gpu::InstanceSpec &spec)
      -> std::unique_ptr<gpu::ServiceRuntime> {
    switch (spec.service.kind) {
      case ServiceKind::kProcess:
        return gpu::MakeProcessRuntime(spec);
      case ServiceKind::kDocker:
        return gpu::MakeDockerRuntime(spec, *s.docker);
      case ServiceKind::kExternal:
        return gpu::MakeExternalRuntime(spec);
      case ServiceKind::kSlot:
        return gpu::MakeSlotRuntime(spec);
    }
    return nullptr;
  };
  s.manager = std::make_unique<gpu::Manager>(
      *s.vram, std::move(runtimes), s.deps.clock,
      gpu::ManagerOptions{.host = host,
                          .gpus = gpu.gpus,
                          .reserve_mb = gpu.reserve_mb,
                          .memory_wait = gpu.memory_wait,
                          .health_interval = gpu.health_interval,
                          .data_dir = config.data_dir,
                          .die_with_parent = gpu.fake_services_die_with_agent,
                          .services = config.services,
                          .phases = config.phases});
  BOOST_OUTCOME_TRY(s.manager->Start());
  s.gpu_host = std::make_unique<GpuHost>(
      s.deps.store, *s.keeper, *s.manager,
      GpuHostOptions{.agent_id = s.id,
                     .host = host,
                     .routes = std::move(routes),
                     .lease_ttl = config.agent.lease_ttl,
                     .heartbeat = config.agent.heartbeat,
                     .poll = config.agent.poll,
                     .lock_ttl = gpu.lock_ttl,
                     .claim = ClaimPolicy{.aging_step = gpu.aging_step},
                     .data_dir = config.data_dir});
  BOOST_OUTCOME_TRY(s.gpu_host->Start());
  spdlog::info("gpu manager started backend={} host={} gpus={} services={}", s.vram->Name(), host,
               fmt::join(s.manager->Gpus(), ","), config.services.size());
  return Ok();
}

void Agent::Drain() {
  State &s = *state_;
  std::lock_guard lock(s.lifecycle);  // a second caller waits for the first to finish
  if (!s.started || s.drained) return;
  spdlog::info("agent draining id={}", s.id);
  // CPU and GPU runs drain together: the GPU side's grace runs while the pool drains.
  std::thread gpu_drain;
  if (s.gpu_host) {
    gpu_drain = std::thread([&s] { s.gpu_host->Drain(s.deps.config.agent.drain_timeout); });
  }
  s.pool->Drain(s.deps.config.agent.drain_timeout);
  if (gpu_drain.joinable()) gpu_drain.join();
  s.keeper->Stop();
  s.housekeeper->Stop();
  s.drained = true;
  spdlog::info("agent drained id={}", s.id);
}

}  // namespace gpuq::agent
