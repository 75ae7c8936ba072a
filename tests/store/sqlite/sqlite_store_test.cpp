// The StoreContract suite on SQLite, plus what only SQLite has (URLs, schema, the file).
#include "store/sqlite/sqlite_store.hpp"

#include <sqlite3.h>

#include <fstream>
#include <future>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/ids.hpp"
#include "store/sqlite/count_on_disk.hpp"
#include "store/sqlite/run_order.hpp"
#include "store/store_contract.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::store {
namespace {

using testing::StoreBackend;
using testing::StoreContract;
using testing::CountOnDisk;
using testing::ExecOnDisk;
using testing::QueryInt;
using testing::QueryText;

StoreBackend SqliteBackend() {
  return StoreBackend{
      .name = "sqlite",
      .open = [](const std::filesystem::path& dir,
                 Clock& clock) -> Result<std::unique_ptr<Store>> {
        auto store = SqliteStore::Open(dir / "store.db", clock);
        if (!store) return store.error();
        return std::unique_ptr<Store>(std::move(store).value());
      },
      .url = [](const std::filesystem::path& dir) { return "sqlite://" + (dir / "store.db").string(); },
  };
}

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreContract, ::testing::Values(SqliteBackend()),
                         [](const auto& info) { return info.param.name; });

TEST(SqliteStore, CreatesParentDirectoriesAndDescribesItselfByAbsolutePath) {
  gpuq::testing::TempDir dir;
  ManualClock clock;

  auto store = SqliteStore::Open(dir / "a/b/c/queue.db", clock);

  ASSERT_TRUE(store) << store.error().message;
  EXPECT_TRUE(std::filesystem::exists(dir / "a/b/c/queue.db"));
  EXPECT_EQ(store.value()->Describe(), "sqlite://" + (dir / "a/b/c/queue.db").string());
  EXPECT_TRUE(store.value()->Ping());
}

TEST(SqliteStore, RefusesAFileWithANewerSchema) {
  gpuq::testing::TempDir dir;
  ManualClock clock;
  {
    auto store = SqliteStore::Open(dir / "q.db", clock);
    ASSERT_TRUE(store);
  }
  ASSERT_EQ(ExecOnDisk(dir / "q.db", "PRAGMA user_version = 99"), "");

  auto store = SqliteStore::Open(dir / "q.db", clock);

  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Errc::kInternal);
}

// A version-4 file as that gpuq wrote it (its runs and queue part; the GPU-worker tables,
// which version 5 left as they were, are added by the upgrade of a version-1 file anyway).
constexpr const char* kVersion4Schema = R"sql(
CREATE TABLE runs (
  id TEXT PRIMARY KEY NOT NULL, type TEXT NOT NULL, priority INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN
      ('waiting', 'pending', 'processing', 'completed', 'failed', 'cancelled')),
  payload TEXT NOT NULL, result TEXT, error TEXT, parent_run_id TEXT,
  depends_on TEXT NOT NULL DEFAULT '[]', attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL, timeout_s INTEGER NOT NULL, progress TEXT, waiting_reason TEXT,
  worker TEXT, gpu TEXT, idempotency_key TEXT, created_at INTEGER NOT NULL, started_at INTEGER,
  finished_at INTEGER, not_before INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0,
  files TEXT NOT NULL DEFAULT '[]', lease_token INTEGER, lease_expires_at INTEGER);
CREATE UNIQUE INDEX runs_idempotency ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_lease ON runs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE run_deps (
  parent_id TEXT NOT NULL,
  child_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  PRIMARY KEY (parent_id, child_id)) WITHOUT ROWID;
