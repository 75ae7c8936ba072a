// SqliteStore's GPU-worker side: picking and claiming one run, waiting reasons, named leases
// (GPU locks and ownership), agent heartbeats and the API -> agent command queue.
#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "core/ids.hpp"
#include "store/sqlite/run_order.hpp"
#include "store/sqlite/sqlite_internal.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace gpuq::store {
using namespace sqlite;  // NOLINT: this file's own plumbing (sqlite_internal.hpp)

const char* const sqlite::kGpuSchema = R"sql(
-- Named leases: GPU locks and GPU ownership. `token` comes from counters.lease_token, so it
-- is unique and increasing across run leases and named leases alike.
CREATE TABLE IF NOT EXISTS leases (
  name TEXT PRIMARY KEY NOT NULL,
  holder TEXT NOT NULL,
  token INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agents (
  id TEXT PRIMARY KEY NOT NULL,
  state TEXT NOT NULL,
  seen_at INTEGER NOT NULL
) WITHOUT ROWID;
-- The command queue: `seq` orders one agent's commands; taking one deletes it.
CREATE TABLE IF NOT EXISTS commands (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  agent TEXT NOT NULL,
  kind TEXT NOT NULL,
  args TEXT NOT NULL,
  deadline INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_agent ON commands (agent, seq);
CREATE TABLE IF NOT EXISTS command_replies (
  id TEXT PRIMARY KEY NOT NULL,
  reply TEXT NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

namespace {

// How often TakeCommands and WaitReply look at the file for other processes' writes. A write
// in this process wakes them at once.
constexpr Millis kCommandPoll{50};
// A reply nobody read, or a command nobody took this long after its deadline, belonged to a
// request that gave up: it is deleted rather than kept forever.
constexpr Millis kCommandRetention{10 * 60 * 1000};
// Agents not seen for this long are forgotten (ListAgents filters by age anyway).
constexpr Millis kAgentRetention{24 * 60 * 60 * 1000};

// Reserves `n` fencing tokens; returns the last one (the first is last - n + 1).
Result<long long> NextTokens(Tx& tx, long long n) {
  BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("UPDATE counters SET value = value + ? "
                                          "WHERE name = 'lease_token' RETURNING value"));
  s.Bind(n);
  BOOST_OUTCOME_TRY(auto row, s.Step());
  if (!row) return Error{Errc::kInternal, "lease_token counter is missing"};
  long long last = s.Int(0);
  BOOST_OUTCOME_TRY(s.Run());
  return last;
}

Result<void> CheckTtl(Millis ttl) {
  if (ttl <= Millis(0)) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("lease ttl must be positive, not {} ms", ttl.count())};
  }
  return Ok();
}

// Waits until the command generation moves past `seen` or `until` (a steady deadline), but no
// longer than one poll interval, so other processes' writes are noticed on the next look.
void WaitForCommandChange(StoreState& state, uint64_t seen,
                          std::chrono::steady_clock::time_point until) {
  auto wake = std::min(until, std::chrono::steady_clock::now() + kCommandPoll);
  std::unique_lock lock(state.command_mu);
  state.command_cv.wait_until(lock, wake, [&] { return state.command_generation != seen; });
}

uint64_t CommandGeneration(StoreState& state) {
  std::lock_guard lock(state.command_mu);
  return state.command_generation;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GPU workers

Result<std::vector<PendingRun>> SqliteStore::PendingRuns(const std::vector<std::string>& types,
                                                         int limit) {
  limit = std::clamp(limit, 1, 1000);
  std::vector<std::string> unique_types;
  for (const auto& t : types) {
    if (std::find(unique_types.begin(), unique_types.end(), t) == unique_types.end()) {
      unique_types.push_back(t);
    }
  }
  BOOST_OUTCOME_TRY(auto slot, state_->Reader());
  long long now = ToMillis(state_->clock.Now());
  // Per type, the best `limit` and the oldest `limit` (each one ordered scan of a partial
  // index over pending runs); then the best and oldest across types, merged.
  std::vector<PendingRun> best;
  std::vector<PendingRun> oldest;
  auto collect = [&](const char* sql, const std::string& type,
                     std::vector<PendingRun>& into) -> Result<void> {
    BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare(sql));
    s.Bind(type).Bind(now).Bind(limit);
    while (true) {
      BOOST_OUTCOME_TRY(auto row, s.Step());
      if (!row) return Ok();
      into.push_back(
          PendingRun{s.String(2), type, static_cast<int>(s.Int(0)), FromMillis(s.Int(1))});
    }
  };
  for (const auto& type : unique_types) {
    BOOST_OUTCOME_TRY(collect(kPendingBestSql, type, best));
    BOOST_OUTCOME_TRY(collect(kPendingOldestSql, type, oldest));
  }
  // Stable: within a type the scans' order (which breaks ties by commit order) stays.
  auto by_priority = [](const PendingRun& a, const PendingRun& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.created_at < b.created_at;
  };
  auto by_age = [](const PendingRun& a, const PendingRun& b) {
    return a.created_at < b.created_at;
  };
  std::stable_sort(best.begin(), best.end(), by_priority);
  if (static_cast<int>(best.size()) > limit) best.resize(limit);
  std::stable_sort(oldest.begin(), oldest.end(), by_age);
  if (static_cast<int>(oldest.size()) > limit) oldest.resize(limit);
  std::unordered_set<std::string> seen;
  std::vector<PendingRun> out;
  for (auto* list : {&best, &oldest}) {
    for (auto& run : *list) {
      if (seen.insert(run.id).second) out.push_back(std::move(run));
    }
  }
  std::stable_sort(out.begin(), out.end(), by_priority);
  return out;
}

Result<std::optional<Lease>> SqliteStore::ClaimRun(std::string_view id, std::string_view worker,
                                                   std::string_view gpu, Millis lease_ttl) {
  BOOST_OUTCOME_TRY(CheckTtl(lease_ttl));
  return state_->Write([&](Tx& tx) -> Result<std::optional<Lease>> {
    BOOST_OUTCOME_TRY(auto rowid, tx.Row(id));
    {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("SELECT state = 'pending' AND "
                                              "coalesce(not_before, 0) <= ? FROM runs "
                                              "WHERE rowid = ?"));
      s.Bind(tx.now).Bind(rowid);
      BOOST_OUTCOME_TRY(auto row, s.Step());
      if (!row) return NotFound(id);
      if (s.Int(0) == 0) return std::optional<Lease>();
    }
    BOOST_OUTCOME_TRY(long long token, NextTokens(tx, 1));
    // The same columns Claim sets for each run it hands out, plus the GPU.
    BOOST_OUTCOME_TRY(
        auto s, tx.db.Prepare("UPDATE runs SET state = 'processing', worker = ?, gpu = ?, "
                              "lease_token = ?, lease_expires_at = ?, attempts = attempts + 1, "
                              "started_at = ?, progress = NULL, cancel_requested = 0, "
                              "not_before = NULL, waiting_reason = NULL WHERE rowid = ? "
                              "RETURNING " GPUQ_RUN_COLUMNS));
    s.Bind(worker).Bind(gpu).Bind(token).Bind(tx.now + lease_ttl).Bind(tx.now).Bind(rowid);
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) return Error{Errc::kInternal, fmt::format("claimed run {} vanished", id)};
    Lease lease{ReadRun(s), token};
    BOOST_OUTCOME_TRY(s.Run());
    return std::optional<Lease>(std::move(lease));
  });
}

