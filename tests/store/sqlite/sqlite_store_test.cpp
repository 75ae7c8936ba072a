// The StoreContract suite on SQLite, plus what only SQLite has (URLs, schema, the file).
#include "store/sqlite/sqlite_store.hpp"

#include <sqlite3.h>

#include <fstream>
#include <future>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

TEST(SqliteStore, UpgradesAVersionOneFileInPlace) {
  gpuq::testing::TempDir dir;
  ManualClock clock;
  std::string id;
  {
    auto store = SqliteStore::Open(dir / "q.db", clock);
    ASSERT_TRUE(store);
    id = store.value()->Submit(NewRun{.type = "echo"}).value().id;
  }
  ASSERT_EQ(ExecOnDisk(dir / "q.db",
                       "DROP TABLE leases; DROP TABLE agents; DROP TABLE commands; "
                       "DROP TABLE command_replies; DROP INDEX runs_pending_age; "
                       "PRAGMA user_version = 1"),
            "");

  auto store = SqliteStore::Open(dir / "q.db", clock);

  ASSERT_TRUE(store) << store.error().message;
  EXPECT_TRUE(store.value()->Get(id));
  EXPECT_TRUE(store.value()->AcquireLease("lock:host-a:0", "agent-a", Millis(1000)));
  EXPECT_EQ(store.value()->PendingRuns({"echo"}, 10).value().size(), 1u);
}

// The ordered indexes of older files: version 2 had the list indexes DESC, both 2 and 3 had
// the id in every one. The upgrade rebuilds them; lists and claims keep their order.
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
    "WHERE parent_run_id IS NOT NULL; PRAGMA user_version = 3";
constexpr const char* kVersion2ListIndexes =
    "CREATE INDEX runs_newest ON runs (created_at DESC, id DESC); "
    "CREATE INDEX runs_state_newest ON runs (state, created_at DESC, id DESC); "
    "CREATE INDEX runs_type_newest ON runs (type, created_at DESC, id DESC); "
    "CREATE INDEX runs_parent_newest ON runs (parent_run_id, created_at DESC, id DESC) "
    "WHERE parent_run_id IS NOT NULL; PRAGMA user_version = 2";

// One integer through a connection of its own.
int QueryInt(const std::filesystem::path& file, const char* sql) {
  sqlite3* db = nullptr;
  int out = -1;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_open(file.c_str(), &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    out = sqlite3_column_int(stmt, 0);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

TEST(SqliteStore, UpgradesTheOrderedIndexesOfVersionTwoAndThreeFiles) {
  for (const char* list_indexes : {kVersion2ListIndexes, kVersion3ListIndexes}) {
    SCOPED_TRACE(list_indexes);
    gpuq::testing::TempDir dir;
    ManualClock clock;
    std::vector<std::string> ids;
    {
      auto store = SqliteStore::Open(dir / "q.db", clock);
      ASSERT_TRUE(store);
      for (int i = 0; i < 4; ++i) {
        ids.push_back(store.value()->Submit(NewRun{.type = "echo"}).value().id);
        if (i % 2 == 1) clock.Advance(Millis(5));
      }
    }
    ASSERT_EQ(ExecOnDisk(dir / "q.db", (std::string(kVersion3Indexes) + list_indexes).c_str()),
              "");

    auto store = SqliteStore::Open(dir / "q.db", clock);

    ASSERT_TRUE(store) << store.error().message;
    auto page = store.value()->List(RunFilter{.state = RunState::kPending});
    ASSERT_TRUE(page);
    std::vector<std::string> listed;
    for (const auto& run : page.value().runs) listed.push_back(run.id);
    EXPECT_THAT(listed, ::testing::ElementsAre(ids[3], ids[2], ids[1], ids[0]));
    auto leases = store.value()->Claim(ClaimRequest{"w", {"echo"}, Millis(10'000), 4});
    ASSERT_TRUE(leases);
    std::vector<std::string> claimed;
    for (const auto& lease : leases.value()) claimed.push_back(lease.run.id);
    EXPECT_EQ(claimed, ids);
    EXPECT_EQ(QueryInt(dir / "q.db",
                       "SELECT count(*) FROM sqlite_schema WHERE name IN ('runs_claim', "
                       "'runs_pending_age', 'runs_newest', 'runs_state_newest', "
                       "'runs_type_newest', 'runs_parent_newest') AND sql NOT LIKE '%, id%' "
                       "AND sql NOT LIKE '%created_at DESC%'"),
              6)
        << "runs_claim, runs_pending_age and the four list indexes, without the id";
    EXPECT_EQ(QueryInt(dir / "q.db", "PRAGMA user_version"), SqliteStore::kSchemaVersion);
  }
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

TEST_F(SqliteStamps, HoldFromTheSecondReadUntilTheRunChanges) {
  Store& s = Open();
  std::string a = SubmitOk(s);
  std::string b = SubmitOk(s, "other");

  RunStamp first;
  ASSERT_TRUE(s.GetStamped(a, first));
  EXPECT_FALSE(s.RunUnchanged(first)) << "the first read does not know the rowid yet";
  RunStamp stamp = StampOf(s, a);
  EXPECT_TRUE(s.RunUnchanged(stamp));

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