CREATE INDEX run_deps_child ON run_deps (child_id);
CREATE TABLE counters (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('lease_token', 7);
CREATE INDEX runs_claim ON runs (type, priority DESC, created_at) WHERE state = 'pending';
CREATE INDEX runs_pending_age ON runs (type, created_at) WHERE state = 'pending';
CREATE INDEX runs_newest ON runs (created_at);
CREATE INDEX runs_state_newest ON runs (state, created_at);
CREATE INDEX runs_type_newest ON runs (type, created_at);
CREATE INDEX runs_parent_newest ON runs (parent_run_id, created_at)
  WHERE parent_run_id IS NOT NULL;
)sql";

// The ordered indexes of older files: version 2 had the list indexes DESC, both 2 and 3 had
// the id in every one.
constexpr const char* kVersion3Indexes =
    "DROP INDEX runs_claim; DROP INDEX runs_pending_age; DROP INDEX runs_newest; "
    "DROP INDEX runs_state_newest; DROP INDEX runs_type_newest; DROP INDEX runs_parent_newest; "
    "CREATE INDEX runs_claim ON runs (type, priority DESC, created_at, id, not_before) "
    "WHERE state = 'pending'; "
    "CREATE INDEX runs_pending_age ON runs (type, created_at, id, not_before) "
    "WHERE state = 'pending'; ";
constexpr const char* kVersion3ListIndexes =
    "CREATE INDEX runs_newest ON runs (created_at, id); "
    "CREATE INDEX runs_state_newest ON runs (state, created_at, id); "
    "CREATE INDEX runs_type_newest ON runs (type, created_at, id); "
    "CREATE INDEX runs_parent_newest ON runs (parent_run_id, created_at, id) "
    "WHERE parent_run_id IS NOT NULL; ";
constexpr const char* kVersion2ListIndexes =
    "CREATE INDEX runs_newest ON runs (created_at DESC, id DESC); "
    "CREATE INDEX runs_state_newest ON runs (state, created_at DESC, id DESC); "
    "CREATE INDEX runs_type_newest ON runs (type, created_at DESC, id DESC); "
    "CREATE INDEX runs_parent_newest ON runs (parent_run_id, created_at DESC, id DESC) "
    "WHERE parent_run_id IS NOT NULL; ";

// Runs of an older file, with the random ids it gave them: a finished run, a pending one, a
// child waiting on it, and a later pending one with an idempotency key.
struct OldRuns {
  std::string done = NewUuid();
  std::string parent = NewUuid();
  std::string child = NewUuid();
  std::string keyed = NewUuid();

  std::string Sql() const {
    return fmt::format(
        "INSERT INTO runs (id, type, priority, state, payload, max_attempts, timeout_s, "
        "created_at, finished_at, result) VALUES ('{0}', 'echo', 50, 'completed', '{{}}', 3, "
        "60, 400, 500, '{{\"ok\":true}}'); "
        "INSERT INTO runs (id, type, priority, state, payload, max_attempts, timeout_s, "
        "created_at) VALUES ('{1}', 'echo', 50, 'pending', '{{\"n\":1}}', 3, 60, 1000); "
        "INSERT INTO runs (id, type, priority, state, payload, max_attempts, timeout_s, "
        "created_at, depends_on, waiting_reason) VALUES ('{2}', 'other', 50, 'waiting', '{{}}', "
        "3, 60, 1001, '[\"{1}\"]', 'waiting for 1 parent runs'); "
        "INSERT INTO run_deps (parent_id, child_id) VALUES ('{1}', '{2}'); "
        "INSERT INTO runs (id, type, priority, state, payload, max_attempts, timeout_s, "
        "created_at, idempotency_key) VALUES ('{3}', 'echo', 50, 'pending', '{{}}', 3, 60, 1002, "
        "'key-1'); ",
        done, parent, child, keyed);
  }
};

std::vector<std::string> Ids(const std::vector<Run>& runs) {
  std::vector<std::string> ids;
  for (const auto& run : runs) ids.push_back(run.id);
  return ids;
}