Result<void> SqliteStore::SetWaitingReason(std::string_view id,
                                           const std::optional<std::string>& reason) {
  long long rowid = 0;
  {
    // Workers set the same reason on every pass over the queue: only a change takes the
    // write lock.
    BOOST_OUTCOME_TRY(auto slot, state_->Reader());
    auto found = RunRowid(*slot->conn, state_->ids, id);
    if (!found) return found.error().code == Errc::kNotFound ? Ok() : Result<void>(found.error());
    rowid = found.value();
    BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare("SELECT waiting_reason IS ? FROM runs "
                                                  "WHERE rowid = ? AND state = 'pending'"));
    s.Bind(reason).Bind(rowid);
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row || s.Int(0) != 0) return Ok();
  }
  // A run's rowid never changes: the one found above holds inside the write.
  return state_->Write([&](Tx& tx) -> Result<void> {
    BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("UPDATE runs SET waiting_reason = ? "
                                            "WHERE rowid = ? AND state = 'pending'"));
    s.Bind(reason).Bind(rowid);
    return s.Run();
  });
}

Result<std::map<std::string, PendingStats>> SqliteStore::PendingByType() {
  BOOST_OUTCOME_TRY(auto slot, state_->Reader());
  BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare("SELECT type, count(*), max(priority) FROM runs "
                                                "WHERE state = 'pending' GROUP BY type"));
  std::map<std::string, PendingStats> stats;
  while (true) {
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) break;
    stats[s.String(0)] = PendingStats{static_cast<int>(s.Int(1)), static_cast<int>(s.Int(2))};
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Named leases. Held while expires_at >= now, the way a run's lease expires only once
// lease_expires_at < now.

