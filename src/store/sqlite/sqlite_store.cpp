#include "store/sqlite/sqlite_store.hpp"

#include <linux/futex.h>
#include <malloc.h>
#include <sqlite3.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "store/sqlite/run_ids.hpp"
#include "store/sqlite/run_order.hpp"
#include "store/sqlite/sqlite_internal.hpp"
#include "store/sqlite/wal_write_batching.hpp"

namespace gpuq::store {
using namespace sqlite;  // NOLINT: this file's own plumbing (sqlite_internal.hpp)
namespace {

// ---------------------------------------------------------------------------------------------
// Schema. Times are integer milliseconds since the epoch; JSON fields are JSON text.

// The runs table, `{}` its name. No index on `id`: an id decrypts to its run's rowid
// (run_ids.hpp), so a new run is appended, never inserted at a random place of an id index.
constexpr const char* kRunsTable = R"sql(
CREATE TABLE {} (
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  priority INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN
      ('waiting', 'pending', 'processing', 'completed', 'failed', 'cancelled')),
  payload TEXT NOT NULL,
  result TEXT,
  error TEXT,
  parent_run_id TEXT,
  depends_on TEXT NOT NULL DEFAULT '[]',
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  timeout_s INTEGER NOT NULL,
  progress TEXT,
  waiting_reason TEXT,
  worker TEXT,
  gpu TEXT,
  idempotency_key TEXT,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  not_before INTEGER,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  files TEXT NOT NULL DEFAULT '[]',
  lease_token INTEGER,
  lease_expires_at INTEGER
);
)sql";

// Every column of kRunsTable, for the copy of an older file's runs.
constexpr const char* kRunsTableColumns =
    GPUQ_RUN_COLUMNS ", lease_token, lease_expires_at";

// The tables and indexes beside the runs table and its ordered indexes (run_order.hpp).
constexpr const char* kRunSideSchema = R"sql(
CREATE UNIQUE INDEX runs_idempotency ON runs (idempotency_key)
  WHERE idempotency_key IS NOT NULL;
-- RequeueExpired / RequeueHeldBy: processing runs only.
CREATE INDEX runs_lease ON runs (lease_expires_at) WHERE state = 'processing';
-- PurgeFinishedBefore.
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
-- depends_on edges by rowid, to find a parent's children without scanning the JSON text.
-- A purge deletes the edges of the children it deletes.
CREATE TABLE IF NOT EXISTS run_deps (
  parent INTEGER NOT NULL,
  child INTEGER NOT NULL,
  PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_deps_child ON run_deps (child);
-- The random ids of runs made before schema 5, which do not decrypt to their rowid.
CREATE TABLE IF NOT EXISTS run_legacy_ids (
  id TEXT PRIMARY KEY NOT NULL,
  run INTEGER NOT NULL
) WITHOUT ROWID;
-- Global counters; `lease_token` is the fencing token, never reused; `last_run` is the rowid
-- of the newest run ever made, so no rowid (and no id) is used twice, purges or not.
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)
  WITHOUT ROWID;
INSERT OR IGNORE INTO counters (name, value) VALUES ('lease_token', 0);
INSERT OR IGNORE INTO counters (name, value) SELECT 'last_run', coalesce(max(rowid), 0) FROM runs;
)sql";

// Versions 1-4 keyed runs by a random UUID (an index leaf written at a random place per
// submit). The table is copied without it, rowids kept; the old ids go to run_legacy_ids and
// the depends_on edges from ids to rowids. Every index of `runs` is dropped with the old table.
constexpr const char* kUpgradeRunsToVersion5 = R"sql(
INSERT INTO runs_v5 (rowid, {0}) SELECT rowid, {0} FROM runs;
CREATE TABLE run_legacy_ids (id TEXT PRIMARY KEY NOT NULL, run INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO run_legacy_ids (id, run) SELECT id, rowid FROM runs;
CREATE TABLE run_deps_v5 (parent INTEGER NOT NULL, child INTEGER NOT NULL,
                          PRIMARY KEY (parent, child)) WITHOUT ROWID;
INSERT OR IGNORE INTO run_deps_v5 (parent, child)
  SELECT p.rowid, c.rowid FROM run_deps d JOIN runs p ON p.id = d.parent_id
  JOIN runs c ON c.id = d.child_id;
DROP TABLE run_deps;
DROP TABLE runs;
ALTER TABLE runs_v5 RENAME TO runs;
ALTER TABLE run_deps_v5 RENAME TO run_deps;
)sql";

}  // namespace

Run sqlite::ReadRun(const Stmt& s) {
  Run run;
  run.id = s.String(0);
  run.type = s.String(1);
  run.priority = static_cast<int>(s.Int(2));
  run.state = ParseRunState(s.Text(3)).value_or(RunState::kFailed);
  run.payload = ParseJson(s.Text(4));
  if (!s.IsNull(5)) run.result = ParseJson(s.Text(5));
  run.error = s.OptString(6);
  run.parent_run_id = s.OptString(7);
  Json deps = ParseJson(s.Text(8));
  if (deps.is_array()) {
    for (const auto& d : deps) {
      if (d.is_string()) run.depends_on.push_back(d.get<std::string>());
    }
  }
  run.attempts = static_cast<int>(s.Int(9));
  run.max_attempts = static_cast<int>(s.Int(10));
  run.timeout_s = static_cast<int>(s.Int(11));
  if (!s.IsNull(12)) {
    Json progress = ParseJson(s.Text(12));
    if (progress.is_object()) {
      auto fraction = progress.find("fraction");
      if (fraction != progress.end() && fraction->is_number()) {
        run.progress.fraction = fraction->get<double>();
      }
      auto message = progress.find("message");
      if (message != progress.end() && message->is_string()) {
        run.progress.message = message->get<std::string>();
      }
    }
  }
  run.waiting_reason = s.OptString(13);
  run.worker = s.OptString(14);
  run.gpu = s.OptString(15);
  run.idempotency_key = s.OptString(16);
  run.created_at = FromMillis(s.Int(17));
  run.started_at = s.OptTime(18);
  run.finished_at = s.OptTime(19);
  run.not_before = s.OptTime(20);
  run.cancel_requested = s.Int(21) != 0;
  Json files = ParseJson(s.Text(22));
  if (files.is_array()) {
    for (const auto& f : files) {
      if (f.is_string()) run.files.push_back(f.get<std::string>());
    }
  }
  return run;
}

