#pragma once
// The SQLite backend of Store: one WAL database file, shared safely by every thread of this
// process and by other processes on the same host.
//
// Reads (Get, List, the empty-queue check of Claim) run on a connection private to the calling
// thread, so they never wait for the writer or for each other. Every write goes through one
// writer thread per SqliteStore that commits whatever is queued in one transaction (group
// commit), each operation in its own savepoint so one failure rolls back only itself; a write
// call returns after its commit. Other processes are kept out by BEGIN IMMEDIATE and a
// generous busy timeout. A commit survives kill -9 of the process (WAL, synchronous=NORMAL);
// the last commits before a power loss may not.
//
// Thread-safety: every method may be called from any thread concurrently. The SqliteStore
// must outlive every call into it.
#include <filesystem>
#include <memory>

#include "store/store.hpp"

namespace gpuq::store {

class SqliteStore final : public Store {
 public:
  // Opens `file`, creating it, its parent directories and the schema when missing. Fails with
  // kUnavailable when the file cannot be opened and kInternal when its schema is newer than
  // this build's. `clock` must outlive the store; every timestamp comes from it.
  static Result<std::unique_ptr<SqliteStore>> Open(std::filesystem::path file, Clock& clock);

  ~SqliteStore() override;  // finishes queued writes, stops the writer, closes connections
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  Result<Submitted> Submit(const NewRun& run) override;
  // Queues the insert on the writer thread and returns at once; `done` runs on the writer
  // thread after the commit that made the run durable (or with the error that failed it).
  // Invalid runs are refused inline, on the caller's thread, before SubmitAsync returns.
  void SubmitAsync(NewRun run, SubmitCallback done) override;
  Result<Run> Get(std::string_view id) override;
  Result<Run> GetStamped(std::string_view id, RunStamp& stamp) override;
  bool RunUnchanged(const RunStamp& stamp) const override;
  Result<RunPage> List(const RunFilter& filter) override;
  Result<std::vector<Lease>> Claim(const ClaimRequest& request) override;
  Result<LeaseStatus> Heartbeat(std::string_view id, long long token, Millis ttl) override;
  Result<void> ReportProgress(std::string_view id, long long token,
                              const Progress& progress) override;
  Result<void> Complete(std::string_view id, long long token, const Json& result,
                        const std::vector<std::string>& files) override;
  Result<FailOutcome> Fail(std::string_view id, long long token, std::string error,
                           bool retryable) override;
  Result<void> MarkCancelled(std::string_view id, long long token) override;
  Result<void> Release(std::string_view id, long long token) override;
  Result<Run> Cancel(std::string_view id) override;
  Result<Run> Retry(std::string_view id) override;
  Result<int> RequeueExpired() override;
  Result<int> RequeueHeldBy(std::string_view worker_prefix) override;
  Result<std::vector<std::string>> PurgeFinishedBefore(TimePoint cutoff) override;
  // Returns at once when this process committed claimable work since this thread's last
  // Claim or WaitForWork, so a submit between an empty claim and the wait is not missed.
  void WaitForWork(Millis max_wait) override;

  // GPU workers, named leases, agents and commands (sqlite_gpu.cpp). A named lease is held
  // while its expires_at is not before the store clock's now; an expired one cannot be renewed.
  // TakeCommands and WaitReply poll the file every 50 ms for other processes' writes.
  Result<std::vector<PendingRun>> PendingRuns(const std::vector<std::string>& types,
                                              int limit) override;
  Result<std::optional<Lease>> ClaimRun(std::string_view id, std::string_view worker,
                                        std::string_view gpu, Millis lease_ttl) override;
  Result<void> SetWaitingReason(std::string_view id,
                                const std::optional<std::string>& reason) override;
  Result<std::map<std::string, PendingStats>> PendingByType() override;
  Result<NamedLease> AcquireLease(std::string_view name, std::string_view holder,
                                  Millis ttl) override;
  Result<void> RenewLease(std::string_view name, long long token, Millis ttl) override;
  Result<void> ReleaseLease(std::string_view name, long long token) override;
  Result<bool> ForceReleaseLease(std::string_view name) override;
  Result<std::optional<NamedLease>> GetLease(std::string_view name) override;
  Result<void> PutAgent(std::string_view id, const Json& state) override;
  Result<std::vector<AgentRecord>> ListAgents(Millis max_age) override;
  Result<std::string> PostCommand(std::string_view agent, std::string_view kind, const Json& args,
                                  TimePoint deadline) override;
  Result<std::vector<Command>> TakeCommands(std::string_view agent, int max,
                                            Millis max_wait) override;
  Result<void> ReplyCommand(std::string_view id, const Json& reply) override;
  Result<std::optional<Json>> WaitReply(std::string_view id, Millis max_wait) override;

  std::string Describe() const override;
  Result<void> Ping() override;

  // The schema version this build writes (PRAGMA user_version). 2 added the GPU-worker tables
  // (named leases, agents, commands); 3 made the list indexes ascending; 4 dropped the id from
  // the ordered indexes (the rowid breaks ties); 5 dropped the index on the id (ids decrypt to
  // rowids, run_ids.hpp). Older files are upgraded in place at open (from 1-4: the runs table
  // is copied once).
  static constexpr int kSchemaVersion = 5;

 private:
  struct State;  // connections, writer thread, queues: all of sqlite3 stays in the .cpp
  explicit SqliteStore(std::unique_ptr<State> state);

  std::unique_ptr<State> state_;
};

}  // namespace gpuq::store