Result<NamedLease> SqliteStore::AcquireLease(std::string_view name, std::string_view holder,
                                             Millis ttl) {
  BOOST_OUTCOME_TRY(CheckTtl(ttl));
  return state_->Write([&](Tx& tx) -> Result<NamedLease> {
    NamedLease lease{std::string(name), std::string(holder), 0, tx.now + ttl};
    {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("SELECT holder, token, expires_at FROM leases "
                                              "WHERE name = ? AND expires_at >= ?"));
      s.Bind(name).Bind(tx.now);
      BOOST_OUTCOME_TRY(auto row, s.Step());
      if (row && s.Text(0) != holder) {
        return Error{Errc::kConflict, fmt::format("lease {} is held by {} for another {} ms", name,
                                                  s.Text(0), s.Int(2) - ToMillis(tx.now))};
      }
      if (row) lease.token = s.Int(1);
    }
    if (lease.token != 0) {
      BOOST_OUTCOME_TRY(auto u, tx.db.Prepare("UPDATE leases SET expires_at = ? WHERE name = ?"));
      u.Bind(lease.expires_at).Bind(name);
      BOOST_OUTCOME_TRY(u.Run());
      return lease;
    }
    BOOST_OUTCOME_TRY(lease.token, NextTokens(tx, 1));
    BOOST_OUTCOME_TRY(auto u, tx.db.Prepare("INSERT INTO leases (name, holder, token, expires_at) "
                                            "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                                            "holder = excluded.holder, token = excluded.token, "
                                            "expires_at = excluded.expires_at"));
    u.Bind(name).Bind(holder).Bind(lease.token).Bind(lease.expires_at);
    BOOST_OUTCOME_TRY(u.Run());
    return lease;
  });
}

Result<void> SqliteStore::RenewLease(std::string_view name, long long token, Millis ttl) {
  BOOST_OUTCOME_TRY(CheckTtl(ttl));
  return state_->Write([&](Tx& tx) -> Result<void> {
    BOOST_OUTCOME_TRY(auto u, tx.db.Prepare("UPDATE leases SET expires_at = ? WHERE name = ? "
                                            "AND token = ? AND expires_at >= ?"));
    u.Bind(tx.now + ttl).Bind(name).Bind(token).Bind(tx.now);
    BOOST_OUTCOME_TRY(u.Run());
    if (sqlite3_changes(tx.db.db()) == 0) {
      return Error{Errc::kConflict,
                   fmt::format("lease {} is no longer held with token {}", name, token)};
    }
    return Ok();
  });
}

Result<void> SqliteStore::ReleaseLease(std::string_view name, long long token) {
  return state_->Write([&](Tx& tx) -> Result<void> {
    BOOST_OUTCOME_TRY(auto u, tx.db.Prepare("DELETE FROM leases WHERE name = ? AND token = ?"));
    u.Bind(name).Bind(token);
    return u.Run();
  });
}