namespace {

std::string ProgressJson(const Progress& progress) {
  Json j = Json::object();
  j["fraction"] = progress.fraction ? Json(*progress.fraction) : Json(nullptr);
  j["message"] = progress.message;
  return Dump(j);
}

std::string StringArrayJson(const std::vector<std::string>& items) {
  return Dump(Json(items));
}

std::string WaitingReason(size_t parents) {
  return fmt::format("waiting for {} parent runs", parents);
}

// List cursor: "<created_at ms>_<rowid>" of the last row of a page (run_order.hpp: the rowid
// breaks ties). Opaque to clients; version 3 put the id where the rowid is now.
std::string MakeCursor(const Run& run, long long rowid) {
  return fmt::format("{}_{}", ToMillis(run.created_at), rowid);
}

std::optional<std::pair<long long, long long>> ParseCursor(std::string_view cursor) {
  auto number = [](std::string_view digits) -> std::optional<long long> {
    if (digits.empty() || digits.size() > 18) return std::nullopt;
    long long n = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + (c - '0');
    }
    return n;
  };
  auto sep = cursor.find('_');
  if (sep == std::string_view::npos) return std::nullopt;
  auto ms = number(cursor.substr(0, sep));
  auto rowid = number(cursor.substr(sep + 1));
  if (!ms || !rowid) return std::nullopt;
  return std::make_pair(*ms, *rowid);
}

}  // namespace

Result<long long> sqlite::RunRowid(Conn& db, const RunIds& ids, std::string_view id) {
  if (auto rowid = ids.RowidOf(id)) return *rowid;
  BOOST_OUTCOME_TRY(auto s, db.Prepare("SELECT run FROM run_legacy_ids WHERE id = ?"));
  s.Bind(id);
  BOOST_OUTCOME_TRY(auto row, s.Step());
  if (!row) return NotFound(id);
  return s.Int(0);
}

Result<Run> sqlite::LoadRun(Conn& db, long long rowid, std::string_view id) {
  BOOST_OUTCOME_TRY(auto s, db.Prepare("SELECT " GPUQ_RUN_COLUMNS " FROM runs WHERE rowid = ?"));
  s.Bind(rowid);
  BOOST_OUTCOME_TRY(auto row, s.Step());
  if (!row) return NotFound(id);
  return ReadRun(s);
}

Error sqlite::LeaseError(Conn& db, long long rowid, std::string_view id) {
  auto s = db.Prepare("SELECT state FROM runs WHERE rowid = ?");
  if (!s) return s.error();
  s.value().Bind(rowid);
  auto row = s.value().Step();
  if (!row) return row.error();
  if (!row.value()) return NotFound(id);
  return Error{Errc::kConflict, fmt::format("lease lost on run {} (it is {})", id,
                                            s.value().Text(0))};
}

namespace {

// A run by both its names: the rowid for SQL, the id for messages.
struct RunKey {
  long long rowid;
  std::string id;
};

// The waiting children of the run at `parent`.
Result<std::vector<RunKey>> WaitingChildren(Tx& tx, long long parent) {
  BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("SELECT r.rowid, r.id FROM run_deps d JOIN runs r "
                                          "ON r.rowid = d.child WHERE d.parent = ? AND "
                                          "r.state = 'waiting'"));
  s.Bind(parent);
  std::vector<RunKey> children;
  while (true) {
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) break;
    children.push_back(RunKey{s.Int(0), s.String(1)});
  }
  return children;
}

// The run `parent` ended without completing: every run waiting on it fails, and so on down.
Result<void> FailWaitingChildren(Tx& tx, RunKey parent, std::string why) {
  std::vector<std::pair<RunKey, std::string>> work{{std::move(parent), std::move(why)}};
  while (!work.empty()) {
    auto [run, reason] = std::move(work.back());
    work.pop_back();
    BOOST_OUTCOME_TRY(auto children, WaitingChildren(tx, run.rowid));
    std::string error = fmt::format("parent run {} {}", run.id, reason);
    for (auto& child : children) {
      BOOST_OUTCOME_TRY(auto u, tx.db.Prepare(
                                    "UPDATE runs SET state = 'failed', error = ?, finished_at = ?, "
                                    "waiting_reason = NULL WHERE rowid = ?"));
      u.Bind(error).Bind(tx.now).Bind(child.rowid);
      BOOST_OUTCOME_TRY(u.Run());
      work.emplace_back(std::move(child), "failed");
    }
  }
  return Ok();
}

// The run at `parent` completed: its waiting children whose parents all completed become
// pending.
Result<void> ReleaseWaitingChildren(Tx& tx, long long parent) {
  BOOST_OUTCOME_TRY(auto children, WaitingChildren(tx, parent));
  for (const auto& child : children) {
    long long unfinished = 0;
    {
      // A parent that is gone was purged, which only happens to finished runs; had it not
      // completed, this child would already have failed.
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare(
                                    "SELECT count(*) FROM run_deps d JOIN runs r ON r.rowid = "
                                    "d.parent WHERE d.child = ? AND r.state != 'completed'"));
      s.Bind(child.rowid);
      BOOST_OUTCOME_TRY(s.Step());
      unfinished = s.Int(0);
    }
    if (unfinished == 0) {
      BOOST_OUTCOME_TRY(auto u, tx.db.Prepare("UPDATE runs SET state = 'pending', "
                                              "waiting_reason = NULL WHERE rowid = ?"));
      u.Bind(child.rowid);
      BOOST_OUTCOME_TRY(u.Run());
      tx.wake = true;
    } else {
      BOOST_OUTCOME_TRY(auto u,
                        tx.db.Prepare("UPDATE runs SET waiting_reason = ? WHERE rowid = ?"));
      u.Bind(WaitingReason(static_cast<size_t>(unfinished))).Bind(child.rowid);
      BOOST_OUTCOME_TRY(u.Run());
    }
  }
  return Ok();
}

