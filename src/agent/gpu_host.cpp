#include "agent/gpu_host.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "agent/run_executor.hpp"
#include "core/gpu_status.hpp"

namespace gpuq::agent {

namespace {

Json OutcomeJson(const gpu::CommandOutcome& outcome) {
  Json reply{{"success", outcome.success},
             {"started", outcome.started},
             {"stopped", outcome.stopped},
             {"kept_busy", outcome.kept_busy},
             {"requeued", outcome.requeued},
             {"busy", outcome.busy},
             {"gpu", outcome.gpu ? Json(*outcome.gpu) : Json(nullptr)}};
  if (!outcome.error.empty()) reply["error"] = outcome.error;
  return reply;
}

}  // namespace

GpuHost::GpuHost(store::Store& store, LeaseKeeper& keeper, gpu::Manager& manager,
                 GpuHostOptions options)
    : store_(store), keeper_(keeper), manager_(manager), options_(std::move(options)) {}

GpuHost::~GpuHost() { Drain(Millis(0)); }

std::string GpuHost::GpuName(int gpu) const { return fmt::format("{}:{}", options_.host, gpu); }

Result<void> GpuHost::Start() {
  for (int gpu : manager_.Gpus()) {
    auto owned = store_.AcquireLease("owner:" + GpuName(gpu), options_.agent_id, options_.lock_ttl);
    if (!owned) {
      for (const auto& [index, token] : owned_) {
        (void)store_.ReleaseLease("owner:" + GpuName(index), token);
      }
      owned_.clear();
      if (owned.error().code == Errc::kConflict) {
        return Error{Errc::kConflict,
                     fmt::format("GPU {} belongs to another agent ({}): give each agent its own "
                                 "GPUs with --gpus or [gpu] gpus",
                                 GpuName(gpu), owned.error().message)};
      }
      return owned.error();
    }
    owned_[gpu] = owned.value().token;
  }
  manager_.OnChange([this] {
    {
      std::lock_guard lock(mutex_);
      dirty_ = true;
    }
    changed_.notify_all();
  });
  RefreshPendingWork();
  Publish();
  started_ = true;
  for (int gpu : manager_.Gpus()) threads_.emplace_back([this, gpu] { WorkerLoop(gpu); });
  for (int i = 0; i < 2; ++i) threads_.emplace_back([this, i] { CommandLoop(i); });
  threads_.emplace_back([this] { ReporterLoop(); });
  spdlog::info("gpu workers started agent={} gpus={}", options_.agent_id,
               fmt::join(manager_.Gpus(), ","));
  return Ok();
}

void GpuHost::Drain(Millis grace) {
  if (!started_) return;
  std::unique_lock lock(mutex_);
  stopping_ = true;
  changed_.notify_all();
  changed_.wait_for(lock, grace, [this] { return active_ == 0; });
  lock.unlock();
  // Past the grace: stop what still runs; FinishAttempt gives those runs back.
  lock.lock();
  for (auto& [id, run] : running_) run->Stop(StopReason::kDrain);
  lock.unlock();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
  manager_.OnChange({});
  for (const auto& [gpu, token] : owned_) (void)store_.ReleaseLease("owner:" + GpuName(gpu), token);
  owned_.clear();
  started_ = false;
}

void GpuHost::Publish() {
  std::lock_guard lock(publish_mutex_);
  AgentGpuReport report = manager_.Report();
  report.agent = options_.agent_id;
  auto put = store_.PutAgent(options_.agent_id, ToJson(report));
  if (!put) spdlog::warn("agent report not stored error={}", put.error().message);
}

void GpuHost::RefreshPendingWork() {
  auto pending = store_.PendingByType();
  if (!pending) return;
  std::map<std::string, gpu::PendingWork> work;
  for (const auto& [type, stats] : pending.value()) {
    auto route = options_.routes.find(type);
    if (route == options_.routes.end()) continue;
    auto& w = work[route->second.type->service];
    w.max_priority =
        w.runs == 0 ? stats.max_priority : std::max(w.max_priority, stats.max_priority);
    w.runs += stats.runs;
  }
  manager_.SetPendingWork(std::move(work));
}

void GpuHost::ReporterLoop() {
  pthread_setname_np(pthread_self(), "gpuq-gpu-report");
  auto next_tick = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    auto now = std::chrono::steady_clock::now();
    bool tick = now >= next_tick;
    if (tick || dirty_) {
      dirty_ = false;
      lock.unlock();
      if (tick) {
        manager_.Tick();
        RefreshPendingWork();
        for (const auto& [gpu, token] : owned_) {
          auto renewed =
              store_.AcquireLease("owner:" + GpuName(gpu), options_.agent_id, options_.lock_ttl);
          if (!renewed) {
            spdlog::error("gpu ownership lost gpu={} error={}", GpuName(gpu),
                          renewed.error().message);
          }
        }
      }
      Publish();
      lock.lock();
      if (tick) next_tick = std::chrono::steady_clock::now() + options_.heartbeat;
      continue;
    }
    changed_.wait_until(lock, next_tick, [this] { return stopping_ || dirty_; });
  }
}