Result<bool> SqliteStore::ForceReleaseLease(std::string_view name) {
  return state_->Write([&](Tx& tx) -> Result<bool> {
    BOOST_OUTCOME_TRY(auto u,
                      tx.db.Prepare("DELETE FROM leases WHERE name = ? RETURNING expires_at"));
    u.Bind(name);
    BOOST_OUTCOME_TRY(auto row, u.Step());
    bool held = row && u.Int(0) >= ToMillis(tx.now);
    if (row) {
      BOOST_OUTCOME_TRY(u.Run());
    }
    return held;
  });
}

Result<std::optional<NamedLease>> SqliteStore::GetLease(std::string_view name) {
  BOOST_OUTCOME_TRY(auto slot, state_->Reader());
  BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare("SELECT holder, token, expires_at FROM leases "
                                                "WHERE name = ? AND expires_at >= ?"));
  s.Bind(name).Bind(state_->clock.Now());
  BOOST_OUTCOME_TRY(auto row, s.Step());
  if (!row) return std::optional<NamedLease>();
  return std::optional<NamedLease>(
      NamedLease{std::string(name), s.String(0), s.Int(1), FromMillis(s.Int(2))});
}

// ---------------------------------------------------------------------------------------------
// Agents

Result<void> SqliteStore::PutAgent(std::string_view id, const Json& state) {
  std::string text = Dump(state);
  return state_->Write([&](Tx& tx) -> Result<void> {
    {
      BOOST_OUTCOME_TRY(auto u,
                        tx.db.Prepare("INSERT INTO agents (id, state, seen_at) VALUES (?, ?, ?) "
                                      "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
                                      "seen_at = excluded.seen_at"));
      u.Bind(id).Bind(text).Bind(tx.now);
      BOOST_OUTCOME_TRY(u.Run());
    }
    BOOST_OUTCOME_TRY(auto d, tx.db.Prepare("DELETE FROM agents WHERE seen_at < ?"));
    d.Bind(tx.now - kAgentRetention);
    return d.Run();
  });
}

Result<std::vector<AgentRecord>> SqliteStore::ListAgents(Millis max_age) {
  BOOST_OUTCOME_TRY(auto slot, state_->Reader());
  BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare("SELECT id, state, seen_at FROM agents "
                                                "WHERE seen_at >= ? ORDER BY id"));
  s.Bind(state_->clock.Now() - max_age);
  std::vector<AgentRecord> agents;
  while (true) {
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) break;
    agents.push_back(AgentRecord{s.String(0), ParseJson(s.Text(1)), FromMillis(s.Int(2))});
  }
  return agents;
}

// ---------------------------------------------------------------------------------------------
// Commands

Result<std::string> SqliteStore::PostCommand(std::string_view agent, std::string_view kind,
                                             const Json& args, TimePoint deadline) {
  std::string id = NewUuid();
  std::string args_text = Dump(args);
  BOOST_OUTCOME_TRY(state_->Write([&](Tx& tx) -> Result<void> {
    // Requests that gave up long ago leave commands nobody took and replies nobody read.
    {
      BOOST_OUTCOME_TRY(auto d, tx.db.Prepare("DELETE FROM commands WHERE deadline < ?"));
      d.Bind(tx.now - kCommandRetention);
      BOOST_OUTCOME_TRY(d.Run());
    }
    {
      BOOST_OUTCOME_TRY(auto d, tx.db.Prepare("DELETE FROM command_replies WHERE created_at < ?"));
      d.Bind(tx.now - kCommandRetention);
      BOOST_OUTCOME_TRY(d.Run());
    }
    BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("INSERT INTO commands (id, agent, kind, args, "
                                            "deadline, created_at) VALUES (?, ?, ?, ?, ?, ?)"));
    s.Bind(id).Bind(agent).Bind(kind).Bind(args_text).Bind(deadline).Bind(tx.now);
    return s.Run();
  }));
  state_->NotifyCommands();
  return id;
}

