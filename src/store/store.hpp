#pragma once
// The Store: queue + runs + leases (+ later GPU locks, events, agents) behind one interface.
// Backends: SqliteStore (sqlite/, one WAL file, one host) and, later, RedisStore.
//
// Thread-safety: every method may be called from any thread concurrently. Methods block
// (disk or network I/O): async callers go through a blocking pool.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/result.hpp"
#include "core/run.hpp"

namespace gpuq::store {

struct NewRun {
  std::string type;  // canonical task type, already validated
  int priority = 50;
  Json payload = Json::object();
  int max_attempts = 3;
  int timeout_s = 3600;
  std::optional<std::string> idempotency_key;  // same key -> the first run's id
  std::optional<std::string> parent_run_id;
  std::vector<std::string> depends_on;  // non-empty: starts `waiting`
};

struct Submitted {
  std::string id;
  bool created = true;  // false: an earlier run with the same idempotency key
};

struct RunFilter {
  std::optional<RunState> state;
  std::optional<std::string> type;
  std::optional<std::string> parent_run_id;
  int limit = 50;                     // 1..1000
  std::optional<std::string> before;  // cursor from RunPage::next_before
};

struct RunPage {
  std::vector<Run> runs;  // newest first: (created_at, id) descending
  std::optional<std::string> next_before;  // opaque cursor; null on the last page
};

struct ClaimRequest {
  std::string worker;              // "<agent_id>/cpu0": who holds the lease
  std::vector<std::string> types;  // task types this worker can run
  Millis lease_ttl{10'000};
  int max_runs = 1;  // claim up to this many in one step
};

// A claimed run and its lease. `token` is the fencing token: every later write about this
// attempt must carry it, and one carrying a stale token is refused with kConflict.
struct Lease {
  Run run;  // state processing, attempts incremented, started_at set
  long long token = 0;
};

// What a heartbeat tells the worker.
struct LeaseStatus {
  bool cancel_requested = false;  // the worker must stop and report Cancelled
};

// Where a failed attempt went.
enum class FailOutcome { kRetrying, kFailed };

class Store {
 public:
  virtual ~Store() = default;

  // Inserts a run (pending, or waiting when depends_on is non-empty). Durable on return.
  virtual Result<Submitted> Submit(const NewRun& run) = 0;

  // Submit without blocking the caller: `done` is called exactly once, on a thread of the
  // store's choosing (possibly the caller's, before SubmitAsync returns), once the run is
  // durable or has failed. `done` must be quick and must not block on the store; an async
  // server posts the result back to its own executor from it. The default runs Submit inline.
  using SubmitCallback = std::function<void(Result<Submitted>)>;
  virtual void SubmitAsync(NewRun run, SubmitCallback done) { done(Submit(run)); }

  virtual Result<Run> Get(std::string_view id) = 0;  // kNotFound
  virtual Result<RunPage> List(const RunFilter& filter) = 0;

  // Claims up to max_runs pending runs of the given types whose not_before has passed:
  // highest priority first, FIFO (created_at, id) within a priority. Atomic across threads
  // and processes: a run is handed to one worker only. Empty when nothing is claimable.
  virtual Result<std::vector<Lease>> Claim(const ClaimRequest& request) = 0;

  // Extends the lease. kConflict when the lease is lost (expired and requeued, or taken).
  virtual Result<LeaseStatus> Heartbeat(std::string_view id, long long token, Millis ttl) = 0;

  virtual Result<void> ReportProgress(std::string_view id, long long token,
                                      const Progress& progress) = 0;

  // processing -> completed with its result and files. kConflict on a stale token.
  virtual Result<void> Complete(std::string_view id, long long token, const Json& result,
                                const std::vector<std::string>& files) = 0;

  // processing -> pending with backoff (when retryable and attempts < max_attempts) or failed.
  virtual Result<FailOutcome> Fail(std::string_view id, long long token, std::string error,
                                   bool retryable) = 0;

  // processing -> cancelled, after the worker stopped a run whose cancel was requested.
  virtual Result<void> MarkCancelled(std::string_view id, long long token) = 0;

  // processing -> pending without counting the attempt (drain: the worker gave it back).
  virtual Result<void> Release(std::string_view id, long long token) = 0;

  // pending/waiting -> cancelled at once; processing -> cancel_requested (the worker stops it
  // and calls MarkCancelled). kConflict for a finished run, kNotFound for an unknown one.
  virtual Result<Run> Cancel(std::string_view id) = 0;

  // failed/cancelled -> pending again, attempts reset. kConflict otherwise.
  virtual Result<Run> Retry(std::string_view id) = 0;

  // Runs whose lease expired go back to pending with backoff, or to failed at max_attempts.
  // Returns how many were moved. Any process may call it; it is idempotent.
  virtual Result<int> RequeueExpired() = 0;

  // Requeues every run a worker whose name starts with `worker_prefix` holds (an agent that
  // restarts gives back what its previous incarnation held). Counts as a failed attempt.
  virtual Result<int> RequeueHeldBy(std::string_view worker_prefix) = 0;

  // Deletes finished runs older than `cutoff`; returns their ids so files can go too.
  virtual Result<std::vector<std::string>> PurgeFinishedBefore(TimePoint cutoff) = 0;

  // Blocks until work may have become claimable (a submit or requeue in this process) or
  // `max_wait` passes. Other processes' writes are seen on the next poll.
  virtual void WaitForWork(Millis max_wait) = 0;

  // "sqlite:///abs/path.db" or "redis://host:port/db", as /health shows it.
  virtual std::string Describe() const = 0;

  // Cheap liveness check of the backend (SELECT 1 / PING).
  virtual Result<void> Ping() = 0;
};

// Opens a store from a URL: "sqlite:///abs/path.db", "sqlite://relative.db" or a plain path.
Result<std::unique_ptr<Store>> OpenStore(std::string_view url, Clock& clock);

}  // namespace gpuq::store
