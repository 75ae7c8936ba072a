// The StoreContract suite on SQLite, plus what only SQLite has (URLs, schema, the file).
#include "store/sqlite/sqlite_store.hpp"

#include <sqlite3.h>

#include <fstream>

#include <gtest/gtest.h>

#include "store/store_contract.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::store {
namespace {

using testing::StoreBackend;
using testing::StoreContract;

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
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "q.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  auto store = SqliteStore::Open(dir / "q.db", clock);

  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Errc::kInternal);
}

TEST(SqliteStore, FailsUnavailableWhenTheDirectoryCannotBeCreated) {
  gpuq::testing::TempDir dir;
  ManualClock clock;
  std::ofstream(dir / "file") << "x";

  auto store = SqliteStore::Open(dir / "file/sub/q.db", clock);

  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Errc::kUnavailable);
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

}  // namespace
}  // namespace gpuq::store