Result<std::vector<Command>> SqliteStore::TakeCommands(std::string_view agent, int max,
                                                       Millis max_wait) {
  max = std::clamp(max, 1, 1000);
  auto until = std::chrono::steady_clock::now() + max_wait;
  while (true) {
    // Read the generation before looking, so a post between the look and the wait ends it.
    uint64_t seen = CommandGeneration(*state_);
    bool any = false;
    {
      // Idle agents poll an empty queue: look on the read connection, write only to take.
      BOOST_OUTCOME_TRY(auto slot, state_->Reader());
      BOOST_OUTCOME_TRY(auto s,
                        slot->conn->Prepare("SELECT 1 FROM commands WHERE agent = ? LIMIT 1"));
      s.Bind(agent);
      BOOST_OUTCOME_TRY(any, s.Step());
    }
    if (any) {
      BOOST_OUTCOME_TRY(auto taken, state_->Write([&](Tx& tx) -> Result<std::vector<Command>> {
        BOOST_OUTCOME_TRY(auto s,
                          tx.db.Prepare("DELETE FROM commands WHERE seq IN (SELECT seq FROM "
                                        "commands WHERE agent = ? ORDER BY seq LIMIT ?) "
                                        "RETURNING seq, id, agent, kind, args, deadline"));
        s.Bind(agent).Bind(max);
        std::vector<std::pair<long long, Command>> rows;
        while (true) {
          BOOST_OUTCOME_TRY(auto row, s.Step());
          if (!row) break;
          rows.emplace_back(s.Int(0), Command{s.String(1), s.String(2), s.String(3),
                                              ParseJson(s.Text(4)), FromMillis(s.Int(5))});
        }
        // RETURNING gives no order: put them back in posting order.
        std::sort(rows.begin(), rows.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
        std::vector<Command> commands;
        for (auto& [seq, command] : rows) commands.push_back(std::move(command));
        return commands;
      }));
      if (!taken.empty()) return taken;
    }
    if (std::chrono::steady_clock::now() >= until) return std::vector<Command>{};
    WaitForCommandChange(*state_, seen, until);
  }
}

Result<void> SqliteStore::ReplyCommand(std::string_view id, const Json& reply) {
  std::string text = Dump(reply);
  BOOST_OUTCOME_TRY(state_->Write([&](Tx& tx) -> Result<void> {
    BOOST_OUTCOME_TRY(auto s,
                      tx.db.Prepare("INSERT INTO command_replies (id, reply, created_at) "
                                    "VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                                    "reply = excluded.reply, created_at = excluded.created_at"));
    s.Bind(id).Bind(text).Bind(tx.now);
    return s.Run();
  }));
  state_->NotifyCommands();
  return Ok();
}

Result<std::optional<Json>> SqliteStore::WaitReply(std::string_view id, Millis max_wait) {
  auto until = std::chrono::steady_clock::now() + max_wait;
  while (true) {
    uint64_t seen = CommandGeneration(*state_);
    bool any = false;
    {
      BOOST_OUTCOME_TRY(auto slot, state_->Reader());
      BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare("SELECT 1 FROM command_replies WHERE id = ?"));
      s.Bind(id);
      BOOST_OUTCOME_TRY(any, s.Step());
    }
    if (any) {
      BOOST_OUTCOME_TRY(auto reply, state_->Write([&](Tx& tx) -> Result<std::optional<Json>> {
        BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("DELETE FROM command_replies WHERE id = ? "
                                                "RETURNING reply"));
        s.Bind(id);
        BOOST_OUTCOME_TRY(auto row, s.Step());
        if (!row) return std::optional<Json>();
        std::optional<Json> out(ParseJson(s.Text(0)));
        BOOST_OUTCOME_TRY(s.Run());
        return out;
      }));
      // Empty only when another waiter for the same id read it first: keep waiting.
      if (reply) return reply;
    }
    if (std::chrono::steady_clock::now() >= until) return std::optional<Json>();
    WaitForCommandChange(*state_, seen, until);
  }
}

}  // namespace gpuq::store