// A processing run lost its attempt (lease expired, worker restarted): back to pending with
// backoff, or failed once it used max_attempts.
Result<void> RequeueOrFail(Tx& tx, const RunKey& run, int attempts, int max_attempts,
                           std::string_view why) {
  if (attempts >= max_attempts) {
    BOOST_OUTCOME_TRY(auto u, tx.db.Prepare(
                                  "UPDATE runs SET state = 'failed', error = ?, finished_at = ?, "
                                  "lease_token = NULL, lease_expires_at = NULL, "
                                  "cancel_requested = 0 WHERE rowid = ?"));
    u.Bind(fmt::format("{} after {} attempts", why, attempts)).Bind(tx.now).Bind(run.rowid);
    BOOST_OUTCOME_TRY(u.Run());
    return FailWaitingChildren(tx, run, "failed");
  }
  BOOST_OUTCOME_TRY(auto u, tx.db.Prepare(
                                "UPDATE runs SET state = 'pending', error = ?, not_before = ?, "
                                "lease_token = NULL, lease_expires_at = NULL, worker = NULL, "
                                "cancel_requested = 0 WHERE rowid = ?"));
  u.Bind(fmt::format("{} on attempt {}", why, attempts))
      .Bind(tx.now + RetryBackoff(attempts))
      .Bind(run.rowid);
  BOOST_OUTCOME_TRY(u.Run());
  tx.wake = true;
  return Ok();
}

struct Held {
  RunKey run;
  std::string worker;
  int attempts;
  int max_attempts;
};

Result<int> RequeueHeld(Tx& tx, const std::vector<Held>& held, bool expired) {
  for (const auto& h : held) {
    std::string why = expired ? std::string("lease expired")
                              : fmt::format("worker {} gave the run up", h.worker);
    BOOST_OUTCOME_TRY(RequeueOrFail(tx, h.run, h.attempts, h.max_attempts, why));
  }
  return static_cast<int>(held.size());
}

Result<std::vector<Held>> CollectHeld(Stmt& s) {
  std::vector<Held> held;
  while (true) {
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) break;
    held.push_back(Held{RunKey{s.Int(4), s.String(0)}, s.String(1), static_cast<int>(s.Int(2)),
                        static_cast<int>(s.Int(3))});
  }
  return held;
}

constexpr const char* kExpiredSql =
    "SELECT id, coalesce(worker, ''), attempts, max_attempts, rowid FROM runs "
    "WHERE state = 'processing' AND lease_expires_at < ?";
constexpr const char* kHeldBySql =
    "SELECT id, coalesce(worker, ''), attempts, max_attempts, rowid FROM runs "
    "WHERE state = 'processing' AND substr(coalesce(worker, ''), 1, length(?1)) = ?1";

}  // namespace

// ---------------------------------------------------------------------------------------------

namespace {

Result<RunIds::Key> ReadRunIdKey(Conn& conn) {
  BOOST_OUTCOME_TRY(auto s, conn.Prepare("SELECT name, value FROM counters "
                                         "WHERE name IN ('run_id_key_0', 'run_id_key_1')"));
  RunIds::Key key;
  int found = 0;
  while (true) {
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) break;
    auto value = static_cast<uint64_t>(s.Int(1));
    (s.Text(0) == "run_id_key_0" ? key.k0 : key.k1) = value;
    ++found;
  }
  if (found != 2) return Error{Errc::kInternal, "sqlite: the run id key is missing"};
  return key;
}

