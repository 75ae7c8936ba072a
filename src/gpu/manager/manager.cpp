#include "gpu/manager/manager.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <thread>

#include "core/placeholder.hpp"
#include "gpu/lifecycle/instance.hpp"

namespace gpuq::gpu {

struct Manager::Gpu {
  int index = 0;
  std::string name;
  std::string uuid;
  int total_mb = 0;
  mutable std::mutex switching;  // one start/stop plan at a time on this GPU
  std::map<std::string, std::unique_ptr<ServiceInstance>> instances;  // services allowed here
};

namespace {

using nlohmann::json;

const GpuMemory* FindMemory(const std::vector<GpuMemory>& memory, int index) {
  for (const auto& m : memory) {
    if (m.index == index) return &m;
  }
  return nullptr;
}

// The service's templates filled for one GPU: {{port}}, {{gpu}}, {{name}}, {{host}}.
Result<InstanceOptions> MakeInstanceOptions(const ServiceSpec& service, int gpu,
                                            const std::string& gpu_uuid,
                                            const ManagerOptions& options) {
  int port = service.base_port > 0 ? service.base_port + gpu : 0;
  json values{{"port", port}, {"gpu", gpu}, {"name", service.name}, {"host", options.host}};
  // Fills `text` in place; the error names the field.
  auto fill = [&values, &service](std::string& text, const char* field) -> Result<void> {
    auto filled = FillText(text, values);
    if (!filled) {
      return Error{Errc::kInvalidArgument,
                   fmt::format("services.{}.{}: {}", service.name, field, filled.error().message)};
    }
    text = std::move(filled.value());
    return Ok();
  };
  InstanceSpec spec;
  spec.service = service;
  spec.gpu = gpu;
  spec.gpu_uuid = gpu_uuid;
  spec.port = port;
  for (auto& arg : spec.service.argv) {
    BOOST_OUTCOME_TRY(fill(arg, "argv"));
  }
  for (auto& arg : spec.service.stop_argv) {
    BOOST_OUTCOME_TRY(fill(arg, "stop_argv"));
  }
  for (auto& [key, value] : spec.service.env) {
    BOOST_OUTCOME_TRY(fill(value, "env"));
  }
  BOOST_OUTCOME_TRY(fill(spec.service.container, "container"));
  BOOST_OUTCOME_TRY(fill(spec.service.url, "url"));
  BOOST_OUTCOME_TRY(fill(spec.service.health_url, "health_url"));
  BOOST_OUTCOME_TRY(fill(spec.service.evict_api, "evict_api"));
  std::string pid_file = service.pid_file;
  BOOST_OUTCOME_TRY(fill(pid_file, "pid_file"));
  std::filesystem::path dir = options.data_dir / "services" / service.name;
  spec.log_file = dir / fmt::format("gpu{}.log", gpu);
  spec.pid_file =
      pid_file.empty() ? dir / fmt::format("gpu{}.pid", gpu) : std::filesystem::path(pid_file);
  spec.key = fmt::format("{}@{}", service.name, gpu);
  spec.die_with_parent = options.die_with_parent;

  InstanceOptions instance{.spec = spec, .health_interval = options.health_interval};
  if (!spec.service.url.empty()) {
    instance.base_url = spec.service.url;
  } else if (spec.service.kind == ServiceKind::kSlot) {
    instance.base_url.clear();  // nothing to reach: the run's connector brings its own work
  } else {
    instance.base_url = fmt::format("http://127.0.0.1:{}", port);
  }
  while (instance.base_url.ends_with('/')) instance.base_url.pop_back();
  instance.health_url =
      spec.service.health_url.empty() ? instance.base_url : spec.service.health_url;
  instance.evict_url = spec.service.evict_api;
  return instance;
}

bool Contains(const std::vector<int>& list, int value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

}  // namespace

// --- ServiceLease ---

ServiceLease::ServiceLease(ServiceLease&& other) noexcept { *this = std::move(other); }

ServiceLease& ServiceLease::operator=(ServiceLease&& other) noexcept {
  if (this == &other) return *this;
  if (manager_ != nullptr) manager_->ReleaseHold(instance_, hold_id_);
  manager_ = std::exchange(other.manager_, nullptr);
  instance_ = std::exchange(other.instance_, nullptr);
  base_url_ = std::move(other.base_url_);
  gpu_uuid_ = std::move(other.gpu_uuid_);
  gpu_ = other.gpu_;
  hold_id_ = other.hold_id_;
  return *this;
}

ServiceLease::~ServiceLease() {
  if (manager_ != nullptr) manager_->ReleaseHold(instance_, hold_id_);
}

// --- Manager ---

Manager::Manager(VramBackend& vram, RuntimeFactory runtimes, Clock& clock, ManagerOptions options)
    : vram_(vram), runtimes_(std::move(runtimes)), clock_(clock), options_(std::move(options)) {}

Manager::~Manager() = default;

Result<void> Manager::Start() {
  auto memory = vram_.Query();
  if (!memory) return memory.error();
  std::vector<int> seen;
  for (const auto& m : memory.value()) seen.push_back(m.index);
  // No GPU seen (backend none) and only external services (COMFYUI_URL=...): they need no VRAM
  // tracking but still a worker to serve their runs, so they get one untracked slot.
  bool all_external = !options_.services.empty();
  for (const auto& [name, service] : options_.services) {
    all_external = all_external && service.kind == ServiceKind::kExternal;
  }
  if (seen.empty() && all_external && options_.gpus.empty()) {
    memory.value().push_back(GpuMemory{.index = 0, .name = "untracked"});
    seen.push_back(0);
  }
  std::vector<int> owned = options_.gpus.empty() ? seen : options_.gpus;
  for (int index : owned) {
    const GpuMemory* m = FindMemory(memory.value(), index);
    if (m == nullptr) {
      return Error{Errc::kInvalidArgument,
                   fmt::format("GPU {} is not present: the {} tracker sees [{}]", index,
                               vram_.Name(), fmt::join(seen, ", "))};
    }
    auto gpu = std::make_unique<Gpu>();
    gpu->index = index;
    gpu->name = m->name;
    gpu->uuid = m->uuid;
    gpu->total_mb = m->total_mb;
    for (const auto& [name, service] : options_.services) {
      if (service.gpus && !Contains(*service.gpus, index)) continue;
      std::string uuid = vram_.Simulated() ? std::string() : m->uuid;
      BOOST_OUTCOME_TRY(auto instance, MakeInstanceOptions(service, index, uuid, options_));
      auto runtime = runtimes_(instance.spec);
      if (!runtime) {
        return Error{Errc::kInvalidArgument, fmt::format("services.{}: no runtime for kind {}",
                                                         name, ToString(service.kind))};
      }
      gpu->instances.emplace(name, std::make_unique<ServiceInstance>(
                                       std::move(instance), std::move(runtime), vram_, clock_));
    }
    gpus_.push_back(std::move(gpu));
  }
  for (auto& gpu : gpus_) {
    for (auto& [name, instance] : gpu->instances) instance->Adopt();
  }
  return Ok();
}

std::vector<int> Manager::Gpus() const {
  std::vector<int> indexes;
  for (const auto& gpu : gpus_) indexes.push_back(gpu->index);
  return indexes;
}

Manager::Gpu* Manager::FindGpu(int index) const {
  for (const auto& gpu : gpus_) {
    if (gpu->index == index) return gpu.get();
  }
  return nullptr;
}

std::vector<GpuMemory> Manager::QueryMemory() const {
  auto memory = vram_.Query();
  if (!memory) {
    spdlog::warn("vram query failed backend={} error={}", vram_.Name(), memory.error().message);
    return {};
  }
  return std::move(memory.value());
}

GpuSnapshot Manager::Snapshot(const Gpu& gpu, const std::vector<GpuMemory>* memory) const {
  GpuSnapshot snapshot{
      .index = gpu.index, .total_mb = gpu.total_mb, .reserve_mb = options_.reserve_mb};
  std::vector<GpuMemory> queried;
  if (memory == nullptr) {
    queried = QueryMemory();
    memory = &queried;
  }
  if (const GpuMemory* m = FindMemory(*memory, gpu.index)) {
    snapshot.total_mb = m->total_mb;
    snapshot.free_mb = m->free_mb;
  }
  std::lock_guard lock(mutex_);
  for (const auto& [name, instance] : gpu.instances) {
    auto pending = pending_.find(name);
    PendingWork work = pending == pending_.end() ? PendingWork{} : pending->second;
    snapshot.services.push_back(instance->Slot(work.runs, work.max_priority));
  }
  return snapshot;
}

Placement Manager::Place(const std::string& service, int priority) const {
  auto spec = options_.services.find(service);
  std::vector<GpuSnapshot> snapshots;
  auto memory = QueryMemory();
  for (const auto& gpu : gpus_) {
    if (!gpu->instances.contains(service)) continue;
    snapshots.push_back(Snapshot(*gpu, &memory));
  }
  if (snapshots.empty()) {
    return Placement{.waiting_reason =
                         fmt::format("{} is not allowed on any GPU of this agent", service)};
  }
  int need = 0;
  for (const auto& gpu : gpus_) {
    auto it = gpu->instances.find(service);
    if (it != gpu->instances.end()) need = std::max(need, it->second->planning_mb());
  }
  PlacementRequest request{.service = service, .need_mb = need, .task_priority = priority};
  if (spec != options_.services.end()) request.allowed_gpus = spec->second.gpus;
  return ChooseGpu(snapshots, request);
}

Placement Manager::PlaceOn(int gpu_index, const std::string& service, int priority) const {
  Gpu* gpu = FindGpu(gpu_index);
  if (gpu == nullptr || !gpu->instances.contains(service)) {
    return Placement{.waiting_reason =
                         fmt::format("{} is not allowed on gpu {}", service, gpu_index)};
  }
  PlacementRequest request{.service = service,
                           .need_mb = gpu->instances.at(service)->planning_mb(),
                           .task_priority = priority};
  return PlanOnGpu(Snapshot(*gpu, nullptr), request);
}

Result<ServiceLease> Manager::Acquire(const std::string& service, int gpu_index, int priority,
                                      std::stop_token stop, std::string run_id,
                                      std::function<void()> on_forced_stop) {
  Gpu* gpu = FindGpu(gpu_index);
  if (gpu == nullptr || !gpu->instances.contains(service)) {
    return Error{Errc::kNotFound, fmt::format("{} is not allowed on gpu {}", service, gpu_index)};
  }
  ServiceInstance& instance = *gpu->instances.at(service);
  {
    std::lock_guard switching(gpu->switching);
    instance.CheckAlive();
    if (!instance.TryAcquire()) {
      auto resident = MakeResident(*gpu, instance, priority, stop);
      Changed();
      if (!resident) return resident.error();
      if (!instance.TryAcquire()) {
        return Error{Errc::kResourceExhausted,
                     fmt::format("{} on gpu {} is serving {} run(s) already", service, gpu_index,
                                 instance.active_runs())};
      }
    }
  }
  ServiceLease lease;
  lease.manager_ = this;
  lease.instance_ = &instance;
  lease.base_url_ = instance.base_url();
  lease.gpu_ = gpu_index;
  if (!vram_.Simulated()) {
    if (Gpu* gpu = FindGpu(gpu_index)) lease.gpu_uuid_ = gpu->uuid;
  }
  {
    std::lock_guard lock(mutex_);
    lease.hold_id_ = next_hold_++;
    holds_.emplace(lease.hold_id_, Hold{&instance, std::move(run_id), std::move(on_forced_stop)});
  }
  Changed();
  return lease;
}

void Manager::ReleaseHold(ServiceInstance* instance, long long hold_id) {
  {
    std::lock_guard lock(mutex_);
    holds_.erase(hold_id);
  }
  instance->ReleaseRun();
  Changed();
}

Result<void> Manager::MakeResident(Gpu& gpu, ServiceInstance& instance, int priority,
                                   std::stop_token stop) {
  if (instance.state() == ServiceState::kStarting) return instance.Start(stop);  // adopted, loading
  auto memory = QueryMemory();
  GpuSnapshot snapshot = Snapshot(gpu, &memory);
  PlacementRequest request{
      .service = instance.name(), .need_mb = instance.planning_mb(), .task_priority = priority};
  Placement placement = PlanOnGpu(snapshot, request);
  switch (placement.kind) {
    case Placement::Kind::kResident:
      return Ok();  // ready or busy: the caller's TryAcquire decides
    case Placement::Kind::kWait:
      return Error{Errc::kResourceExhausted, placement.waiting_reason};
    case Placement::Kind::kStart:
      break;
  }
  if (!placement.evict.empty()) {
    spdlog::info("evicting gpu={} for={} stop={}", gpu.index, instance.name(),
                 fmt::join(placement.evict, ","));
    std::vector<int> gone;
    for (const auto& name : placement.evict) {
      auto pids = gpu.instances.at(name)->Pids();
      gone.insert(gone.end(), pids.begin(), pids.end());
    }
    BOOST_OUTCOME_TRY(StopSet(gpu, placement.evict, /*force=*/false, nullptr));
    Changed();
    BOOST_OUTCOME_TRY(WaitForMemory(gpu, request.need_mb, gone));
  } else {
    BOOST_OUTCOME_TRY(WaitForMemory(gpu, request.need_mb, {}));
  }
  auto started = instance.Start(stop);
  Changed();
  return started;
}

Result<void> Manager::StopSet(Gpu& gpu, const std::vector<std::string>& names, bool force,
                              std::vector<std::string>* requeued) {
  if (force) {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard lock(mutex_);
      for (auto& [id, hold] : holds_) {
        for (const auto& name : names) {
          if (hold.instance == gpu.instances.at(name).get()) {
            if (hold.on_forced_stop) callbacks.push_back(hold.on_forced_stop);
            if (requeued != nullptr && !hold.run_id.empty()) requeued->push_back(hold.run_id);
          }
        }
      }
    }
    for (auto& callback : callbacks) callback();
  }
  // Stops run in parallel: each waits for its own process or container to be gone.
  std::vector<Result<void>> results(names.size(), Ok());
  {
    std::vector<std::jthread> stoppers;
    for (size_t i = 0; i < names.size(); ++i) {
      ServiceInstance* instance = gpu.instances.at(names[i]).get();
      stoppers.emplace_back([instance, force, &results, i] { results[i] = instance->Stop(force); });
    }
  }
  std::vector<std::string> failures;
  for (const auto& result : results) {
    if (!result) failures.push_back(result.error().message);
  }
  if (!failures.empty()) {
    return Error{Errc::kUnavailable, fmt::format("{}", fmt::join(failures, "; "))};
  }
  return Ok();
}

// "Wait until the tracker shows the memory back": the freed memory of a stopped process
// shows up in the driver's figures some time after the process is gone.
Result<void> Manager::WaitForMemory(const Gpu& gpu, int need_mb,
                                    const std::vector<int>& gone_pids) {
  auto deadline = std::chrono::steady_clock::now() + options_.memory_wait;
  Millis interval{10};
  std::string last = "no reading";
  while (true) {
    auto memory = QueryMemory();
    if (const GpuMemory* m = FindMemory(memory, gpu.index)) {
      bool pids_gone = true;
      if (m->processes_known) {
        for (const auto& p : m->processes) {
          if (std::find(gone_pids.begin(), gone_pids.end(), p.pid) != gone_pids.end()) {
            pids_gone = false;
          }
        }
      }
      int available = m->free_mb - options_.reserve_mb;
      if (pids_gone && available >= need_mb) return Ok();
      last = fmt::format("{} MB free after the {} MB reserve{}", available, options_.reserve_mb,
                         pids_gone ? "" : ", stopped processes still listed");
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error{Errc::kResourceExhausted,
                   fmt::format("gpu {}: memory not back within {} ms: need {} MB, {}", gpu.index,
                               options_.memory_wait.count(), need_mb, last)};
    }
    std::this_thread::sleep_for(interval);  // a poll interval, bounded by the deadline
    interval = std::min(interval * 2, Millis(200));
  }
}

CommandOutcome Manager::StartService(const std::string& service) {
  CommandOutcome outcome;
  auto spec = options_.services.find(service);
  if (spec == options_.services.end()) {
    return CommandOutcome{.success = false, .error = fmt::format("unknown service {}", service)};
  }
  // Already resident somewhere: nothing to do.
  for (const auto& gpu : gpus_) {
    auto it = gpu->instances.find(service);
    if (it != gpu->instances.end() && IsResident(it->second->state()) &&
        it->second->state() != ServiceState::kStopping) {
      outcome.gpu = gpu->index;
      return outcome;
    }
  }
  Placement placement = Place(service, spec->second.priority);
  if (placement.kind == Placement::Kind::kWait) {
    return CommandOutcome{.success = false, .error = placement.waiting_reason};
  }
  Gpu* gpu = FindGpu(placement.gpu);
  std::lock_guard switching(gpu->switching);
  auto started =
      MakeResident(*gpu, *gpu->instances.at(service), spec->second.priority, std::stop_token());
  Changed();
  outcome.gpu = placement.gpu;
  if (!started) {
    outcome.success = false;
    outcome.error = started.error().message;
  } else {
    outcome.started.push_back(service);
  }
  return outcome;
}

CommandOutcome Manager::StopService(const std::string& service, bool force) {
  CommandOutcome outcome;
  if (!options_.services.contains(service)) {
    return CommandOutcome{.success = false, .error = fmt::format("unknown service {}", service)};
  }
  for (auto& gpu : gpus_) {
    auto it = gpu->instances.find(service);
    if (it == gpu->instances.end()) continue;
    std::lock_guard switching(gpu->switching);
    ServiceInstance& instance = *it->second;
    ServiceState state = instance.state();
    if (!IsResident(state) && state != ServiceState::kError) continue;
    if (instance.active_runs() > 0 && !force) {
      outcome.success = false;
      outcome.busy = true;
      outcome.kept_busy.push_back(service);
      outcome.error = fmt::format("{} on gpu {} is serving {} run(s)", service, gpu->index,
                                  instance.active_runs());
      continue;
    }
    auto stopped = StopSet(*gpu, {service}, force, &outcome.requeued);
    if (!stopped) {
      outcome.success = false;
      outcome.error = stopped.error().message;
    } else {
      outcome.stopped.push_back(service);
    }
  }
  Changed();
  return outcome;
}

CommandOutcome Manager::PreparePhase(int phase) {
  if (!options_.phases.contains(phase)) {
    return CommandOutcome{.success = false,
                          .error = fmt::format("phase {} is not configured", phase)};
  }
  std::vector<std::string> wanted;
  for (const auto& [name, spec] : options_.services) {
    if (std::find(spec.phases.begin(), spec.phases.end(), phase) != spec.phases.end()) {
      wanted.push_back(name);
    }
  }
  CommandOutcome outcome;
  // First make room everywhere: every idle service the phase does not use goes.
  for (auto& gpu : gpus_) {
    std::lock_guard switching(gpu->switching);
    std::vector<std::string> here;
    for (const auto& name : wanted) {
      if (gpu->instances.contains(name)) here.push_back(name);
    }
    PhasePlan plan = PlanPhase(Snapshot(*gpu, nullptr), here);
    std::vector<std::string> stop;
    for (const auto& name : plan.stop) {
      if (!gpu->instances.at(name)->external()) stop.push_back(name);
    }
    auto stopped = StopSet(*gpu, stop, /*force=*/false, nullptr);
    if (!stopped) {
      outcome.success = false;
      outcome.error = stopped.error().message;
    }
    outcome.stopped.insert(outcome.stopped.end(), stop.begin(), stop.end());
    outcome.kept_busy.insert(outcome.kept_busy.end(), plan.kept_busy.begin(), plan.kept_busy.end());
  }
  Changed();
  // Then start each of the phase's services once, where it serves best.
  for (const auto& name : wanted) {
    CommandOutcome started = StartService(name);
    outcome.started.insert(outcome.started.end(), started.started.begin(), started.started.end());
    if (!started.success) {
      outcome.success = false;
      outcome.error = started.error;
    }
  }
  return outcome;
}

CommandOutcome Manager::ReleaseAll() {
  CommandOutcome outcome;
  for (auto& gpu : gpus_) {
    std::lock_guard switching(gpu->switching);
    std::vector<std::string> stop;
    for (const auto& [name, instance] : gpu->instances) {
      if (instance->external()) continue;
      ServiceState state = instance->state();
      if (!IsResident(state) && state != ServiceState::kError) continue;
      if (instance->active_runs() > 0) {
        outcome.kept_busy.push_back(name);
      } else {
        stop.push_back(name);
      }
    }
    auto stopped = StopSet(*gpu, stop, /*force=*/false, nullptr);
    if (!stopped) {
      outcome.success = false;
      outcome.error = stopped.error().message;
    }
    outcome.stopped.insert(outcome.stopped.end(), stop.begin(), stop.end());
  }
  Changed();
  return outcome;
}

std::vector<std::string> Manager::ServicesOn(int gpu_index) const {
  std::vector<std::string> names;
  if (Gpu* gpu = FindGpu(gpu_index)) {
    for (const auto& [name, instance] : gpu->instances) names.push_back(name);
  }
  return names;
}

std::vector<std::string> Manager::ResidentServices(int gpu_index) const {
  std::vector<std::string> names;
  Gpu* gpu = FindGpu(gpu_index);
  if (gpu == nullptr) return names;
  for (const auto& [name, instance] : gpu->instances) {
    ServiceState state = instance->state();
    if (IsResident(state) && state != ServiceState::kStopping) names.push_back(name);
  }
  return names;
}

void Manager::SetPendingWork(std::map<std::string, PendingWork> pending) {
  std::lock_guard lock(mutex_);
  pending_ = std::move(pending);
}

void Manager::Tick() {
  bool changed = false;
  std::vector<GpuMemory> memory;
  bool measure = !vram_.Simulated();
  if (measure) memory = QueryMemory();
  for (auto& gpu : gpus_) {
    std::unique_lock switching(gpu->switching, std::try_to_lock);
    if (!switching.owns_lock()) continue;  // a start or stop is under way: look next time
    TimePoint now = clock_.Now();
    for (auto& [name, instance] : gpu->instances) {
      if (!instance->CheckAlive()) changed = true;
      ServiceSlot slot = instance->Slot(0, 0);
      const ServiceSpec& spec = instance->spec();
      if (spec.idle_ttl > Millis(0) && slot.state == ServiceState::kReady &&
          slot.active_runs == 0 && !instance->external() && now - slot.last_used >= spec.idle_ttl) {
        spdlog::info("service idle past its ttl service={} gpu={}", name, gpu->index);
        (void)instance->Stop(/*force=*/false);
        changed = true;
      }
    }
    // Measured use corrects the declared figure (NVML/nvidia-smi per-process memory).
    const GpuMemory* m = measure ? FindMemory(memory, gpu->index) : nullptr;
    if (m != nullptr && m->processes_known) {
      for (auto& [name, instance] : gpu->instances) {
        if (!IsResident(instance->state()) || instance->external()) continue;
        auto pids = instance->Pids();
        int used = 0;
        for (const auto& p : m->processes) {
          if (p.used_mb && std::find(pids.begin(), pids.end(), p.pid) != pids.end()) {
            used += *p.used_mb;
          }
        }
        if (used > 0) instance->SetMeasured(used);
      }
    }
  }
  if (changed) Changed();
}

AgentGpuReport Manager::Report() const {
  AgentGpuReport report{.backend = vram_.Name()};
  auto memory = vram_.Query();
  if (!memory) {
    report.ok = false;
    report.error = memory.error().message;
  }
  for (const auto& gpu : gpus_) {
    GpuStatus status{.host = options_.host,
                     .index = gpu->index,
                     .name = gpu->name,
                     .total_mb = gpu->total_mb,
                     .reserve_mb = options_.reserve_mb};
    int managed_mb = 0;
    std::set<int> managed_pids;
    for (const auto& [name, instance] : gpu->instances) {
      status.services[name] = instance->Status();
      if (IsResident(instance->state()) && !instance->external()) {
        managed_mb += instance->planning_mb();
        for (int pid : instance->Pids()) managed_pids.insert(pid);
      }
    }
    if (memory) {
      if (const GpuMemory* m = FindMemory(memory.value(), gpu->index)) {
        status.total_mb = m->total_mb;
        status.used_mb = m->used_mb;
        status.free_mb = m->free_mb;
        if (vram_.Simulated()) {
          status.unknown_mb = 0;  // the ledger holds only what gpuq charged
        } else if (m->processes_known) {
          for (const auto& p : m->processes) {
            if (!managed_pids.contains(p.pid)) status.unknown_mb += p.used_mb.value_or(0);
          }
        } else {
          status.unknown_mb = std::max(0, m->used_mb - managed_mb);
        }
      }
    }
    report.gpus.push_back(std::move(status));
  }
  return report;
}

void Manager::OnChange(std::function<void()> callback) {
  std::lock_guard lock(mutex_);
  on_change_ = std::move(callback);
}

void Manager::Changed() {
  std::function<void()> callback;
  {
    std::lock_guard lock(mutex_);
    callback = on_change_;
  }
  if (callback) callback();
}

}  // namespace gpuq::gpu
