#include "gpu/lifecycle/instance.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "gpu/runtime/health.hpp"
#include "http/client.hpp"

namespace gpuq::gpu {

namespace {

// "http://host:port/path" -> endpoint + target. Only plain http: services are local.
Result<std::pair<http::Endpoint, std::string>> SplitUrl(std::string_view url) {
  std::string_view rest = url;
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  size_t slash = rest.find('/');
  std::string target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  BOOST_OUTCOME_TRY(auto endpoint, http::ParseServerUrl(rest.substr(0, slash)));
  return std::make_pair(endpoint, target);
}

// The notes' evict_api: ask the server to drop its model (Ollama: keep_alive 0) before the
// stop, so its memory is back even if the stop is slow. Best effort: the stop follows anyway.
void Evict(const std::string& url, const std::string& body) {
  auto parts = SplitUrl(url);
  if (!parts) return;
  http::Client client(parts.value().first, std::chrono::seconds(10));
  auto reply = client.Post(parts.value().second, body.empty() ? "{}" : body);
  if (!reply) spdlog::debug("evict request failed url={} error={}", url, reply.error().message);
}

}  // namespace

ServiceInstance::ServiceInstance(InstanceOptions options, std::unique_ptr<ServiceRuntime> runtime,
                                 VramBackend& vram, Clock& clock)
    : options_(std::move(options)),
      runtime_(std::move(runtime)),
      vram_(vram),
      clock_(clock),
      reload_time_(options_.spec.service.warm_time) {}

bool ServiceInstance::Adopt() {
  if (external()) {
    SetState(ServiceState::kReady);
    return true;
  }
  auto adopted = runtime_->Adopt();
  if (!adopted || !adopted.value()) {
    SetState(ServiceState::kStopped);
    return false;
  }
  auto health = CheckHealth(options_.health_url, Millis(2'000));
  if (!health || health.value().status != 200) {
    // Running but not answering: leave it alone (it may be loading) and count its memory.
    // The next use waits for its health like a start would.
    spdlog::warn("adopted instance is not healthy yet service={} gpu={} {}", name(), gpu(),
                 runtime_->Describe());
    Charge(spec().vram_mb);
    SetState(ServiceState::kStarting);
    return false;
  }
  if (health.value().vram_mb) measured_mb_ = *health.value().vram_mb;
  Charge(planning_mb());
  {
    std::lock_guard lock(mutex_);
    last_used_ = clock_.Now();
  }
  SetState(ServiceState::kReady);
  spdlog::info("service adopted service={} gpu={} {}", name(), gpu(), runtime_->Describe());
  return true;
}

Result<void> ServiceInstance::Start(std::stop_token stop) {
  if (external()) {
    SetState(ServiceState::kReady);
    return Ok();
  }
  if (slot()) {  // nothing to launch or check: the reservation is the whole start
    (void)runtime_->Start();
    Charge(spec().vram_mb);
    {
      std::lock_guard lock(mutex_);
      last_used_ = clock_.Now();
    }
    SetState(ServiceState::kReady);
    return Ok();
  }
  auto began = std::chrono::steady_clock::now();
  bool adopted_starting = state() == ServiceState::kStarting && runtime_->Running();
  SetState(ServiceState::kStarting);
  if (!adopted_starting) {
    spdlog::info("service starting service={} gpu={}", name(), gpu());
    auto launched = runtime_->Start();
    if (!launched) {
      SetState(ServiceState::kError, launched.error().message);
      return Error{Errc::kUnavailable, fmt::format("service {} on gpu {} failed to start: {}",
                                                   name(), gpu(), launched.error().message)};
    }
    Charge(spec().vram_mb);
  }
  WaitHealthyOptions wait{.deadline = spec().health_timeout,
                          .max_interval = options_.health_interval};
  auto healthy =
      WaitHealthy(options_.health_url, wait, stop, [this] { return runtime_->Running(); });
  if (!healthy) {
    bool stopped = stop.stop_requested();
    (void)runtime_->Stop(spec().stop_timeout, /*force=*/false);
    Discharge();
    std::string message = fmt::format("service {} on gpu {} did not become healthy: {}", name(),
                                      gpu(), healthy.error().message);
    if (stopped) {
      SetState(ServiceState::kStopped);
      return Error{Errc::kUnavailable, message};
    }
    SetState(ServiceState::kError, healthy.error().message);
    return Error{healthy.error().code == Errc::kTimeout ? Errc::kTimeout : Errc::kUnavailable,
                 message};
  }
  auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - began);
  {
    std::lock_guard lock(mutex_);
    if (healthy.value().vram_mb) measured_mb_ = *healthy.value().vram_mb;
    reload_time_ = took;
    last_used_ = clock_.Now();
  }
  if (healthy.value().vram_mb) Charge(*healthy.value().vram_mb);
  SetState(ServiceState::kReady);
  spdlog::info("service ready service={} gpu={} took_ms={} {}", name(), gpu(), took.count(),
               runtime_->Describe());
  return Ok();
}

Result<void> ServiceInstance::Stop(bool force) {
  if (external()) return Ok();  // someone else runs it: never stopped by us
  {
    std::lock_guard lock(mutex_);
    if (active_ > 0 && !force) {
      return Error{Errc::kConflict, fmt::format("service {} on gpu {} is serving {} run(s)", name(),
                                                gpu(), active_)};
    }
    if (state_ == ServiceState::kStopped && !charged_) return Ok();
  }
  SetState(ServiceState::kStopping);
  spdlog::info("service stopping service={} gpu={} force={}", name(), gpu(), force);
  if (!force && !options_.evict_url.empty()) Evict(options_.evict_url, spec().evict_body);
  auto stopped = runtime_->Stop(spec().stop_timeout, force);
  if (!stopped) {
    SetState(ServiceState::kError, stopped.error().message);
    return Error{Errc::kUnavailable, fmt::format("service {} on gpu {} did not stop: {}", name(),
                                                 gpu(), stopped.error().message)};
  }
  Discharge();
  SetState(ServiceState::kStopped);
  spdlog::info("service stopped service={} gpu={}", name(), gpu());
  return Ok();
}

bool ServiceInstance::TryAcquire() {
  std::lock_guard lock(mutex_);
  if (state_ != ServiceState::kReady && state_ != ServiceState::kBusy) return false;
  if (active_ >= std::max(1, spec().max_concurrency)) return false;
  ++active_;
  state_ = ServiceState::kBusy;
  return true;
}

void ServiceInstance::ReleaseRun() {
  std::lock_guard lock(mutex_);
  if (active_ > 0) --active_;
  last_used_ = clock_.Now();
  if (active_ == 0 && state_ == ServiceState::kBusy) state_ = ServiceState::kReady;
}

bool ServiceInstance::CheckAlive() {
  if (external()) return true;
  ServiceState now = state();
  if (!IsResident(now) || now == ServiceState::kStopping) return true;
  if (runtime_->Running()) return true;
  Discharge();
  SetState(ServiceState::kError, "exited unexpectedly");
  spdlog::warn("service exited unexpectedly service={} gpu={}", name(), gpu());
  return false;
}

ServiceState ServiceInstance::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

int ServiceInstance::active_runs() const {
  std::lock_guard lock(mutex_);
  return active_;
}

int ServiceInstance::planning_mb() const {
  std::lock_guard lock(mutex_);
  if (external()) return 0;
  return measured_mb_.value_or(spec().vram_mb);
}

void ServiceInstance::SetMeasured(int mb) {
  std::lock_guard lock(mutex_);
  measured_mb_ = mb;
}

std::vector<int> ServiceInstance::Pids() { return runtime_->Pids(); }

ServiceSlot ServiceInstance::Slot(int pending_runs, int pending_max_priority) const {
  std::lock_guard lock(mutex_);
  return ServiceSlot{.service = name(),
                     .priority = spec().priority,
                     .vram_mb = external() ? 0 : measured_mb_.value_or(spec().vram_mb),
                     .state = state_,
                     .active_runs = active_,
                     .pending_runs = pending_runs,
                     .pending_max_priority = pending_max_priority,
                     .reload_time = reload_time_,
                     .last_used = last_used_};
}

ServiceInstanceStatus ServiceInstance::Status() const {
  std::lock_guard lock(mutex_);
  ServiceInstanceStatus status{.state = state_,
                               .vram_mb_declared = spec().vram_mb,
                               .vram_mb_measured = measured_mb_,
                               .port = options_.spec.port,
                               .pid = runtime_->Pid(),
                               .container = runtime_->Container(),
                               .active_runs = active_,
                               .error = error_};
  return status;
}

void ServiceInstance::SetState(ServiceState state, std::string error) {
  std::lock_guard lock(mutex_);
  state_ = state;
  error_ = std::move(error);
}

void ServiceInstance::Charge(int mb) {
  if (external()) return;
  vram_.Charge(gpu(), key(), runtime_->Pid().value_or(0), mb);
  std::lock_guard lock(mutex_);
  charged_ = true;
}

void ServiceInstance::Discharge() {
  if (external()) return;
  vram_.Discharge(key());
  std::lock_guard lock(mutex_);
  charged_ = false;
}

}  // namespace gpuq::gpu