void GpuHost::CommandLoop(int index) {
  std::string name = fmt::format("gpuq-command{}", index);
  pthread_setname_np(pthread_self(), name.c_str());
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    auto commands = store_.TakeCommands(options_.agent_id, 1, Millis(500));
    if (!commands) {
      spdlog::warn("command queue unavailable error={}", commands.error().message);
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, options_.poll, [this] { return stopping_; });
      continue;
    }
    for (const auto& command : commands.value()) {
      Json reply = Execute(command);
      Publish();  // the API answers after this: /gpu/status then shows the settled state
      auto replied = store_.ReplyCommand(command.id, reply);
      if (!replied)
        spdlog::warn("command reply lost id={} error={}", command.id, replied.error().message);
    }
  }
}

Json GpuHost::Execute(const store::Command& command) {
  spdlog::info("command kind={} args={}", command.kind, command.args.dump());
  const Json& args = command.args;
  auto text = [&args](const char* key) {
    auto it = args.find(key);
    return it != args.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (command.kind == "service.start") {
    std::string service = text("service");
    Json reply = OutcomeJson(manager_.StartService(service));
    reply["service"] = service;
    return reply;
  }
  if (command.kind == "service.stop") {
    std::string service = text("service");
    bool force = args.value("force", false);
    Json reply = OutcomeJson(manager_.StopService(service, force));
    reply["service"] = service;
    return reply;
  }
  if (command.kind == "phase.prepare") {
    int phase =
        args.contains("phase") && args["phase"].is_number_integer() ? args["phase"].get<int>() : -1;
    Json reply = OutcomeJson(manager_.PreparePhase(phase));
    reply["phase"] = phase;
    return reply;
  }
  if (command.kind == "release_all") return OutcomeJson(manager_.ReleaseAll());
  return Json{{"success", false}, {"error", fmt::format("unknown command {}", command.kind)}};
}

void GpuHost::NoteWaiting(const std::string& run_id, const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    auto& last = waiting_[run_id];
    if (last == reason) return;  // written already: a waiting run is looked at many times
    last = reason;
    if (waiting_.size() > 10'000) waiting_.clear();
  }
  (void)store_.SetWaitingReason(run_id, reason);
}

void GpuHost::WorkerLoop(int gpu) {
  std::string thread_name = fmt::format("gpuq-gpu{}", gpu).substr(0, 15);
  pthread_setname_np(pthread_self(), thread_name.c_str());
  std::vector<std::string> types;
  auto services = manager_.ServicesOn(gpu);
  for (const auto& [name, route] : options_.routes) {
    if (std::find(services.begin(), services.end(), route.type->service) != services.end()) {
      types.push_back(name);
    }
  }
  if (types.empty()) return;
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    if (!TakeOne(gpu, types)) store_.WaitForWork(options_.poll);
  }
}

