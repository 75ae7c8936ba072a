#pragma once
// Private to src/store/sqlite/: the SQLite plumbing that SqliteStore's members share across the
// .cpp files that define them (sqlite_store.cpp: runs and the queue; sqlite_gpu.cpp: GPU-worker
// claims, named leases, agents, commands). Nothing outside src/store/sqlite/ includes it.
#include <linux/futex.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "store/sqlite/change_stamps.hpp"
#include "store/sqlite/run_ids.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/sqlite/wal_checkpointer.hpp"

namespace gpuq::store::sqlite {

// Every Run field, in the order ReadRun reads them.
#define GPUQ_RUN_COLUMNS                                                                     \
  "id, type, priority, state, payload, result, error, parent_run_id, depends_on, attempts, " \
  "max_attempts, timeout_s, progress, waiting_reason, worker, gpu, idempotency_key, "        \
  "created_at, started_at, finished_at, not_before, cancel_requested, files"
inline constexpr int kRunColumnCount = 23;  // of GPUQ_RUN_COLUMNS

inline constexpr int kBusyTimeoutMs = 30'000;

inline Json ParseJson(std::string_view text) {
  // Only this store writes these columns; a value that does not parse reads as null.
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? Json(nullptr) : j;
}

inline std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

inline Error SqlError(sqlite3* db, int rc, std::string_view what) {
  Errc code = Errc::kInternal;
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      code = Errc::kUnavailable;
      break;
    default:
      break;
  }
  const char* message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return Error{code, fmt::format("sqlite {}: {}", what, message)};
}

inline Error NotFound(std::string_view id) {
  return Error{Errc::kNotFound, fmt::format("run {} not found", id)};
}

// A cached prepared statement in use; resets it when the scope ends, so no read transaction
// stays open and the cache can hand it out again.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), next_(other.next_) {}
  Stmt& operator=(Stmt&&) = delete;
  ~Stmt() {
    if (stmt_) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  // Binds the next parameter (1, 2, ...).
  Stmt& Bind(long long v) {
    sqlite3_bind_int64(stmt_, ++next_, v);
    return *this;
  }
  Stmt& Bind(int v) { return Bind(static_cast<long long>(v)); }
  Stmt& Bind(std::string_view v) {
    sqlite3_bind_text(stmt_, ++next_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(const char* v) { return Bind(std::string_view(v)); }
  Stmt& Bind(const std::string& v) { return Bind(std::string_view(v)); }
  Stmt& Bind(const std::optional<std::string>& v) {
    return v ? Bind(std::string_view(*v)) : BindNull();
  }
  Stmt& Bind(const std::optional<TimePoint>& v) { return v ? Bind(ToMillis(*v)) : BindNull(); }
  Stmt& Bind(TimePoint v) { return Bind(ToMillis(v)); }
  Stmt& BindNull() {
    sqlite3_bind_null(stmt_, ++next_);
    return *this;
  }

  // One step: true when it produced a row, false when done.
  Result<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqlError(db_, rc, "step");
  }
  // Steps to the end, ignoring rows.
  Result<void> Run() {
    while (true) {
      BOOST_OUTCOME_TRY(auto row, Step());
      if (!row) return Ok();
    }
  }

  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  long long Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string_view Text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string_view(p, static_cast<size_t>(n)) : std::string_view();
  }
  std::string String(int col) const { return std::string(Text(col)); }
  std::optional<std::string> OptString(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<std::string>(String(col));
  }
  std::optional<TimePoint> OptTime(int col) const {
    return IsNull(col) ? std::nullopt : std::optional<TimePoint>(FromMillis(Int(col)));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int next_ = 0;
};

// One SQLite connection and its statement cache. Used by one thread at a time.
class Conn {
 public:
  // `vfs`: null for the default one.
  static Result<std::unique_ptr<Conn>> Open(const std::filesystem::path& file,
                                            const char* vfs = nullptr) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(file.c_str(), &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, vfs);
    if (rc != SQLITE_OK) {
      Error error = SqlError(db, rc, fmt::format("open {}", file.string()));
      sqlite3_close_v2(db);
      return error;
    }
    auto conn = std::unique_ptr<Conn>(new Conn(db));
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    // mmap: pages come from the OS page cache without a read() each; a WAL connection drops
    // its own page cache whenever another connection committed, which is most reads here.
    BOOST_OUTCOME_TRY(
        conn->Exec("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; "
                   "PRAGMA mmap_size = 268435456;"));
    return conn;
  }

  ~Conn() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  sqlite3* db() const { return db_; }

  // The cached statement for `sql`, prepared on first use.
  Result<Stmt> Prepare(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* stmt = nullptr;
      int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                  SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) return SqlError(db_, rc, "prepare");
      it = cache_.emplace(std::string(sql), stmt).first;
    } else if (sqlite3_stmt_busy(it->second)) {
      // Two live uses of one statement would reset each other: a bug in this file.
      return Error{Errc::kInternal, fmt::format("sqlite statement already in use: {}", sql)};
    }
    return Stmt(db_, it->second);
  }

  // Runs SQL text with no parameters or results (pragmas, DDL).
  Result<void> Exec(const char* sql) {
    char* message = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
    if (rc == SQLITE_OK) return Ok();
    Error error{Errc::kInternal, ""};
    error = SqlError(db_, rc, "exec");
    if (message) {
      error.message = fmt::format("sqlite exec: {}", message);
      sqlite3_free(message);
    }
    return error;
  }

 private:
  explicit Conn(sqlite3* db) : db_(db) {}

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*, Hash, std::equal_to<>> cache_;
};