// A key under which no old random id (run_legacy_ids) happens to decrypt to a rowid, so an id
// names one run by construction. A clash has odds of 2^-61 per old id: the loop is a guard.
Result<RunIds::Key> NewRunIdKey(Conn& conn) {
  while (true) {
    RunIds::Key key = RunIds::NewKey();
    RunIds ids(key);
    bool clash = false;
    BOOST_OUTCOME_TRY(auto s, conn.Prepare("SELECT id FROM run_legacy_ids"));
    while (!clash) {
      BOOST_OUTCOME_TRY(auto row, s.Step());
      if (!row) break;
      clash = ids.RowidOf(s.Text(0)).has_value();
    }
    if (!clash) return key;
  }
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(std::filesystem::path file, Clock& clock) {
  // SQLite allocates and frees a statement journal around most writes inside a transaction.
  // With glibc's default trim threshold the writer thread's arena then shrinks and regrows
  // by a few pages per statement: a madvise() and a TLB shootdown across every CPU each time,
  // which measured as a third of all CPU in claim+complete loops. Process-wide, once.
  // Setting the trim threshold also freezes glibc's mmap threshold at 128 KiB, so every
  // larger buffer became an mmap/munmap pair (hundreds a second under load): raise it too.
  // SQLite's memory statistics take a global mutex on every allocation of every connection;
  // nothing here reads them.
  static std::once_flag process_tuned;
  std::call_once(process_tuned, [] {
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 8 << 20);
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);  // SQLITE_MISUSE if SQLite already started
  });
  std::error_code ec;
  file = std::filesystem::absolute(file, ec).lexically_normal();
  if (ec) return Error{Errc::kInvalidArgument, fmt::format("bad store path: {}", ec.message())};
  if (file.has_parent_path()) {
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec) {
      return Error{Errc::kUnavailable, fmt::format("cannot create {}: {}",
                                                   file.parent_path().string(), ec.message())};
    }
  }
  // The writer's WAL appends of a commit reach the file in one write (wal_write_batching.hpp,
  // which says why these two pragmas keep synchronous = NORMAL's guarantees).
  const char* writer_vfs = WalWriteBatchingVfs();
  BOOST_OUTCOME_TRY(auto conn, Conn::Open(file, writer_vfs));
  // New files only (an existing file keeps its size). Chosen when each submit dirtied a leaf
  // of the random-UUID primary-key index (schema 4 and older): 1 KiB pages cut the WAL written
  // per submit from ~9 KB to ~3.5 KB. Since schema 5 a submit appends, and 4 KiB pages
  // measured the same (30.6-33.0k against 28.3-33.1k POST /submit_task per second).
  BOOST_OUTCOME_TRY(conn->Exec("PRAGMA page_size = 1024"));
  if (writer_vfs != nullptr) {
    BOOST_OUTCOME_TRY(conn->Exec("PRAGMA synchronous = FULL; PRAGMA checkpoint_fullfsync = ON"));
  }
  {
    BOOST_OUTCOME_TRY(auto s, conn->Prepare("PRAGMA journal_mode = WAL"));
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row || s.Text(0) != "wal") {
      return Error{Errc::kUnavailable,
                   fmt::format("sqlite {}: cannot switch to WAL mode", file.string())};
    }
  }
  // Two processes may create the schema at once: check and create under the write lock.
  BOOST_OUTCOME_TRY(conn->Exec("BEGIN IMMEDIATE"));
  auto schema = [&]() -> Result<void> {
    long long version = 0;
    {  // reset before any DDL: DROP INDEX fails beside an active statement
      BOOST_OUTCOME_TRY(auto s, conn->Prepare("PRAGMA user_version"));
      BOOST_OUTCOME_TRY(s.Step());
      version = s.Int(0);
    }
    if (version == kSchemaVersion) return Ok();
    if (version > kSchemaVersion) {
      return Error{Errc::kInternal,
                   fmt::format("{} has schema version {}, newer than this gpuq's {}",
                               file.string(), version, kSchemaVersion)};
    }
    // Version 1 files (runs only) gain the GPU-worker tables in place; every older file gets
    // its runs copied into a table without the id index (kUpgradeRunsToVersion5) and so its
    // ordered indexes rebuilt (run_order.hpp: ascending since 3, rowid tie-break since 4).
    if (version < 1) {
      BOOST_OUTCOME_TRY(conn->Exec(fmt::format(kRunsTable, "runs").c_str()));
    } else {
      spdlog::info("store upgrading file={} schema={} to={}: copying the runs to a table "
                   "without the id index",
                   file.string(), version, kSchemaVersion);
      BOOST_OUTCOME_TRY(conn->Exec(fmt::format(kRunsTable, "runs_v5").c_str()));
      BOOST_OUTCOME_TRY(
          conn->Exec(fmt::format(kUpgradeRunsToVersion5, kRunsTableColumns).c_str()));
    }
    BOOST_OUTCOME_TRY(conn->Exec(kRunSideSchema));
    BOOST_OUTCOME_TRY(conn->Exec(kOrderedIndexes));
    BOOST_OUTCOME_TRY(conn->Exec(kGpuSchema));
    {
      BOOST_OUTCOME_TRY(auto key, NewRunIdKey(*conn));
      BOOST_OUTCOME_TRY(auto s, conn->Prepare("INSERT INTO counters (name, value) "
                                              "VALUES ('run_id_key_0', ?), ('run_id_key_1', ?)"));
      s.Bind(static_cast<long long>(key.k0)).Bind(static_cast<long long>(key.k1));
      BOOST_OUTCOME_TRY(s.Run());
    }
    return conn->Exec(fmt::format("PRAGMA user_version = {}", kSchemaVersion).c_str());
  }();
  if (!schema) {
    (void)conn->Exec("ROLLBACK");
    return schema.error();
  }
  BOOST_OUTCOME_TRY(conn->Exec("COMMIT"));
  BOOST_OUTCOME_TRY(conn->Exec("PRAGMA wal_autocheckpoint = 0"));
  // A WAL that grew under a burst is truncated back to this size once it starts over.
  BOOST_OUTCOME_TRY(conn->Exec(
      fmt::format("PRAGMA journal_size_limit = {}", WalCheckpointer::kJournalSizeLimit).c_str()));
  BOOST_OUTCOME_TRY(auto key, ReadRunIdKey(*conn));
  BOOST_OUTCOME_TRY(auto checkpoint_conn, Conn::Open(file));
  auto state = std::make_unique<State>(std::move(file), clock, RunIds(key), std::move(conn),
                                       std::move(checkpoint_conn));
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(state)));
}

SqliteStore::SqliteStore(std::unique_ptr<State> state) : state_(std::move(state)) {}
SqliteStore::~SqliteStore() = default;

namespace {

// A submit's text, built off the writer thread so the transaction does only SQL.
struct SubmitWork {
  const NewRun* run = nullptr;  // the caller's (Submit) or the Async op's (SubmitAsync)
  std::string payload;
  std::vector<std::string> parents;
  std::string depends_on;
};

Result<SubmitWork> PrepareSubmit(const NewRun& run) {
  if (run.type.empty()) return Error{Errc::kInvalidArgument, "run type is empty"};
  if (run.max_attempts < 1) return Error{Errc::kInvalidArgument, "max_attempts must be >= 1"};
  SubmitWork work;
  work.payload = Dump(run.payload);
  for (const auto& p : run.depends_on) {
    if (std::find(work.parents.begin(), work.parents.end(), p) == work.parents.end()) {
      work.parents.push_back(p);
    }
  }
  work.depends_on = StringArrayJson(work.parents);
  work.run = &run;
  return work;
}

// The state of the run `id`; nullopt when no such run exists.
Result<std::optional<std::pair<long long, RunState>>> FindParent(Tx& tx, std::string_view id) {
  auto rowid = tx.Row(id);
  if (!rowid) {
    if (rowid.error().code == Errc::kNotFound) return std::nullopt;
    return rowid.error();
  }
  BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("SELECT state FROM runs WHERE rowid = ?"));
  s.Bind(rowid.value());
  BOOST_OUTCOME_TRY(auto row, s.Step());
  if (!row) return std::nullopt;
  return std::make_pair(rowid.value(), ParseRunState(s.Text(0)).value_or(RunState::kFailed));
}