TEST(SqliteStore, UpgradesAVersionOneFileInPlace) {
  gpuq::testing::TempDir dir;
  ManualClock clock;
  OldRuns old;
  ASSERT_EQ(ExecOnDisk(dir / "q.db", (std::string(kVersion4Schema) + old.Sql() +
                                      "PRAGMA user_version = 1")
                                         .c_str()),
            "");

  auto store = SqliteStore::Open(dir / "q.db", clock);

  ASSERT_TRUE(store) << store.error().message;
  EXPECT_TRUE(store.value()->Get(old.parent));
  EXPECT_TRUE(store.value()->AcquireLease("lock:host-a:0", "agent-a", Millis(1000)));
  EXPECT_EQ(store.value()->PendingRuns({"echo"}, 10).value().size(), 2u);
}

// Versions 2 to 4 keyed runs by their random id; version 5 has no index on the id. The
// upgrade copies the runs: every old id still names its run, depends_on edges and
// idempotency keys hold, lists and claims keep their order, and new runs get ids that decrypt
// to rowids after the old ones.
TEST(SqliteStore, UpgradesVersionTwoToFourFilesKeepingEveryRunAndId) {
  for (int version : {2, 3, 4}) {
    SCOPED_TRACE(version);
    gpuq::testing::TempDir dir;
    ManualClock clock(FromMillis(2000));
    OldRuns old;
    std::string sql = std::string(kVersion4Schema) + old.Sql();
    if (version < 4) {
      sql += kVersion3Indexes;
      sql += version == 3 ? kVersion3ListIndexes : kVersion2ListIndexes;
    }
    sql += fmt::format("PRAGMA user_version = {}", version);
    ASSERT_EQ(ExecOnDisk(dir / "q.db", sql.c_str()), "");

    auto opened = SqliteStore::Open(dir / "q.db", clock);

    ASSERT_TRUE(opened) << opened.error().message;
    SqliteStore& store = *opened.value();
    EXPECT_EQ(QueryInt(dir / "q.db", "PRAGMA user_version"), SqliteStore::kSchemaVersion);
    EXPECT_EQ(QueryInt(dir / "q.db", "SELECT count(*) FROM pragma_index_list('runs') "
                                     "WHERE origin = 'pk' OR name LIKE 'sqlite_autoindex%'"),
              0)
        << "no index on the id";
    auto done = store.Get(old.done);
    ASSERT_TRUE(done) << done.error().message;
    EXPECT_EQ(done.value().result, Json({{"ok", true}}));
    EXPECT_EQ(store.Get(old.parent).value().payload, Json({{"n", 1}}));
    auto page = store.List(RunFilter{});
    ASSERT_TRUE(page);
    EXPECT_THAT(Ids(page.value().runs),
                ::testing::ElementsAre(old.keyed, old.child, old.parent, old.done));
    auto again = store.Submit(NewRun{.type = "echo", .idempotency_key = "key-1"});
    ASSERT_TRUE(again);
    EXPECT_EQ(again.value().id, old.keyed);
    EXPECT_FALSE(again.value().created);

    auto fresh = store.Submit(NewRun{.type = "echo"});
    ASSERT_TRUE(fresh);
    EXPECT_TRUE(store.Get(fresh.value().id));
    auto leases = store.Claim(ClaimRequest{"w", {"echo"}, Millis(10'000), 3});
    ASSERT_TRUE(leases);
    std::vector<std::string> claimed;
    for (const auto& lease : leases.value()) claimed.push_back(lease.run.id);
    EXPECT_THAT(claimed, ::testing::ElementsAre(old.parent, old.keyed, fresh.value().id));
    EXPECT_GT(leases.value()[0].token, 7) << "the fencing counter carries on";
    ASSERT_TRUE(store.Complete(old.parent, leases.value()[0].token, Json::object(), {}));
    EXPECT_EQ(store.Get(old.child).value().state, RunState::kPending) << "the edge survived";

    auto purged = store.PurgeFinishedBefore(FromMillis(1000));
    ASSERT_TRUE(purged);
    EXPECT_THAT(purged.value(), ::testing::ElementsAre(old.done));
    EXPECT_EQ(store.Get(old.done).error().code, Errc::kNotFound);
    EXPECT_EQ(QueryInt(dir / "q.db", "SELECT count(*) FROM run_legacy_ids"), 3);
    EXPECT_EQ(QueryInt(dir / "q.db", "SELECT count(*) FROM sqlite_schema WHERE name IN "
                                     "('runs_claim', 'runs_pending_age', 'runs_newest', "
                                     "'runs_state_newest', 'runs_type_newest', "
                                     "'runs_parent_newest') AND sql NOT LIKE '%, id%' "
                                     "AND sql NOT LIKE '%created_at DESC%'"),
              6)
        << "runs_claim, runs_pending_age and the four list indexes, without the id";
    EXPECT_EQ(QueryText(dir / "q.db", "PRAGMA integrity_check"), "ok");
  }
}

// The file's key is what makes its ids: it survives reopening, and a second file has its own.
TEST(SqliteStore, IdsDecryptToRowidsUnderTheFilesOwnKey) {
  gpuq::testing::TempDir dir;
  ManualClock clock;
  std::vector<std::string> ids;
  {
    auto store = SqliteStore::Open(dir / "a.db", clock);
    ASSERT_TRUE(store);
    for (int i = 0; i < 3; ++i) ids.push_back(store.value()->Submit(NewRun{.type = "echo"}).value().id);
  }
  auto store = SqliteStore::Open(dir / "a.db", clock);
  ASSERT_TRUE(store);
  for (const auto& id : ids) EXPECT_TRUE(store.value()->Get(id)) << id;
  auto other = SqliteStore::Open(dir / "b.db", clock);
  ASSERT_TRUE(other);
  auto theirs = other.value()->Submit(NewRun{.type = "echo"});
  ASSERT_TRUE(theirs);
  EXPECT_NE(theirs.value().id, ids[0]) << "same rowid, another key";
  EXPECT_EQ(store.value()->Get(theirs.value().id).error().code, Errc::kNotFound);
  EXPECT_EQ(QueryInt(dir / "a.db", "SELECT count(*) FROM runs WHERE rowid IN (1, 2, 3)"), 3);
}

// Two processes submitting to one file at once: the rowid counter is read and bumped inside
// each write transaction, so every run gets its own rowid and so its own id.
TEST(SqliteStore, TwoProcessesSubmittingAtOnceGetDistinctIds) {
  gpuq::testing::TempDir dir;
  SystemClock clock;
  auto store = SqliteStore::Open(dir / "q.db", clock);
  ASSERT_TRUE(store) << store.error().message;
  constexpr int kTheirs = 3000;
  gpuq::testing::ChildProcess other({GPUQ_STORE_SUBMIT_LOAD, "sqlite://" + (dir / "q.db").string(),
                                     "2", std::to_string(kTheirs), "async", "16"},
                                    dir / "load.out");
  std::vector<std::string> mine;
  // For as long as the other process runs (and at least 500 runs).
  while (other.Running() || mine.size() < 500) {
    auto submitted = store.value()->Submit(NewRun{.type = "mine"});
    ASSERT_TRUE(submitted) << submitted.error().message;
    mine.push_back(submitted.value().id);
  }
  ASSERT_EQ(other.Wait(), 0) << other.Output();

  const int total = kTheirs + static_cast<int>(mine.size());
  EXPECT_EQ(QueryInt(dir / "q.db", "SELECT count(*) FROM runs"), total);
  EXPECT_EQ(QueryInt(dir / "q.db", "SELECT count(DISTINCT id) FROM runs"), total);
  EXPECT_EQ(QueryInt(dir / "q.db", "SELECT max(rowid) FROM runs"), total);
  EXPECT_EQ(QueryInt(dir / "q.db", "SELECT value FROM counters WHERE name = 'last_run'"), total);
  for (const auto& id : mine) {
    auto run = store.value()->Get(id);
    ASSERT_TRUE(run) << id << ": " << run.error().message;
    EXPECT_EQ(run.value().type, "mine");
  }
  auto page = store.value()->List(RunFilter{.type = "echo", .limit = 1000});
  ASSERT_TRUE(page);
  for (const auto& run : page.value().runs) EXPECT_TRUE(store.value()->Get(run.id)) << run.id;
}

// Every ordered read walks an index in order: no sort of the matching runs, no table scan.
TEST(SqliteStore, OrderedQueriesReadAnIndexInOrder) {
  gpuq::testing::TempDir dir;
  ManualClock clock;
  ASSERT_TRUE(SqliteStore::Open(dir / "q.db", clock));
  std::vector<std::string> queries = {sqlite::kClaimableSql, sqlite::kPendingBestSql,
                                      sqlite::kPendingOldestSql};
  for (int mask = 0; mask < 16; ++mask) {
    queries.push_back(sqlite::ListSql("id", mask & 1, mask & 2, mask & 4, mask & 8));
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "q.db").c_str(), &db), SQLITE_OK);
  for (const auto& sql : queries) {
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &stmt, nullptr),
              SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db);
    std::string plan;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      plan += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
      plan += "; ";
    }
    sqlite3_finalize(stmt);
    EXPECT_THAT(plan, ::testing::HasSubstr("USING INDEX runs_")) << sql;
    EXPECT_THAT(plan, ::testing::Not(::testing::HasSubstr("TEMP B-TREE"))) << sql;
  }
  sqlite3_close(db);
}

