#pragma once
// The Store: queue + runs + leases, GPU locks, agents and commands behind one interface.
// Backends: SqliteStore (sqlite/, one WAL file, one host) and, later, RedisStore.
//
// Thread-safety: every method may be called from any thread concurrently. Methods block
// (disk or network I/O): async callers go through a blocking pool.
#include <chrono>
#include <functional>
#include <map>
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

// A named lease: a GPU lock ("lock:<host>:<gpu>") or a GPU's ownership by one agent
// ("owner:<host>:<gpu>"). `token` is a fencing token, unique and increasing per store.
struct NamedLease {
  std::string name;
  std::string holder;
  long long token = 0;
  TimePoint expires_at{};
};

// An agent's record: its last heartbeat and the state it reported (GPUs, services).
struct AgentRecord {
  std::string id;
  Json state = Json::object();  // agent/gpu_state's shape (see agent/gpu_state.hpp)
  TimePoint seen_at{};
};

// A command for one agent (API -> agent): "service.start", "service.stop", "phase.prepare",
// "release_all". The agent answers with ReplyCommand; the API waits with WaitReply.
struct Command {
  std::string id;  // UUIDv4
  std::string agent;
  std::string kind;
  Json args = Json::object();
  TimePoint deadline{};  // the agent skips (replies "expired") a command past it
};

// A pending run a GPU worker could take (see core/placement.hpp PickNext).
struct PendingRun {
  std::string id;
  std::string type;
  int priority = 50;
  TimePoint created_at{};
};

// Per task type: how much pending work waits (protects the services it needs).
struct PendingStats {
  int runs = 0;
  int max_priority = 0;
};

// What a read of one run saw, in a form the store can re-check cheaply (GetStamped).
struct RunStamp {
  long long key = 0;   // the store's own handle on the run (SQLite: its rowid); 0: unknown
  uint64_t seen = 0;   // the run's change count when it was read
  bool valid = false;  // false: RunUnchanged answers false
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

  // Get, plus a stamp that RunUnchanged can check later without a query (the API caches run
  // documents for clients that poll). Pass the stamp of an earlier read of the same run, or a
  // default one: a store may need one read to learn where to look before its stamps count.
  virtual Result<Run> GetStamped(std::string_view id, RunStamp& stamp) {
    stamp = RunStamp{};
    return Get(id);
  }
  // True only when the run read with `stamp` has certainly not changed since, in this process
  // or any other. Cheap (no query); a store that cannot tell answers false.
  virtual bool RunUnchanged(const RunStamp& stamp) const { return false; }
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

  // --- GPU workers: pick with the pure policy, then claim that run ---

  // Claimable pending runs of these types (not_before passed): the `limit` best by
  // (priority desc, created_at, id) plus the `limit` oldest, deduplicated, so aging can
  // promote an old low-priority run. Read-only.
  virtual Result<std::vector<PendingRun>> PendingRuns(const std::vector<std::string>& types,
                                                      int limit) = 0;

  // Claims that one run for `worker` on `gpu` ("host-a:0", stored in the run's `gpu`), if it
  // is still pending and claimable; clears its waiting_reason. nullopt when someone else took
  // it (or it was cancelled) meanwhile; kNotFound for an unknown id. Atomic like Claim.
  virtual Result<std::optional<Lease>> ClaimRun(std::string_view id, std::string_view worker,
                                                std::string_view gpu, Millis lease_ttl) = 0;

  // Sets (or clears, with nullopt) the waiting_reason of a pending run. No-op (Ok) when the
  // run is no longer pending.
  virtual Result<void> SetWaitingReason(std::string_view id,
                                        const std::optional<std::string>& reason) = 0;

  // Pending runs per task type (claimable or backing off), for the eviction policy.
  virtual Result<std::map<std::string, PendingStats>> PendingByType() = 0;

  // --- Named leases: GPU locks and GPU ownership ---

  // Takes the lease when it is free or expired (new token) or already held by `holder`
  // (renewed, same token). kConflict naming the holder otherwise.
  virtual Result<NamedLease> AcquireLease(std::string_view name, std::string_view holder,
                                          Millis ttl) = 0;
  // Extends a held lease. kConflict when `token` no longer holds it (released, broken, or
  // expired: an expired lease is free even before someone else takes it).
  virtual Result<void> RenewLease(std::string_view name, long long token, Millis ttl) = 0;
  // Gives it back. Ok when `token` no longer holds it (nothing to give).
  virtual Result<void> ReleaseLease(std::string_view name, long long token) = 0;
  // Breaks the lease whoever holds it. true when there was an unexpired holder.
  virtual Result<bool> ForceReleaseLease(std::string_view name) = 0;
  // The current unexpired holder, or nullopt.
  virtual Result<std::optional<NamedLease>> GetLease(std::string_view name) = 0;

  // --- Agents ---

  // Records a heartbeat with the agent's reported state (replaces the previous one).
  virtual Result<void> PutAgent(std::string_view id, const Json& state) = 0;
  // Agents seen within `max_age`, by id.
  virtual Result<std::vector<AgentRecord>> ListAgents(Millis max_age) = 0;

  // --- Command queue (API -> agent) ---

  // Queues a command; returns its id. Wakes WaitForCommands in this process.
  virtual Result<std::string> PostCommand(std::string_view agent, std::string_view kind,
                                          const Json& args, TimePoint deadline) = 0;
  // Takes (removes from the queue) up to `max` commands for `agent`, oldest first; blocks up
  // to `max_wait` when there are none (a PostCommand in this process wakes it early; other
  // processes' are seen on the next poll).
  virtual Result<std::vector<Command>> TakeCommands(std::string_view agent, int max,
                                                    Millis max_wait) = 0;
  // Stores the reply of a taken command. Wakes WaitReply in this process.
  virtual Result<void> ReplyCommand(std::string_view id, const Json& reply) = 0;
  // Waits up to `max_wait` for the reply; nullopt on timeout. The reply is removed once read.
  virtual Result<std::optional<Json>> WaitReply(std::string_view id, Millis max_wait) = 0;

  // "sqlite:///abs/path.db" or "redis://host:port/db", as /health shows it.
  virtual std::string Describe() const = 0;

  // Cheap liveness check of the backend (SELECT 1 / PING).
  virtual Result<void> Ping() = 0;
};

// Opens a store from a URL: "sqlite:///abs/path.db", "sqlite://relative.db" or a plain path.
Result<std::unique_ptr<Store>> OpenStore(std::string_view url, Clock& clock);

}  // namespace gpuq::store