Result<Submitted> InsertRun(Tx& tx, const SubmitWork& work) {
  const NewRun& run = *work.run;
  if (run.idempotency_key) {
    BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("SELECT id FROM runs WHERE idempotency_key = ?"));
    s.Bind(*run.idempotency_key);
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (row) return Submitted{s.String(0), false};
  }
  RunState state = RunState::kPending;
  std::optional<std::string> waiting_reason;
  std::optional<std::string> error;
  std::optional<TimePoint> finished_at;
  size_t unfinished = 0;
  std::vector<long long> parent_rowids;
  for (const auto& parent : work.parents) {
    BOOST_OUTCOME_TRY(auto found, FindParent(tx, parent));
    if (!found) {
      return Error{Errc::kInvalidArgument, fmt::format("depends_on run {} not found", parent)};
    }
    auto [parent_rowid, parent_state] = *found;
    parent_rowids.push_back(parent_rowid);
    if (parent_state == RunState::kCompleted) continue;
    if (IsFinished(parent_state)) {
      if (!error) error = fmt::format("parent run {} {}", parent, ToString(parent_state));
    } else {
      ++unfinished;
    }
  }
  if (error) {
    state = RunState::kFailed;
    finished_at = tx.now;
  } else if (unfinished > 0) {
    state = RunState::kWaiting;
    waiting_reason = WaitingReason(unfinished);
  }
  long long rowid = 0;
  {
    BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("UPDATE counters SET value = value + 1 "
                                            "WHERE name = 'last_run' RETURNING value"));
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) return Error{Errc::kInternal, "last_run counter is missing"};
    rowid = s.Int(0);
    BOOST_OUTCOME_TRY(s.Run());
  }
  if (rowid < 1 || rowid > RunIds::kMaxRowid) {
    return Error{Errc::kInternal, fmt::format("run rowid {} is out of range", rowid)};
  }
  std::string id = tx.ids.IdOf(rowid);
  {
    BOOST_OUTCOME_TRY(
        auto s, tx.db.Prepare("INSERT INTO runs (rowid, id, type, priority, state, payload, "
                              "error, parent_run_id, depends_on, max_attempts, timeout_s, "
                              "waiting_reason, idempotency_key, created_at, finished_at) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    s.Bind(rowid)
        .Bind(id)
        .Bind(run.type)
        .Bind(run.priority)
        .Bind(ToString(state))
        .Bind(work.payload)
        .Bind(error)
        .Bind(run.parent_run_id)
        .Bind(work.depends_on)
        .Bind(run.max_attempts)
        .Bind(run.timeout_s)
        .Bind(waiting_reason)
        .Bind(run.idempotency_key)
        .Bind(tx.now)
        .Bind(finished_at);
    BOOST_OUTCOME_TRY(s.Run());
  }
  for (long long parent : parent_rowids) {
    BOOST_OUTCOME_TRY(auto s,
                      tx.db.Prepare("INSERT INTO run_deps (parent, child) VALUES (?, ?)"));
    s.Bind(parent).Bind(rowid);
    BOOST_OUTCOME_TRY(s.Run());
  }
  tx.wake = state == RunState::kPending;
  return Submitted{std::move(id), true};
}

}  // namespace

Result<Submitted> SqliteStore::Submit(const NewRun& run) {
  BOOST_OUTCOME_TRY(auto work, PrepareSubmit(run));
  return state_->Write([&](Tx& tx) { return InsertRun(tx, work); });
}

void SqliteStore::SubmitAsync(NewRun run, SubmitCallback done) {
  auto work = PrepareSubmit(run);
  if (!work) return done(work.error());
  // Owned by the writer from Enqueue on; `finish` runs on the writer thread after the commit
  // that made the run durable (or after the batch failed), calls `done` and frees it.
  struct Async {
    Op op;
    NewRun run;
    SubmitWork work;
    SubmitCallback done;
    std::optional<Result<Submitted>> out;
  };
  auto* async = new Async{{}, std::move(run), std::move(work).value(), std::move(done),
                          std::nullopt};
  async->work.run = &async->run;
  async->op.ctx = async;
  async->op.fn = [](void* p, Tx& tx) -> bool {
    auto* a = static_cast<Async*>(p);
    try {
      a->out.emplace(InsertRun(tx, a->work));
    } catch (const std::exception& e) {
      a->out.emplace(Error{Errc::kInternal, fmt::format("store write failed: {}", e.what())});
    }
    return a->out->has_value();
  };
  async->op.finish = [](Op* op) {
    std::unique_ptr<Async> a(static_cast<Async*>(op->ctx));
    Result<Submitted> result =
        op->batch_error ? Result<Submitted>(*op->batch_error) : std::move(*a->out);
    try {
      a->done(std::move(result));
    } catch (const std::exception& e) {  // the contract says it must not throw; don't die
    }
  };
  state_->Enqueue(&async->op);
}

Result<Run> SqliteStore::Get(std::string_view id) {
  BOOST_OUTCOME_TRY(auto slot, state_->Reader());
  BOOST_OUTCOME_TRY(auto rowid, RunRowid(*slot->conn, state_->ids, id));
  return LoadRun(*slot->conn, rowid, id);
}

Result<Run> SqliteStore::GetStamped(std::string_view id, RunStamp& stamp) {
  const ChangeStamps* stamps = state_->stamps.get();
  if (stamps == nullptr) {
    stamp = RunStamp{};
    return Get(id);
  }
  BOOST_OUTCOME_TRY(auto slot, state_->Reader());
  auto rowid = RunRowid(*slot->conn, state_->ids, id);
  if (!rowid) {
    stamp = RunStamp{};
    return rowid.error();
  }
  // The stamp is loaded before the read: a commit the read does not see bumps it afterwards.
  stamp = RunStamp{rowid.value(), stamps->Load(rowid.value()), true};
  auto run = LoadRun(*slot->conn, rowid.value(), id);
  if (!run) stamp = RunStamp{};
  return run;
}

bool SqliteStore::RunUnchanged(const RunStamp& stamp) const {
  const ChangeStamps* stamps = state_->stamps.get();
  return stamp.valid && stamps != nullptr && stamps->Load(stamp.key) == stamp.seen;
}

