#pragma once
// The lease keeper: one thread per agent that heartbeats every registered run's
// lease every `heartbeat` with `lease_ttl`, stops a run whose lease was lost
// (kConflict) or whose cancel was requested, stops a run whose deadline passed
// (the agent, not the connector, enforces timeouts), and flushes throttled
// progress; it also renews named leases (GPU locks). Register/Unregister/StopAll/KeepNamed/
// ForgetNamed are thread-safe.
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "agent/active_run.hpp"
#include "store/store.hpp"

namespace gpuq::agent {

class LeaseKeeper {
 public:
  LeaseKeeper(store::Store &store, Millis heartbeat, Millis lease_ttl);
  ~LeaseKeeper();  // Stop()s
  LeaseKeeper(const LeaseKeeper &) = delete;
  LeaseKeeper &operator=(const LeaseKeeper &) = delete;

  void Start();
  void Stop();  // joins the thread; registered runs are left alone

  void Register(std::shared_ptr<ActiveRun> run);
  void Unregister(const std::string &id);
  void StopAll(StopReason reason);  // e.g. drain

  // Named leases (GPU locks) renewed on every heartbeat with the lease TTL while kept. A lease
  // that turns out lost (force-released) is logged and forgotten.
  void KeepNamed(const std::string &name, long long token);
  void ForgetNamed(const std::string &name);
  size_t size() const;

 private:
  void Loop();
  void Tick();

  store::Store &store_;
  const Millis heartbeat_;
  const Millis lease_ttl_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  SteadyTime sleeping_until_ = SteadyTime::min();  // when the loop wakes up next
  std::map<std::string, std::shared_ptr<ActiveRun>> runs_;
  std::map<std::string, long long> named_;  // named lease -> token
  std::thread thread_;
};

}  // namespace gpuq::agent