TEST(SqliteStore, FailsUnavailableWhenTheDirectoryCannotBeCreated) {
  gpuq::testing::TempDir dir;
  ManualClock clock;
  std::ofstream(dir / "file") << "x";

  auto store = SqliteStore::Open(dir / "file/sub/q.db", clock);

  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Errc::kUnavailable);
}

TEST(SqliteStore, SubmitAsyncCallsBackOnlyOnceTheRunIsCommitted) {
  gpuq::testing::TempDir dir;
  SystemClock clock;
  auto store = SqliteStore::Open(dir / "q.db", clock);
  ASSERT_TRUE(store) << store.error().message;
  constexpr int kRuns = 200;
  std::vector<std::promise<std::pair<std::string, int>>> seen(kRuns);

  for (int i = 0; i < kRuns; ++i) {
    store.value()->SubmitAsync(NewRun{.type = "echo", .payload = {{"i", i}}},
                               [&, i](Result<Submitted> submitted) {
                                 if (!submitted) {
                                   seen[i].set_value({submitted.error().message, -2});
                                   return;
                                 }
                                 // Still inside the callback: the commit must be visible to
                                 // a connection that is not the store's.
                                 seen[i].set_value({submitted.value().id,
                                                    CountOnDisk(dir / "q.db", submitted.value().id)});
                               });
  }

  for (int i = 0; i < kRuns; ++i) {
    auto [id, on_disk] = seen[i].get_future().get();
    EXPECT_EQ(on_disk, 1) << id;
    auto run = store.value()->Get(id);
    ASSERT_TRUE(run) << run.error().message;
    EXPECT_EQ(run.value().payload, Json({{"i", i}}));
    EXPECT_EQ(run.value().state, RunState::kPending);
  }
}