// Reads the GPUQ_RUN_COLUMNS starting at column 0.
Run ReadRun(const Stmt& s);

// ---------------------------------------------------------------------------------------------
// Per-thread read connections. Each thread keeps, per live store, one connection the store owns;
// looking it up is a scan of a tiny thread-local vector, with no lock. A store id is never
// reused, so a slot of a destroyed store is never matched again; misses prune such slots.

class ReaderOwner {
 public:
  virtual void CloseReader(Conn* conn) = 0;  // called with the registry lock held

 protected:
  ~ReaderOwner() = default;
};

struct Registry {
  std::mutex mu;
  std::unordered_map<uint64_t, ReaderOwner*> live;
  std::atomic<uint64_t> next_id{1};
};

inline Registry& GlobalRegistry() {
  static auto* registry = new Registry;  // never destroyed: thread exits may still use it
  return *registry;
}

struct ReaderSlot {
  uint64_t store_id;
  Conn* conn;
  uint64_t seen_work;  // WaitForWork: the wake-up generation this thread has seen
};

struct ThreadReaders {
  std::vector<ReaderSlot> slots;
  ~ThreadReaders() {
    // A thread that ends hands its connections back to the stores still alive.
    Registry& registry = GlobalRegistry();
    std::lock_guard lock(registry.mu);
    for (const auto& slot : slots) {
      auto it = registry.live.find(slot.store_id);
      if (it != registry.live.end()) it->second->CloseReader(slot.conn);
    }
  }
};

inline thread_local ThreadReaders tls_readers;

// ---------------------------------------------------------------------------------------------
// The writer side.

// The rowid of the run `id` (run_ids.hpp; a random id of a file from before schema 5 through
// run_legacy_ids); kNotFound when `id` names no run this file ever had.
Result<long long> RunRowid(Conn& db, const RunIds& ids, std::string_view id);

// What a write operation sees: the writer connection inside the open transaction, and the time.
struct Tx {
  Conn& db;
  const RunIds& ids;
  TimePoint now;
  bool wake = false;  // set when the operation made work claimable

  Result<long long> Row(std::string_view id) { return RunRowid(db, ids, id); }
};

// One queued write. A blocking write's Op lives on the caller's stack until it is done; an
// asynchronous one lives on the heap and `finish` delivers its result and frees it.
struct Op {
  bool (*fn)(void* ctx, Tx& tx) = nullptr;  // runs the operation; true: keep its changes
  void* ctx = nullptr;
  void (*finish)(Op* op) = nullptr;  // called once after the commit; null: wake the waiter
  std::optional<Error> batch_error;  // the transaction itself failed: every op gets this

