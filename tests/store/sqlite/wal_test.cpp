// The writer's WAL: one write per commit (wal_write_batching), and a WAL that starts over
// instead of growing without end (wal_checkpointer).
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "store/sqlite/count_on_disk.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/sqlite/wal_checkpointer.hpp"
#include "store/sqlite/wal_write_batching.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::store {
namespace {

using sqlite::WalCheckpointer;
using sqlite::WalLimits;
using testing::CountOnDisk;

int64_t FileSize(const std::filesystem::path& file) {
  std::error_code ec;
  auto size = std::filesystem::file_size(file, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

TEST(WalWriteBatching, EachCommitReachesTheFileInOneWriteAndIsThereWhenSubmitReturns) {
  gpuq::testing::TempDir dir;
  SystemClock clock;
  auto store = SqliteStore::Open(dir / "q.db", clock);
  ASSERT_TRUE(store) << store.error().message;
  constexpr int kCommits = 40;
  auto before = sqlite::WalWriteBatchingCounts();

  for (int i = 0; i < kCommits; ++i) {
    auto submitted = store.value()->Submit(NewRun{.type = "echo", .payload = {{"i", i}}});
    ASSERT_TRUE(submitted) << submitted.error().message;
    // Already in the file for a connection that does not share this VFS.
    ASSERT_EQ(CountOnDisk(dir / "q.db", submitted.value().id), 1) << "commit " << i;
  }

  auto after = sqlite::WalWriteBatchingCounts();
  // A submit writes several frames (run row, indexes), each a header and a page.
  EXPECT_GE(after.requested - before.requested, 4u * kCommits);
  // One write per commit, plus a few for the WAL header and the reads in between.
  EXPECT_LE(after.issued - before.issued, kCommits + 8u);
}

TEST(WalCheckpointer, AnIdleWriterStartsTheWalOverAndCutsTheFileBack) {
  gpuq::testing::TempDir dir;
  SystemClock clock;
  auto store = SqliteStore::Open(dir / "q.db", clock);
  ASSERT_TRUE(store) << store.error().message;
  const auto wal = dir / "q.db-wal";
  // More than the WAL an idle writer copies (4 MiB): 1,200 runs with 4 KB payloads.
  std::vector<std::string> ids;
  const std::string blob(4000, 'x');
  for (int i = 0; i < 1200; ++i) {
    auto submitted = store.value()->Submit(NewRun{.type = "echo", .payload = {{"blob", blob}}});
    ASSERT_TRUE(submitted) << submitted.error().message;
    ids.push_back(submitted.value().id);
  }
  ASSERT_GT(FileSize(wal), 4 << 20);
  // A reader in the middle of a read transaction keeps the WAL from starting over: the idle
  // writer's attempts fail (as they do beside a checkpoint round) and it tries again later.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2((dir / "q.db").c_str(), &reader, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM runs", nullptr, nullptr, nullptr),
            SQLITE_OK);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // several idle attempts
  EXPECT_GT(FileSize(wal), 0);
  ASSERT_EQ(sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(reader);

  // Nothing more is written: the idle writer copies what is left and truncates the file.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (FileSize(wal) > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(FileSize(wal), 0);
  EXPECT_EQ(CountOnDisk(dir / "q.db", ids.front()), 1);
  EXPECT_EQ(CountOnDisk(dir / "q.db", ids.back()), 1);
  // And the next write starts the WAL from its beginning.
  ASSERT_TRUE(store.value()->Submit(NewRun{.type = "echo"}));
  EXPECT_LT(FileSize(wal), 1 << 20);
}

// A writer that never pauses, on a bare connection as the store's writer thread drives it:
// the WAL stays near the hard limit instead of growing with everything written.
TEST(WalCheckpointer, KeepsTheWalBoundedUnderWritesThatNeverPause) {
  gpuq::testing::TempDir dir;
  const auto file = dir / "w.db";
  sqlite3* writer = nullptr;
  sqlite3* checkpoint = nullptr;
  ASSERT_EQ(sqlite3_open((file).c_str(), &writer), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(writer,
                         "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; "
                         "PRAGMA wal_autocheckpoint = 0; "
                         "CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_open((file).c_str(), &checkpoint), SQLITE_OK);
  constexpr int64_t kHardLimit = 2 << 20;
  {
    WalCheckpointer checkpointer(checkpoint, 1024, 1000,
                                 WalLimits{.round_bytes = 256 << 10,
                                           .hard_limit_bytes = kHardLimit,
                                           .idle_delay = std::chrono::hours(1)});
    sqlite3_wal_hook(
        writer,
        [](void* self, sqlite3*, const char*, int frames) {
          static_cast<WalCheckpointer*>(self)->AfterCommit(frames);
          return SQLITE_OK;
        },
        &checkpointer);
    sqlite3_stmt* insert = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(writer, "INSERT INTO t VALUES (randomblob(16), zeroblob(300))",
                                 -1, &insert, nullptr),
              SQLITE_OK);
    int64_t largest = 0;
    // ~40 MB of WAL written (random keys dirty a page or more per row), 20x the limit.
    for (int commit = 0; commit < 2000; ++commit) {
      if (checkpointer.TailDue()) checkpointer.CopyTail(writer, /*idle=*/false);
      ASSERT_EQ(sqlite3_exec(writer, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
      for (int row = 0; row < 20; ++row) {
        ASSERT_EQ(sqlite3_step(insert), SQLITE_DONE);
        sqlite3_reset(insert);
      }
      ASSERT_EQ(sqlite3_exec(writer, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
      largest = std::max(largest, FileSize(dir / "w.db-wal"));
    }
    sqlite3_finalize(insert);
    EXPECT_GE(checkpointer.tails(), 5u);
    EXPECT_GE(checkpointer.rounds(), 1u);
    // The limit plus what commits add before the writer gets to the tail.
    EXPECT_LT(largest, kHardLimit + (1 << 20));
    sqlite3_wal_hook(writer, nullptr, nullptr);
  }
  sqlite3_stmt* count = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(checkpoint, "SELECT count(*) FROM t", -1, &count, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(count), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(count, 0), 2000 * 20);
  sqlite3_finalize(count);
  sqlite3_close(checkpoint);
  sqlite3_close(writer);
}

}  // namespace
}  // namespace gpuq::store