TEST(SqliteStore, SubmitAsyncRefusesAnInvalidRunAndKeepsIdempotency) {
  gpuq::testing::TempDir dir;
  SystemClock clock;
  auto store = SqliteStore::Open(dir / "q.db", clock);
  ASSERT_TRUE(store) << store.error().message;
  std::promise<Result<Submitted>> bad;
  store.value()->SubmitAsync(NewRun{.type = ""}, [&](Result<Submitted> r) { bad.set_value(r); });
  auto refused = bad.get_future().get();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::kInvalidArgument);

  std::promise<Result<Submitted>> first;
  std::promise<Result<Submitted>> second;
  store.value()->SubmitAsync(NewRun{.type = "echo", .idempotency_key = "k"},
                             [&](Result<Submitted> r) { first.set_value(r); });
  store.value()->SubmitAsync(NewRun{.type = "echo", .idempotency_key = "k"},
                             [&](Result<Submitted> r) { second.set_value(r); });
  auto a = first.get_future().get();
  auto b = second.get_future().get();
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(a.value().created);
  EXPECT_FALSE(b.value().created);
  EXPECT_EQ(a.value().id, b.value().id);
}

TEST(SqliteStore, CheckpointsInTheBackgroundSoTheWalStaysBounded) {
  gpuq::testing::TempDir dir;
  SystemClock clock;
  auto store = SqliteStore::Open(dir / "q.db", clock);
  ASSERT_TRUE(store) << store.error().message;
  // ~40 MB of rows: without checkpoints the WAL would hold all of it.
  std::string blob(4000, 'x');
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2500; ++i) {
        ASSERT_TRUE(store.value()->Submit(NewRun{.type = "echo", .payload = {{"blob", blob}}}));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  // The checkpoint thread catches up; the next commits restart the WAL and trim the file.
  auto wal = dir / "q.db-wal";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    ASSERT_TRUE(store.value()->Submit(NewRun{.type = "echo"}));
    if (std::filesystem::file_size(wal) <= (16u << 20)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_LE(std::filesystem::file_size(wal), 16u << 20);
  EXPECT_GT(std::filesystem::file_size(dir / "q.db"), 30u << 20);  // the rows reached the file
}

TEST(OpenStore, AcceptsSqliteUrlsAndBarePaths) {
  gpuq::testing::TempDir dir;
  ManualClock clock;

  auto absolute = OpenStore("sqlite://" + (dir / "abs.db").string(), clock);
  auto bare = OpenStore((dir / "bare.db").string(), clock);

  ASSERT_TRUE(absolute) << absolute.error().message;
  ASSERT_TRUE(bare) << bare.error().message;
  EXPECT_EQ(absolute.value()->Describe(), "sqlite://" + (dir / "abs.db").string());
  EXPECT_EQ(bare.value()->Describe(), "sqlite://" + (dir / "bare.db").string());
}

TEST(OpenStore, ResolvesRelativeSqliteUrlsAgainstTheWorkingDirectory) {
  gpuq::testing::TempDir dir;
  ManualClock clock;
  auto previous = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());

  auto store = OpenStore("sqlite://data/rel.db", clock);

  std::filesystem::current_path(previous);
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ(store.value()->Describe(), "sqlite://" + (dir / "data/rel.db").string());
}

