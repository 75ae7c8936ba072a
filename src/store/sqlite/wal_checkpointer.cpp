#include "store/sqlite/wal_checkpointer.hpp"

#include <pthread.h>
#include <sqlite3.h>

#include <algorithm>

namespace gpuq::store::sqlite {

WalCheckpointer::WalCheckpointer(sqlite3* db, int page_size, int busy_timeout_ms, WalLimits limits)
    : busy_timeout_ms_(busy_timeout_ms),
      round_frames_(std::max<int64_t>(1, limits.round_bytes / std::max(page_size, 512))),
      idle_tail_frames_(limits.idle_tail_bytes / std::max(page_size, 512)),
      hard_limit_frames_(std::max<int64_t>(1, limits.hard_limit_bytes / std::max(page_size, 512))),
      base_idle_delay_(limits.idle_delay),
      db_(db),
      next_round_at_(round_frames_),
      retry_delay_(base_idle_delay_) {
  thread_ = std::thread([this] { Loop(); });
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void WalCheckpointer::AfterCommit(int wal_frames) {
  if (wal_frames < last_frames_) next_round_at_ = round_frames_;  // the WAL started over
  last_frames_ = wal_frames;
  // A short WAL is not worth two fsyncs; it starts over on its own once a round caught up.
  tail_when_idle_ = wal_frames >= idle_tail_frames_;
  retry_delay_ = base_idle_delay_;
  if (wal_frames >= hard_limit_frames_) tail_due_ = true;
  if (wal_frames < next_round_at_) return;
  next_round_at_ = wal_frames + round_frames_;
  {
    std::lock_guard lock(mu_);
    wanted_ = true;
  }
  cv_.notify_one();
}

void WalCheckpointer::CopyTail(sqlite3* writer, bool idle) {
  tail_due_ = false;
  tails_.fetch_add(1, std::memory_order_relaxed);
  if (!idle) {
    // Fails only as a round would (BUSY beside the thread's round, I/O): the next commit past
    // the limit asks again.
    (void)sqlite3_wal_checkpoint_v2(writer, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    return;
  }
  // An idle writer also cuts the file back (TRUNCATE), or a burst's WAL would stay on disk
  // until the next write. It must not wait for the checkpoint thread's round, a reader of an
  // old snapshot or another process's writer (no busy handler): when one is in the way it
  // tries again after twice the delay (up to kMaxIdleRetry) for as long as it stays idle.
  sqlite3_busy_timeout(writer, 0);
  int rc = sqlite3_wal_checkpoint_v2(writer, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  sqlite3_busy_timeout(writer, busy_timeout_ms_);
  if (rc == SQLITE_OK) {
    tail_when_idle_ = false;
    retry_delay_ = base_idle_delay_;
  } else {
    retry_delay_ = std::min(retry_delay_ * 2, std::chrono::milliseconds(kMaxIdleRetry));
  }
}

void WalCheckpointer::Loop() {
  pthread_setname_np(pthread_self(), "gpuq-checkpoint");
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || wanted_; });
    if (stopping_) return;
    wanted_ = false;
    lock.unlock();
    int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    rounds_.fetch_add(1, std::memory_order_relaxed);
    lock.lock();
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      // Nothing is lost: the WAL just grows until a later round succeeds. Do not spin.
      cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; });
    }
  }
}

}  // namespace gpuq::store::sqlite