Result<RunPage> SqliteStore::List(const RunFilter& filter) {
  int limit = std::clamp(filter.limit, 1, 1000);
  std::optional<std::pair<long long, long long>> cursor;
  if (filter.before) {
    cursor = ParseCursor(*filter.before);
    if (!cursor) {
      return Error{Errc::kInvalidArgument, fmt::format("malformed cursor '{}'", *filter.before)};
    }
  }
  std::string sql = ListSql(GPUQ_RUN_COLUMNS ", rowid", filter.state.has_value(),
                            filter.type.has_value(), filter.parent_run_id.has_value(),
                            cursor.has_value());

  BOOST_OUTCOME_TRY(auto slot, state_->Reader());
  BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare(sql));
  if (filter.state) s.Bind(ToString(*filter.state));
  if (filter.type) s.Bind(*filter.type);
  if (filter.parent_run_id) s.Bind(*filter.parent_run_id);
  if (cursor) s.Bind(cursor->first).Bind(cursor->second);
  s.Bind(limit + 1);
  RunPage page;
  long long last_rowid = 0;
  while (true) {
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) break;
    if (static_cast<int>(page.runs.size()) == limit) {
      page.next_before = MakeCursor(page.runs.back(), last_rowid);
      break;
    }
    page.runs.push_back(ReadRun(s));
    last_rowid = s.Int(kRunColumnCount);
  }
  return page;
}

Result<std::vector<Lease>> SqliteStore::Claim(const ClaimRequest& request) {
  std::vector<std::string> types;
  for (const auto& t : request.types) {
    if (std::find(types.begin(), types.end(), t) == types.end()) types.push_back(t);
  }
  int max_runs = std::clamp(request.max_runs, 1, 1000);
  if (types.empty()) return std::vector<Lease>{};

  // Cheap look on this thread's read connection first: idle workers polling an empty queue
  // then never take the write lock. A run submitted after this snapshot is simply claimed on
  // the next call, as if this call had come a moment earlier.
  {
    BOOST_OUTCOME_TRY(auto slot, state_->Reader());
    slot->seen_work = state_->work_generation.load();
    long long now = ToMillis(state_->clock.Now());
    bool any = false;
    for (const auto& type : types) {
      BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare(kClaimableSql));
      s.Bind(type).Bind(now).Bind(1);
      BOOST_OUTCOME_TRY(auto row, s.Step());
      if (row) {
        any = true;
        break;
      }
    }
    if (!any) return std::vector<Lease>{};
  }

  return state_->Write([&](Tx& tx) -> Result<std::vector<Lease>> {
    struct Candidate {
      long long priority;
      long long created_at;
      long long rowid;
      std::string id;
    };
    // One ordered index scan per type, merged here: cheaper than letting SQLite sort all
    // pending runs of several types.
    std::vector<Candidate> candidates;
    for (const auto& type : types) {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare(kClaimableSql));
      s.Bind(type).Bind(tx.now).Bind(max_runs);
      while (true) {
        BOOST_OUTCOME_TRY(auto row, s.Step());
        if (!row) break;
        candidates.push_back(Candidate{s.Int(0), s.Int(1), s.Int(2), s.String(3)});
      }
    }
    std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
      if (a.priority != b.priority) return a.priority > b.priority;
      if (a.created_at != b.created_at) return a.created_at < b.created_at;
      return a.rowid < b.rowid;
    });
    if (static_cast<int>(candidates.size()) > max_runs) candidates.resize(max_runs);
    std::vector<Lease> leases;
    if (candidates.empty()) return leases;

    long long last_token = 0;
    {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("UPDATE counters SET value = value + ? "
                                              "WHERE name = 'lease_token' RETURNING value"));
      s.Bind(static_cast<long long>(candidates.size()));
      BOOST_OUTCOME_TRY(auto row, s.Step());
      if (!row) return Error{Errc::kInternal, "lease_token counter is missing"};
      last_token = s.Int(0);
      BOOST_OUTCOME_TRY(s.Run());
    }
    long long token = last_token - static_cast<long long>(candidates.size());
    TimePoint expires = tx.now + request.lease_ttl;
    for (const auto& c : candidates) {
      ++token;
      BOOST_OUTCOME_TRY(
          auto s, tx.db.Prepare("UPDATE runs SET state = 'processing', worker = ?, gpu = NULL, "
                                "lease_token = ?, lease_expires_at = ?, attempts = attempts + 1, "
                                "started_at = ?, progress = NULL, cancel_requested = 0, "
                                "not_before = NULL, waiting_reason = NULL WHERE rowid = ? "
                                "RETURNING " GPUQ_RUN_COLUMNS));
      s.Bind(request.worker).Bind(token).Bind(expires).Bind(tx.now).Bind(c.rowid);
      BOOST_OUTCOME_TRY(auto row, s.Step());
      if (!row) return Error{Errc::kInternal, fmt::format("claimed run {} vanished", c.id)};
      leases.push_back(Lease{ReadRun(s), token});
      BOOST_OUTCOME_TRY(s.Run());
    }
    return leases;
  });
}

Result<LeaseStatus> SqliteStore::Heartbeat(std::string_view id, long long token, Millis ttl) {
  return state_->Write([&](Tx& tx) -> Result<LeaseStatus> {
    BOOST_OUTCOME_TRY(auto rowid, tx.Row(id));
    BOOST_OUTCOME_TRY(auto s, tx.db.Prepare(
                                  "UPDATE runs SET lease_expires_at = ? WHERE rowid = ? AND "
                                  "lease_token = ? AND state = 'processing' "
                                  "RETURNING cancel_requested"));
    s.Bind(tx.now + ttl).Bind(rowid).Bind(token);
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) return LeaseError(tx.db, rowid, id);
    LeaseStatus status{s.Int(0) != 0};
    BOOST_OUTCOME_TRY(s.Run());
    return status;
  });
}

Result<void> SqliteStore::ReportProgress(std::string_view id, long long token,
                                         const Progress& progress) {
  std::string text = ProgressJson(progress);
  return state_->Write([&](Tx& tx) -> Result<void> {
    BOOST_OUTCOME_TRY(auto rowid, tx.Row(id));
    BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("UPDATE runs SET progress = ? WHERE rowid = ? AND "
                                            "lease_token = ? AND state = 'processing'"));
    s.Bind(text).Bind(rowid).Bind(token);
    BOOST_OUTCOME_TRY(s.Run());
    if (sqlite3_changes(tx.db.db()) == 0) return LeaseError(tx.db, rowid, id);
    return Ok();
  });
}