TEST(OpenStore, RejectsRedisForNowAndUnknownSchemes) {
  ManualClock clock;

  auto redis = OpenStore("redis://127.0.0.1:6379/0", clock);
  auto other = OpenStore("postgres://db/x", clock);
  auto empty = OpenStore("", clock);

  ASSERT_FALSE(redis);
  EXPECT_EQ(redis.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(redis.error().message, "redis store not built yet");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, Errc::kInvalidArgument);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, Errc::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Run stamps (the API's run-document cache): valid from the second read, untouched by writes to
// other runs, broken by writes from another process and by purges; off when the file is unusable.

// The stamp tests share one SQLite file in a temp dir; each test opens it when it is ready.
class SqliteStamps : public ::testing::Test {
 protected:
  Store& Open() {
    auto store = SqliteStore::Open(dir_ / "q.db", clock_);
    EXPECT_TRUE(store) << store.error().message;
    store_ = std::move(store).value();
    return *store_;
  }
  std::string SubmitOk(Store& s, const std::string& type = "echo") {
    auto submitted = s.Submit(NewRun{.type = type});
    EXPECT_TRUE(submitted) << submitted.error().message;
    return submitted ? submitted.value().id : std::string();
  }

  gpuq::testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<SqliteStore> store_;
};

RunStamp StampOf(Store& store, const std::string& id) {
  RunStamp stamp;
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(store.GetStamped(id, stamp));
  return stamp;
}

TEST_F(SqliteStamps, HoldFromTheFirstReadUntilTheRunChanges) {
  Store& s = Open();
  std::string a = SubmitOk(s);
  std::string b = SubmitOk(s, "other");

  RunStamp first;
  ASSERT_TRUE(s.GetStamped(a, first));
  EXPECT_TRUE(s.RunUnchanged(first)) << "the id gives the rowid: the first read is stamped";
  RunStamp stamp = StampOf(s, a);
  EXPECT_TRUE(s.RunUnchanged(stamp));
  RunStamp unknown;
  EXPECT_FALSE(s.GetStamped("00000000-0000-4000-8000-000000000000", unknown));
  EXPECT_FALSE(s.RunUnchanged(unknown));

  // Writes to another run, and writes that touch no run, leave the stamp alone.
  auto leases = s.Claim(ClaimRequest{"host/cpu0", {"other"}, Millis(10'000), 1});
  ASSERT_TRUE(leases);
  ASSERT_EQ(leases.value().size(), 1u);
  ASSERT_TRUE(s.Complete(b, leases.value()[0].token, Json::object(), {}));
  ASSERT_TRUE(s.Submit(NewRun{.type = "other"}));
  EXPECT_TRUE(s.RunUnchanged(stamp));

  ASSERT_TRUE(s.Cancel(a));
  EXPECT_FALSE(s.RunUnchanged(stamp));
  EXPECT_TRUE(s.RunUnchanged(StampOf(s, a)));
}

TEST_F(SqliteStamps, AWriteByAnotherProcessBreaksTheStamp) {
  Store& s = Open();
  std::string id = SubmitOk(s);
  RunStamp stamp = StampOf(s, id);
  ASSERT_TRUE(s.RunUnchanged(stamp));

  // The claimer process claims and completes every echo run, then exits.
  gpuq::testing::ChildProcess child(
      {GPUQ_STORE_CLAIMER, "sqlite://" + (dir_ / "q.db").string(), "echo", "4",
       (dir_ / "ready").string(), (dir_ / "ids").string()},
      dir_ / "out");
  ASSERT_EQ(child.Wait(), 0) << child.Output();

  EXPECT_FALSE(s.RunUnchanged(stamp));
  auto run = s.GetStamped(id, stamp);
  ASSERT_TRUE(run);
  EXPECT_EQ(run.value().state, RunState::kCompleted);
  EXPECT_TRUE(s.RunUnchanged(stamp));
}

TEST_F(SqliteStamps, APurgedRunBreaksItsStamp) {
  Store& s = Open();
  std::string id = SubmitOk(s);
  ASSERT_TRUE(s.Cancel(id));
  RunStamp stamp = StampOf(s, id);
  ASSERT_TRUE(s.RunUnchanged(stamp));

  clock_.Advance(std::chrono::hours(48));
  auto purged = s.PurgeFinishedBefore(clock_.Now() - std::chrono::hours(24));
  ASSERT_TRUE(purged);
  ASSERT_EQ(purged.value().size(), 1u);

  EXPECT_FALSE(s.RunUnchanged(stamp));
  auto gone = s.GetStamped(id, stamp);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::kNotFound);
}

TEST_F(SqliteStamps, AStampFileOfAnotherLayoutTurnsStampsOffNotTheStore) {
  std::ofstream(dir_ / "q.db-stamps") << "not a stamp file, but long enough to have a header";
  Store& s = Open();
  std::string id = SubmitOk(s);

  RunStamp stamp = StampOf(s, id);
  EXPECT_FALSE(s.RunUnchanged(stamp));
  auto run = s.GetStamped(id, stamp);
  ASSERT_TRUE(run);
  EXPECT_EQ(run.value().id, id);
}

}  // namespace
}  // namespace gpuq::store