// Picks and runs one run on `gpu`. false when there was nothing this GPU should take now.
bool GpuHost::TakeOne(int gpu, const std::vector<std::string>& types) {
  auto pending = store_.PendingRuns(types, 32);
  if (!pending) {
    spdlog::warn("pending runs unavailable gpu={} error={}", gpu, pending.error().message);
    return false;
  }
  if (pending.value().empty()) return false;
  // The resident services' own queued work is looked at too, whatever its priority: it is
  // what protects them from eviction, so a higher-priority run that waits for their memory
  // is unblocked by running it (otherwise the two would wait for each other).
  auto resident = manager_.ResidentServices(gpu);
  std::vector<std::string> resident_types;
  for (const auto& type : types) {
    const std::string& service = options_.routes.at(type).type->service;
    if (std::find(resident.begin(), resident.end(), service) != resident.end()) {
      resident_types.push_back(type);
    }
  }
  if (!resident_types.empty()) {
    auto more = store_.PendingRuns(resident_types, 32);
    if (more)
      pending.value().insert(pending.value().end(), more.value().begin(), more.value().end());
  }
  std::vector<Candidate> candidates;
  std::set<std::string> seen;
  for (const auto& run : pending.value()) {
    auto route = options_.routes.find(run.type);
    if (route == options_.routes.end() || !seen.insert(run.id).second) continue;
    candidates.push_back(Candidate{.run_id = run.id,
                                   .service = route->second.type->service,
                                   .priority = run.priority,
                                   .created_at = run.created_at});
  }
  TimePoint now = TimePoint(
      std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch()));
  while (!candidates.empty()) {
    auto pick = PickNext(candidates, resident, now, options_.claim);
    if (!pick) break;
    Candidate candidate = candidates[*pick];
    candidates.erase(candidates.begin() + static_cast<long>(*pick));
    Placement best = manager_.Place(candidate.service, candidate.priority);
    if (best.kind == Placement::Kind::kWait) {
      NoteWaiting(candidate.run_id, best.waiting_reason);
      continue;
    }
    if (best.gpu != gpu) {
      // Better served elsewhere; take it here only if it needs no eviction here.
      Placement here = manager_.PlaceOn(gpu, candidate.service, candidate.priority);
      bool free_here = here.kind == Placement::Kind::kResident ||
                       (here.kind == Placement::Kind::kStart && here.evict.empty());
      if (!free_here) continue;
    }
    auto claimed =
        store_.ClaimRun(candidate.run_id, fmt::format("{}/gpu{}", options_.agent_id, gpu),
                        GpuName(gpu), options_.lease_ttl);
    if (!claimed) {
      spdlog::warn("claim failed gpu={} run={} error={}", gpu, candidate.run_id,
                   claimed.error().message);
      return false;
    }
    if (!claimed.value()) continue;  // taken or cancelled meanwhile
    {
      std::lock_guard lock(mutex_);
      waiting_.erase(candidate.run_id);
      ++active_;
    }
    const Route& route = options_.routes.at(claimed.value()->run.type);
    RunClaimed(gpu, std::move(*claimed.value()), route, candidate.service);
    {
      std::lock_guard lock(mutex_);
      --active_;
    }
    changed_.notify_all();
    return true;
  }
  return false;
}

void GpuHost::RunClaimed(int gpu, store::Lease lease, const Route& route,
                         const std::string& service) {
  const Run& run = lease.run;
  std::string worker = fmt::format("{}/gpu{}", options_.agent_id, gpu);
  std::optional<SteadyTime> deadline;
  if (run.timeout_s > 0) {
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(run.timeout_s);
  }
  // Co-owned by the lease keeper while registered.
  auto active =
      std::make_shared<ActiveRun>(run.id, lease.token, deadline, options_.progress_interval);
  keeper_.Register(active);
  {
    std::lock_guard lock(mutex_);
    running_[run.id] = active;
    if (stopping_) active->Stop(StopReason::kDrain);
  }
  spdlog::info("run claimed run={} type={} worker={} gpu={} attempt={}", run.id, run.type, worker,
               GpuName(gpu), run.attempts);

  // The GPU lock serialises exclusive use of the GPU; it is renewed with the run's lease.
  std::string lock_name = "lock:" + GpuName(gpu);
  auto lock = store_.AcquireLease(lock_name, worker, options_.lock_ttl);
  if (lock) keeper_.KeepNamed(lock_name, lock.value().token);
  if (!lock) spdlog::warn("gpu lock not taken gpu={} error={}", GpuName(gpu), lock.error().message);

  Result<connectors::Outcome> outcome = Error{Errc::kInternal, "not run"};
  bool placed = true;
  {
    auto held = manager_.Acquire(service, gpu, run.priority, active->stop_token(), run.id,
                                 [active] { active->Stop(StopReason::kRequeue); });
    if (!held) {
      if (held.error().code == Errc::kResourceExhausted && active->reason() == StopReason::kNone) {
        placed = false;
        outcome = held.error();
      } else {
        // A start that failed or timed out is worth another attempt: the service may recover.
        Errc code = held.error().code == Errc::kTimeout ? Errc::kUnavailable : held.error().code;
        outcome = Error{code, held.error().message};
      }
    } else {
      outcome = RunAttempt(store_, Attempt{.worker = worker,
                                           .run = run,
                                           .active = *active,
                                           .type = *route.type,
                                           .connector = *route.connector,
                                           .data_dir = options_.data_dir,
                                           .service_url = held.value().base_url(),
                                           .gpu = gpu,
                                           .gpu_uuid = held.value().gpu_uuid()});
    }
  }  // the service is released here, before the run's end is written
  keeper_.Unregister(run.id);
  {
    std::lock_guard guard(mutex_);
    running_.erase(run.id);
  }
  if (lock) {
    keeper_.ForgetNamed(lock_name);
    (void)store_.ReleaseLease(lock_name, lock.value().token);
  }
  if (!placed) {
    // It did not fit after all (the memory changed since the pick): back to the queue,
    // attempt not counted, with the reason.
    auto released = store_.Release(run.id, lease.token);
    if (!released) spdlog::warn("release failed run={} error={}", run.id, released.error().message);
    NoteWaiting(run.id, outcome.error().message);
    return;
  }
  FinishAttempt(store_, worker, run, *active, std::move(outcome));
}

}  // namespace gpuq::agent
