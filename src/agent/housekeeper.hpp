#pragma once
// Background upkeep of the queue, one thread per agent: every `interval` it
// requeues runs whose lease expired (a dead agent's work comes back; any
// process may do this, it is idempotent) and, when retention_days > 0, at start
// and then hourly by the agent's Clock, purges finished runs older than that
// and deletes their <data_dir>/runs/<id>/ folders. Store errors are logged
// (warn) and retried at the next tick.
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "core/clock.hpp"
#include "store/store.hpp"

namespace gpuq::agent {

struct HousekeeperOptions {
  Millis interval{2'000};
  int retention_days = 0;  // 0: keep finished runs forever
  Millis retention_every{3'600'000};
  std::filesystem::path data_dir;
};

class Housekeeper {
 public:
  Housekeeper(store::Store &store, Clock &clock, HousekeeperOptions options);
  ~Housekeeper();  // Stop()s
  Housekeeper(const Housekeeper &) = delete;
  Housekeeper &operator=(const Housekeeper &) = delete;

  void Start();
  void Stop();

  // One round of upkeep, on the calling thread (the loop calls it; tests may
  // too).
  void RunOnce();

 private:
  void Loop();
  void PurgeOld();

  store::Store &store_;
  Clock &clock_;
  const HousekeeperOptions options_;
  std::optional<TimePoint> last_purge_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace gpuq::agent
