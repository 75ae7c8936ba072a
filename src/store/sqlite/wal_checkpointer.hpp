#pragma once
// Copies the WAL back into the database file off the commit path, and makes sure the WAL
// starts over instead of growing without end.
//
// The writer never checkpoints inside a commit (wal_autocheckpoint = 0): that would stall
// every write queued behind it. This object's thread copies (PASSIVE, never waiting for the
// writer or readers) whenever WalLimits::round_bytes of WAL were written since its last round.
//
// SQLite starts the WAL over only when a write transaction *begins* with every frame already
// copied. Beside a writer that commits all the time that never happens by itself (a commit
// always lands while a round runs; a submit benchmark grew the WAL by ~180 MB a second for as
// long as it ran). So the writer copies the last tail itself (CopyTail), with the two fsyncs
// that takes:
//   - once it has had nothing to do for a moment (idle_delay), which costs no one anything;
//   - at once when the WAL reached hard_limit_bytes under load that never pauses, which stalls
//     the writes queued behind it for the copy (~330 ms measured at 1 GiB) but bounds the file.
// Copying the tail more often under load (every few tens of MB) was measured: each one
// stalls the writer and takes the disk's write-back with it, and the submit p99 went from
// ~7 ms to 15-60 ms.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

struct sqlite3;

namespace gpuq::store::sqlite {

struct WalLimits {
  // WAL written that starts the next round. Rounds copy each page once however often it
  // changed since the last: 16 MiB rounds cost a third less copying than 4 MiB ones.
  int64_t round_bytes = 16 << 20;
  int64_t idle_tail_bytes = 4 << 20;         // a smaller WAL is left for a round to copy
  int64_t hard_limit_bytes = 1024ll << 20;   // the writer copies the tail past this size
  std::chrono::milliseconds idle_delay{50};  // a writer idle this long copies the tail
};

class WalCheckpointer {
 public:
  static constexpr std::chrono::seconds kMaxIdleRetry{5};
  // What the WAL file is cut back to when it starts over after a burst.
  static constexpr int64_t kJournalSizeLimit = 64 << 20;

  // `db`: a connection of its own, used only by this object's thread. `busy_timeout_ms`: the
  // writer connection's, restored after an idle CopyTail.
  WalCheckpointer(sqlite3* db, int page_size, int busy_timeout_ms, WalLimits limits = {});
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Writer thread, after each commit (the sqlite3_wal_hook): the WAL's size in frames.
  void AfterCommit(int wal_frames);
  // Writer thread: whether to copy the tail before the next batch (the hard limit).
  bool TailDue() const { return tail_due_; }
  // Writer thread: whether an idle writer should copy the tail (the WAL holds idle_tail_bytes
  // or more and was not copied since the last commit).
  bool TailWhenIdle() const { return tail_when_idle_; }
  // Writer thread, between batches: copies what is left; the next write transaction then
  // starts the WAL over (unless a reader still reads an old snapshot: then a later one).
  // `idle`: nothing is queued, so also cut the file back to empty.
  void CopyTail(sqlite3* writer, bool idle);

  // Writer thread: how long to be idle before the next idle CopyTail.
  std::chrono::milliseconds idle_delay() const { return retry_delay_; }
  uint64_t rounds() const { return rounds_.load(std::memory_order_relaxed); }
  uint64_t tails() const { return tails_.load(std::memory_order_relaxed); }

 private:
  void Loop();

  const int busy_timeout_ms_;
  const int64_t round_frames_;
  const int64_t idle_tail_frames_;
  const int64_t hard_limit_frames_;
  const std::chrono::milliseconds base_idle_delay_;
  sqlite3* db_;

  // Writer thread only.
  int64_t next_round_at_;
  int64_t last_frames_ = 0;
  bool tail_due_ = false;
  bool tail_when_idle_ = false;
  std::chrono::milliseconds retry_delay_;  // idle_delay, doubled after each idle copy that failed

  std::mutex mu_;
  std::condition_variable cv_;
  bool wanted_ = false;  // guarded by mu_
  bool stopping_ = false;
  std::atomic<uint64_t> rounds_{0};
  std::atomic<uint64_t> tails_{0};
  std::thread thread_;
};

}  // namespace gpuq::store::sqlite