Result<void> SqliteStore::Complete(std::string_view id, long long token, const Json& result,
                                   const std::vector<std::string>& files) {
  std::string result_text = Dump(result);
  std::string files_text = StringArrayJson(files);
  return state_->Write([&](Tx& tx) -> Result<void> {
    BOOST_OUTCOME_TRY(auto rowid, tx.Row(id));
    {
      BOOST_OUTCOME_TRY(
          auto s, tx.db.Prepare("UPDATE runs SET state = 'completed', finished_at = ?, "
                                "result = ?, files = ?, error = NULL, lease_token = NULL, "
                                "lease_expires_at = NULL, cancel_requested = 0 "
                                "WHERE rowid = ? AND lease_token = ? AND state = 'processing'"));
      s.Bind(tx.now).Bind(result_text).Bind(files_text).Bind(rowid).Bind(token);
      BOOST_OUTCOME_TRY(s.Run());
      if (sqlite3_changes(tx.db.db()) == 0) return LeaseError(tx.db, rowid, id);
    }
    return ReleaseWaitingChildren(tx, rowid);
  });
}

Result<FailOutcome> SqliteStore::Fail(std::string_view id, long long token, std::string error,
                                      bool retryable) {
  return state_->Write([&](Tx& tx) -> Result<FailOutcome> {
    BOOST_OUTCOME_TRY(auto rowid, tx.Row(id));
    int attempts = 0;
    int max_attempts = 0;
    {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("SELECT attempts, max_attempts FROM runs WHERE "
                                              "rowid = ? AND lease_token = ? AND "
                                              "state = 'processing'"));
      s.Bind(rowid).Bind(token);
      BOOST_OUTCOME_TRY(auto row, s.Step());
      if (!row) return LeaseError(tx.db, rowid, id);
      attempts = static_cast<int>(s.Int(0));
      max_attempts = static_cast<int>(s.Int(1));
    }
    if (retryable && attempts < max_attempts) {
      BOOST_OUTCOME_TRY(auto u, tx.db.Prepare(
                                    "UPDATE runs SET state = 'pending', error = ?, not_before = ?, "
                                    "lease_token = NULL, lease_expires_at = NULL, worker = NULL, "
                                    "cancel_requested = 0 WHERE rowid = ?"));
      u.Bind(error).Bind(tx.now + RetryBackoff(attempts)).Bind(rowid);
      BOOST_OUTCOME_TRY(u.Run());
      tx.wake = true;
      return FailOutcome::kRetrying;
    }
    {
      BOOST_OUTCOME_TRY(auto u, tx.db.Prepare(
                                    "UPDATE runs SET state = 'failed', error = ?, finished_at = ?, "
                                    "lease_token = NULL, lease_expires_at = NULL, "
                                    "cancel_requested = 0 WHERE rowid = ?"));
      u.Bind(error).Bind(tx.now).Bind(rowid);
      BOOST_OUTCOME_TRY(u.Run());
    }
    BOOST_OUTCOME_TRY(FailWaitingChildren(tx, RunKey{rowid, std::string(id)}, "failed"));
    return FailOutcome::kFailed;
  });
}

Result<void> SqliteStore::MarkCancelled(std::string_view id, long long token) {
  return state_->Write([&](Tx& tx) -> Result<void> {
    BOOST_OUTCOME_TRY(auto rowid, tx.Row(id));
    {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare(
                                    "UPDATE runs SET state = 'cancelled', finished_at = ?, "
                                    "lease_token = NULL, lease_expires_at = NULL WHERE rowid = ? "
                                    "AND lease_token = ? AND state = 'processing'"));
      s.Bind(tx.now).Bind(rowid).Bind(token);
      BOOST_OUTCOME_TRY(s.Run());
      if (sqlite3_changes(tx.db.db()) == 0) return LeaseError(tx.db, rowid, id);
    }
    return FailWaitingChildren(tx, RunKey{rowid, std::string(id)}, "was cancelled");
  });
}

Result<void> SqliteStore::Release(std::string_view id, long long token) {
  return state_->Write([&](Tx& tx) -> Result<void> {
    BOOST_OUTCOME_TRY(auto rowid, tx.Row(id));
    BOOST_OUTCOME_TRY(auto s, tx.db.Prepare(
                                  "UPDATE runs SET state = 'pending', attempts = max(attempts - "
                                  "1, 0), lease_token = NULL, lease_expires_at = NULL, "
                                  "worker = NULL, cancel_requested = 0 WHERE rowid = ? AND "
                                  "lease_token = ? AND state = 'processing'"));
    s.Bind(rowid).Bind(token);
    BOOST_OUTCOME_TRY(s.Run());
    if (sqlite3_changes(tx.db.db()) == 0) return LeaseError(tx.db, rowid, id);
    tx.wake = true;
    return Ok();
  });
}

Result<Run> SqliteStore::Cancel(std::string_view id) {
  return state_->Write([&](Tx& tx) -> Result<Run> {
    BOOST_OUTCOME_TRY(auto rowid, tx.Row(id));
    BOOST_OUTCOME_TRY(auto run, LoadRun(tx.db, rowid, id));
    switch (run.state) {
      case RunState::kWaiting:
      case RunState::kPending: {
        {
          BOOST_OUTCOME_TRY(auto u, tx.db.Prepare(
                                        "UPDATE runs SET state = 'cancelled', finished_at = ?, "
                                        "waiting_reason = NULL WHERE rowid = ?"));
          u.Bind(tx.now).Bind(rowid);
          BOOST_OUTCOME_TRY(u.Run());
        }
        BOOST_OUTCOME_TRY(FailWaitingChildren(tx, RunKey{rowid, run.id}, "was cancelled"));
        break;
      }
      case RunState::kProcessing: {
        BOOST_OUTCOME_TRY(auto u,
                          tx.db.Prepare("UPDATE runs SET cancel_requested = 1 WHERE rowid = ?"));
        u.Bind(rowid);
        BOOST_OUTCOME_TRY(u.Run());
        break;
      }
      case RunState::kCompleted:
      case RunState::kFailed:
      case RunState::kCancelled:
        return Error{Errc::kConflict,
                     fmt::format("run {} is already {}", id, ToString(run.state))};
    }
    return LoadRun(tx.db, rowid, id);
  });
}

