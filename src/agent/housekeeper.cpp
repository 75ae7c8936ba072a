#include "agent/housekeeper.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include "core/ids.hpp"

namespace gpuq::agent {

Housekeeper::Housekeeper(store::Store &store, Clock &clock, HousekeeperOptions options)
    : store_(store), clock_(clock), options_(std::move(options)) {}

Housekeeper::~Housekeeper() { Stop(); }

void Housekeeper::Start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void Housekeeper::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void Housekeeper::Loop() {
  pthread_setname_np(pthread_self(), "gpuq-housekeep");
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    RunOnce();
    lock.lock();
    wake_.wait_for(lock, options_.interval, [this] { return stopping_; });
  }
}

void Housekeeper::RunOnce() {
  auto moved = store_.RequeueExpired();
  if (!moved) {
    spdlog::warn("requeue of expired leases failed error={}", moved.error().message);
  } else if (moved.value() > 0) {
    spdlog::info("expired leases requeued count={}", moved.value());
  }
  if (options_.retention_days > 0) {
    TimePoint now = clock_.Now();
    if (!last_purge_ || now - *last_purge_ >= options_.retention_every) PurgeOld();
  }
}

void Housekeeper::PurgeOld() {
  TimePoint now = clock_.Now();
  TimePoint cutoff = now - std::chrono::hours(24) * options_.retention_days;
  auto purged = store_.PurgeFinishedBefore(cutoff);
  if (!purged) {
    spdlog::warn("purge of old runs failed error={}", purged.error().message);
    return;
  }
  last_purge_ = now;
  for (const std::string &id : purged.value()) {
    // Ids come from the store, but a path is built from them: only a UUID may
    // name a folder.
    if (!IsUuid(id)) continue;
    std::error_code ec;
    std::filesystem::remove_all(options_.data_dir / "runs" / id, ec);
    if (ec) spdlog::warn("cannot delete run files run={} error={}", id, ec.message());
  }
  if (!purged.value().empty()) {
    spdlog::info("old runs purged count={} before={}", purged.value().size(), FormatTime(cutoff));
  }
}

}  // namespace gpuq::agent