  // A bare futex rather than std::binary_semaphore: libstdc++'s waits spin with sched_yield
  // first, which on a busy 2-core host takes CPU from the writer the caller waits for.
  void Wait() {
    while (done.load(std::memory_order_acquire) == 0) {
      syscall(SYS_futex, reinterpret_cast<int*>(&done), FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
    }
  }
  void Finish() {
    if (finish) return finish(this);
    done.store(1, std::memory_order_release);
    syscall(SYS_futex, reinterpret_cast<int*>(&done), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }
  std::atomic<int> done{0};
  static_assert(sizeof(std::atomic<int>) == sizeof(int));
};

// The database's page size (4096 when it cannot be read).
inline int PageSize(Conn& conn) {
  auto s = conn.Prepare("PRAGMA page_size");
  if (!s) return 4096;
  auto row = s.value().Step();
  return row && row.value() ? static_cast<int>(s.value().Int(0)) : 4096;
}

// The tables of GPU workers (named leases, agents, commands), added by schema version 2
// (sqlite_gpu.cpp). Runs on a version-1 file as its upgrade.
extern const char* const kGpuSchema;

// The run at `rowid` through `db`; kNotFound (naming `id`) when there is none.
Result<Run> LoadRun(Conn& db, long long rowid, std::string_view id);
// A write about a lease of the run `id` at `rowid` matched nothing: the run is unknown
// (kNotFound), or the lease is gone (kConflict).
Error LeaseError(Conn& db, long long rowid, std::string_view id);

// ---------------------------------------------------------------------------------------------
// A store's connections, writer thread and wake-ups.

struct StoreState : ReaderOwner {
  StoreState(std::filesystem::path file_in, Clock& clock_in, RunIds ids_in,
             std::unique_ptr<Conn> writer_conn_in, std::unique_ptr<Conn> checkpoint_conn_in)
      : file(std::move(file_in)),
        clock(clock_in),
        ids(ids_in),
        writer_conn(std::move(writer_conn_in)),
        checkpoint_conn(std::move(checkpoint_conn_in)) {
    id = GlobalRegistry().next_id.fetch_add(1);
    {
      std::lock_guard lock(GlobalRegistry().mu);
      GlobalRegistry().live.emplace(id, this);
    }
    stamps = ChangeStamps::Open(file);
    // Every row of `runs` this process changes, so its stamp is bumped after the commit. The
    // hook sees the statements of every write path, so none can forget to.
    sqlite3_update_hook(
        writer_conn->db(),
        [](void* self, int, const char*, const char* table, sqlite3_int64 rowid) {
          if (std::strcmp(table, "runs") == 0) {
            static_cast<StoreState*>(self)->changed_runs.push_back(rowid);
          }
        },
        this);
    sqlite3_wal_hook(
        writer_conn->db(),
        [](void* self, sqlite3*, const char*, int pages) {
          static_cast<StoreState*>(self)->checkpointer->AfterCommit(pages);
          return SQLITE_OK;
        },
        this);
    checkpointer = std::make_unique<WalCheckpointer>(checkpoint_conn->db(), PageSize(*writer_conn),
                                                     kBusyTimeoutMs);
    writer = std::thread([this] { WriterLoop(); });
  }

  ~StoreState() {
    {
      std::lock_guard lock(queue_mu);
      stopping = true;
    }
    queue_cv.notify_one();
    writer.join();
    checkpointer.reset();
    {
      std::lock_guard lock(GlobalRegistry().mu);
      GlobalRegistry().live.erase(id);
    }
    std::lock_guard lock(readers_mu);
    readers.clear();
  }

  void CloseReader(Conn* conn) override {
    std::lock_guard lock(readers_mu);
    std::erase_if(readers, [conn](const auto& r) { return r.get() == conn; });
  }

  // This thread's read connection (opened on first use) and its slot.
  Result<ReaderSlot*> Reader() {
    auto& slots = tls_readers.slots;
    for (auto& slot : slots) {
      if (slot.store_id == id) return &slot;
    }
    {
      Registry& registry = GlobalRegistry();
      std::lock_guard lock(registry.mu);
      std::erase_if(slots, [&](const ReaderSlot& s) { return !registry.live.count(s.store_id); });
    }
    BOOST_OUTCOME_TRY(auto conn, Conn::Open(file));
    Conn* raw = conn.get();
    {
      std::lock_guard lock(readers_mu);
      readers.push_back(std::move(conn));
    }
    slots.push_back(ReaderSlot{id, raw, work_generation.load()});
    return &slots.back();
  }

  // Runs `f(Tx&) -> Result<T>` on the writer thread inside the next group transaction and
  // returns its result once that transaction committed (or the transaction's error).
  template <class F>
  auto Write(F&& f) -> std::invoke_result_t<F&, Tx&> {
    using R = std::invoke_result_t<F&, Tx&>;
    struct Ctx {
      std::remove_reference_t<F>* f;
      std::optional<R> out;
    };
    Ctx ctx{&f, std::nullopt};
    Op op;
    op.ctx = &ctx;
    op.fn = [](void* p, Tx& tx) -> bool {
      auto* c = static_cast<Ctx*>(p);
      try {
        c->out.emplace((*c->f)(tx));
      } catch (const std::exception& e) {
        c->out.emplace(Error{Errc::kInternal, fmt::format("store write failed: {}", e.what())});
      }
      return c->out->has_value();
    };
    Enqueue(&op);
    op.Wait();
    if (op.batch_error) return *op.batch_error;
    return std::move(*ctx.out);
  }

  // Queues `op` for the writer; op->finish (or op->Finish's wake-up) runs after its commit.
  void Enqueue(Op* op) {
    bool wake_writer = false;
    {
      std::lock_guard lock(queue_mu);
      queue.push_back(op);
      wake_writer = writer_sleeping;
    }
    if (wake_writer) queue_cv.notify_one();
  }

  void WriterLoop() {
    std::vector<Op*> batch;
    while (true) {
      {
        std::unique_lock lock(queue_mu);
        auto ready = [this] { return stopping || !queue.empty(); };
        writer_sleeping = true;
        bool idle = false;
        if (checkpointer->TailWhenIdle()) {
          idle = !queue_cv.wait_for(lock, checkpointer->idle_delay(), ready);
        } else {
          queue_cv.wait(lock, ready);
        }
        writer_sleeping = false;
        if (idle) {
          lock.unlock();
          checkpointer->CopyTail(writer_conn->db(), /*idle=*/true);
          continue;
        }
        if (queue.empty()) return;  // stopping, and nothing left to do
        batch.swap(queue);
      }
      if (checkpointer->TailDue()) checkpointer->CopyTail(writer_conn->db(), /*idle=*/false);
      if (!RunBatch(batch, /*savepoints=*/false)) RunBatch(batch, /*savepoints=*/true);
      batch.clear();
    }
  }

  Result<void> Simple(const char* sql) {
    BOOST_OUTCOME_TRY(auto s, writer_conn->Prepare(sql));
    return s.Run();
  }

  // One transaction for the whole batch. Most operations either succeed or fail before they
  // write anything, so the first try runs them back to back without savepoints (a savepoint
  // costs statements and allocations per op). When an operation fails after writing, the
  // batch is rolled back and this returns false; the caller runs the batch again with a
  // savepoint per operation, which every operation allows since all it touches is the
  // database and its own result.
  bool RunBatch(const std::vector<Op*>& batch, bool savepoints) {
    auto fail_all = [&](const Error& error) {
      for (Op* op : batch) op->batch_error = error;
    };
    bool wake = false;
    if (auto begin = Simple("BEGIN IMMEDIATE"); !begin) {
      fail_all(begin.error());
    } else {
      bool alone = savepoints && batch.size() == 1;
      bool keep_alone = true;
      bool broken = false;
      for (Op* op : batch) {
        Tx tx{*writer_conn, ids, clock.Now()};
        if (!savepoints) {
          long long before = sqlite3_total_changes64(writer_conn->db());
          bool keep = op->fn(op->ctx, tx);
          if (!keep && sqlite3_total_changes64(writer_conn->db()) != before) {
            if (!sqlite3_get_autocommit(writer_conn->db())) (void)Simple("ROLLBACK");
            return false;
          }
          if (sqlite3_get_autocommit(writer_conn->db())) {
            fail_all(Error{Errc::kUnavailable, "sqlite transaction rolled back"});
            broken = true;
            break;
          }
          wake = wake || (keep && tx.wake);
          continue;
        }
        if (!alone) {
          if (auto r = Simple("SAVEPOINT op"); !r) {
            fail_all(r.error());
            broken = true;
            break;
          }
        }
        bool keep = op->fn(op->ctx, tx);
        if (sqlite3_get_autocommit(writer_conn->db())) {
          // SQLite rolled the whole transaction back (disk full, I/O error): nothing of this
          // batch was kept.
          fail_all(Error{Errc::kUnavailable, "sqlite transaction rolled back"});
          broken = true;
          break;
        }
        if (alone) {
          keep_alone = keep;
        } else if (keep) {
          if (auto r = Simple("RELEASE op"); !r) {
            fail_all(r.error());
            broken = true;
            break;
          }
        } else {
          auto r = Simple("ROLLBACK TO op");
          if (r) r = Simple("RELEASE op");
          if (!r) {
            fail_all(r.error());
            broken = true;
            break;
          }
        }
        wake = wake || (keep && tx.wake);
      }
      if (broken) {
        if (!sqlite3_get_autocommit(writer_conn->db())) (void)Simple("ROLLBACK");
        wake = false;
      } else if (!keep_alone) {
        (void)Simple("ROLLBACK");
      } else if (auto commit = Simple("COMMIT"); !commit) {
        fail_all(commit.error());
        if (!sqlite3_get_autocommit(writer_conn->db())) (void)Simple("ROLLBACK");
        wake = false;
      }
    }
    // After the commit (or the rollback: a needless bump only costs a re-read), before any
    // caller hears back: whoever learns of this write reads past the stamps' old values.
    if (stamps) {
      for (int64_t rowid : changed_runs) stamps->Bump(rowid);
    }
    changed_runs.clear();
    if (wake) {
      {
        std::lock_guard lock(work_mu);
        work_generation.fetch_add(1);
      }
      work_cv.notify_all();
    }
    for (Op* op : batch) op->Finish();
    return true;
  }

  std::filesystem::path file;
  Clock& clock;
  const RunIds ids;  // the file's run id key, read once at open
  uint64_t id = 0;

  std::unique_ptr<Conn> writer_conn;      // used only by the writer thread (and Open, before it)
  std::unique_ptr<ChangeStamps> stamps;   // null: stamps are off, every read counts as fresh
  std::vector<int64_t> changed_runs;      // writer thread: rowids of the open transaction
  std::unique_ptr<Conn> checkpoint_conn;  // used only by the checkpoint thread
  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::vector<Op*> queue;
  bool writer_sleeping = false;
  bool stopping = false;
  std::thread writer;

  std::unique_ptr<WalCheckpointer> checkpointer;  // before the writer starts, after it ends

  std::mutex readers_mu;
  std::vector<std::unique_ptr<Conn>> readers;

  std::mutex work_mu;
  std::condition_variable work_cv;
  std::atomic<uint64_t> work_generation{0};

  // Command queue wake-ups: PostCommand and ReplyCommand in this process bump the generation;
  // TakeCommands and WaitReply wait for a change (and poll the file for other processes).
  std::mutex command_mu;
  std::condition_variable command_cv;
  uint64_t command_generation = 0;  // guarded by command_mu

  void NotifyCommands() {
    {
      std::lock_guard lock(command_mu);
      ++command_generation;
    }
    command_cv.notify_all();
  }
};

}  // namespace gpuq::store::sqlite

namespace gpuq::store {

struct SqliteStore::State final : sqlite::StoreState {
  using StoreState::StoreState;
};

}  // namespace gpuq::store