Result<Run> SqliteStore::Retry(std::string_view id) {
  return state_->Write([&](Tx& tx) -> Result<Run> {
    BOOST_OUTCOME_TRY(auto rowid, tx.Row(id));
    BOOST_OUTCOME_TRY(auto run, LoadRun(tx.db, rowid, id));
    if (run.state != RunState::kFailed && run.state != RunState::kCancelled) {
      return Error{Errc::kConflict, fmt::format("run {} is {}; only failed or cancelled runs "
                                                "can be retried",
                                                id, ToString(run.state))};
    }
    // A run with parents goes back to waiting until they are all completed; a parent that
    // ended otherwise makes the retry pointless.
    size_t unfinished = 0;
    {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare("SELECT r.id, r.state FROM run_deps d JOIN runs r "
                                              "ON r.rowid = d.parent WHERE d.child = ?"));
      s.Bind(rowid);
      while (true) {
        BOOST_OUTCOME_TRY(auto row, s.Step());
        if (!row) break;
        auto parent_state = ParseRunState(s.Text(1)).value_or(RunState::kFailed);
        if (parent_state == RunState::kCompleted) continue;
        if (IsFinished(parent_state)) {
          return Error{Errc::kConflict, fmt::format("run {} cannot be retried: parent run {} is {}",
                                                    id, s.Text(0), ToString(parent_state))};
        }
        ++unfinished;
      }
    }
    RunState next = unfinished > 0 ? RunState::kWaiting : RunState::kPending;
    std::optional<std::string> reason;
    if (unfinished > 0) reason = WaitingReason(unfinished);
    BOOST_OUTCOME_TRY(
        auto u, tx.db.Prepare("UPDATE runs SET state = ?, waiting_reason = ?, attempts = 0, "
                              "error = NULL, result = NULL, finished_at = NULL, "
                              "started_at = NULL, not_before = NULL, cancel_requested = 0, "
                              "progress = NULL, worker = NULL, gpu = NULL, files = '[]', "
                              "lease_token = NULL, lease_expires_at = NULL WHERE rowid = ?"));
    u.Bind(ToString(next)).Bind(reason).Bind(rowid);
    BOOST_OUTCOME_TRY(u.Run());
    tx.wake = next == RunState::kPending;
    return LoadRun(tx.db, rowid, id);
  });
}

Result<int> SqliteStore::RequeueExpired() {
  {
    // Most calls find nothing: look on the read connection before taking the write lock.
    BOOST_OUTCOME_TRY(auto slot, state_->Reader());
    BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare(kExpiredSql));
    s.Bind(ToMillis(state_->clock.Now()));
    BOOST_OUTCOME_TRY(auto row, s.Step());
    if (!row) return 0;
  }
  return state_->Write([&](Tx& tx) -> Result<int> {
    std::vector<Held> held;
    {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare(kExpiredSql));
      s.Bind(tx.now);
      BOOST_OUTCOME_TRY(held, CollectHeld(s));
    }
    return RequeueHeld(tx, held, /*expired=*/true);
  });
}

Result<int> SqliteStore::RequeueHeldBy(std::string_view worker_prefix) {
  return state_->Write([&](Tx& tx) -> Result<int> {
    std::vector<Held> held;
    {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare(kHeldBySql));
      s.Bind(worker_prefix);
      BOOST_OUTCOME_TRY(held, CollectHeld(s));
    }
    return RequeueHeld(tx, held, /*expired=*/false);
  });
}

Result<std::vector<std::string>> SqliteStore::PurgeFinishedBefore(TimePoint cutoff) {
  return state_->Write([&](Tx& tx) -> Result<std::vector<std::string>> {
    std::vector<std::string> ids;
    std::vector<long long> rowids;
    {
      BOOST_OUTCOME_TRY(auto s, tx.db.Prepare(
                                    "DELETE FROM runs WHERE finished_at < ? AND state IN "
                                    "('completed', 'failed', 'cancelled') RETURNING id, rowid"));
      s.Bind(cutoff);
      while (true) {
        BOOST_OUTCOME_TRY(auto row, s.Step());
        if (!row) break;
        ids.push_back(s.String(0));
        rowids.push_back(s.Int(1));
      }
    }
    // What ON DELETE CASCADE did before schema 5: the purged runs' own edges and old ids. An
    // edge from a purged parent stays: its children read a missing parent as completed.
    for (long long rowid : rowids) {
      BOOST_OUTCOME_TRY(auto d, tx.db.Prepare("DELETE FROM run_deps WHERE child = ?"));
      d.Bind(rowid);
      BOOST_OUTCOME_TRY(d.Run());
    }
    for (const auto& id : ids) {
      if (tx.ids.RowidOf(id)) continue;
      BOOST_OUTCOME_TRY(auto d, tx.db.Prepare("DELETE FROM run_legacy_ids WHERE id = ?"));
      d.Bind(id);
      BOOST_OUTCOME_TRY(d.Run());
    }
    return ids;
  });
}

void SqliteStore::WaitForWork(Millis max_wait) {
  auto slot = state_->Reader();
  uint64_t seen = state_->work_generation.load();
  if (slot) {
    // Work that arrived since this thread last claimed or waited: no need to sleep.
    if (slot.value()->seen_work != seen) {
      slot.value()->seen_work = seen;
      return;
    }
  }
  {
    std::unique_lock lock(state_->work_mu);
    state_->work_cv.wait_for(lock, max_wait,
                             [&] { return state_->work_generation.load() != seen; });
  }
  if (slot) slot.value()->seen_work = state_->work_generation.load();
}

std::string SqliteStore::Describe() const { return "sqlite://" + state_->file.string(); }

Result<void> SqliteStore::Ping() {
  BOOST_OUTCOME_TRY(auto slot, state_->Reader());
  BOOST_OUTCOME_TRY(auto s, slot->conn->Prepare("SELECT 1"));
  BOOST_OUTCOME_TRY(auto row, s.Step());
  if (!row) return Error{Errc::kInternal, "sqlite SELECT 1 returned nothing"};
  return Ok();
}

}  // namespace gpuq::store
