#include "store/sqlite/wal_write_batching.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

namespace gpuq::store::sqlite {
namespace {

constexpr const char* kVfsName = "gpuq-wal-batching";
// A transaction bigger than this (a huge payload, a purge) goes to the file in pieces.
constexpr size_t kMaxBuffered = 8 << 20;
// The unix VFS's xWrite takes at most 0x1ffff bytes per call (it masks larger sizes).
constexpr size_t kMaxWrite = 124 << 10;

std::atomic<uint64_t> requested_writes{0};
std::atomic<uint64_t> issued_writes{0};

// Our file object; the default VFS's file object lives right behind it (szOsFile covers both).
struct File {
  sqlite3_file base;
  sqlite3_file* real;
  bool wal;
  char* buffer;
  size_t used;
  size_t capacity;
  sqlite3_int64 start;  // file offset of buffer[0]
};

sqlite3_vfs* Real(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }
File* Self(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
const sqlite3_io_methods& RealIo(File* f) { return *f->real->pMethods; }

// Writes what is buffered. On failure the bytes are dropped: SQLite fails the commit (or the
// operation) and rewrites whatever frames it needs, so stale bytes must not land later.
int Flush(File* f) {
  int rc = SQLITE_OK;
  for (size_t done = 0; done < f->used && rc == SQLITE_OK; done += kMaxWrite) {
    size_t size = std::min(kMaxWrite, f->used - done);
    rc = RealIo(f).xWrite(f->real, f->buffer + done, static_cast<int>(size),
                          f->start + static_cast<sqlite3_int64>(done));
    issued_writes.fetch_add(1, std::memory_order_relaxed);
  }
  f->used = 0;
  return rc;
}

bool Reserve(File* f, size_t size) {
  if (size <= f->capacity) return true;
  size_t capacity = f->capacity == 0 ? 256 << 10 : f->capacity;
  while (capacity < size) capacity *= 2;
  void* grown = std::realloc(f->buffer, capacity);
  if (grown == nullptr) return false;
  f->buffer = static_cast<char*>(grown);
  f->capacity = capacity;
  return true;
}

int Close(sqlite3_file* file) {
  File* f = Self(file);
  int flushed = Flush(f);
  int rc = RealIo(f).xClose(f->real);
  std::free(f->buffer);
  f->buffer = nullptr;
  return flushed != SQLITE_OK ? flushed : rc;
}

int Read(sqlite3_file* file, void* out, int amount, sqlite3_int64 offset) {
  File* f = Self(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return RealIo(f).xRead(f->real, out, amount, offset);
}

int Write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  File* f = Self(file);
  if (!f->wal) return RealIo(f).xWrite(f->real, data, amount, offset);
  requested_writes.fetch_add(1, std::memory_order_relaxed);
  auto size = static_cast<size_t>(amount);
  sqlite3_int64 end = f->start + static_cast<sqlite3_int64>(f->used);
  if (f->used > 0 && offset >= f->start && offset + amount <= end) {
    // SQLite rewrote a frame of the open transaction (a page changed again): patch in place.
    std::memcpy(f->buffer + (offset - f->start), data, size);
    return SQLITE_OK;
  }
  if (f->used > 0 && (offset != end || f->used + size > kMaxBuffered)) {
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  }
  if (f->used == 0) f->start = offset;
  if (!Reserve(f, f->used + size)) {
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
    issued_writes.fetch_add(1, std::memory_order_relaxed);
    return RealIo(f).xWrite(f->real, data, amount, offset);
  }
  std::memcpy(f->buffer + f->used, data, size);
  f->used += size;
  return SQLITE_OK;
}

int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = Self(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return RealIo(f).xTruncate(f->real, size);
}

int Sync(sqlite3_file* file, int flags) {
  File* f = Self(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  // A commit's sync (SQLITE_SYNC_NORMAL, see the header) ends at the write; the WAL header's
  // and the checkpoints' syncs (SQLITE_SYNC_FULL) and other files' reach the disk.
  if (f->wal && (flags & 0x0F) != SQLITE_SYNC_FULL) return SQLITE_OK;
  return RealIo(f).xSync(f->real, flags);
}

int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  File* f = Self(file);
  if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  return RealIo(f).xFileSize(f->real, size);
}

// The rest only forward.
int Lock(sqlite3_file* f, int level) { return RealIo(Self(f)).xLock(Self(f)->real, level); }
int Unlock(sqlite3_file* f, int level) { return RealIo(Self(f)).xUnlock(Self(f)->real, level); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return RealIo(Self(f)).xCheckReservedLock(Self(f)->real, out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return RealIo(Self(f)).xFileControl(Self(f)->real, op, arg);
}
int SectorSize(sqlite3_file* f) { return RealIo(Self(f)).xSectorSize(Self(f)->real); }
int DeviceCharacteristics(sqlite3_file* f) {
  return RealIo(Self(f)).xDeviceCharacteristics(Self(f)->real);
}
int ShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  const auto& io = RealIo(Self(f));
  if (io.iVersion < 2 || io.xShmMap == nullptr) return SQLITE_IOERR_SHMMAP;
  return io.xShmMap(Self(f)->real, region, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  const auto& io = RealIo(Self(f));
  if (io.iVersion < 2 || io.xShmLock == nullptr) return SQLITE_IOERR_SHMLOCK;
  return io.xShmLock(Self(f)->real, offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) {
  const auto& io = RealIo(Self(f));
  if (io.iVersion >= 2 && io.xShmBarrier != nullptr) io.xShmBarrier(Self(f)->real);
}
int ShmUnmap(sqlite3_file* f, int delete_flag) {
  const auto& io = RealIo(Self(f));
  if (io.iVersion < 2 || io.xShmUnmap == nullptr) return SQLITE_OK;
  return io.xShmUnmap(Self(f)->real, delete_flag);
}
int Fetch(sqlite3_file* f, sqlite3_int64 offset, int amount, void** out) {
  const auto& io = RealIo(Self(f));
  if (io.iVersion < 3 || io.xFetch == nullptr) {
    *out = nullptr;
    return SQLITE_OK;
  }
  return io.xFetch(Self(f)->real, offset, amount, out);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 offset, void* page) {
  const auto& io = RealIo(Self(f));
  if (io.iVersion < 3 || io.xUnfetch == nullptr) return SQLITE_OK;
  return io.xUnfetch(Self(f)->real, offset, page);
}

constexpr sqlite3_io_methods kIo = {
    .iVersion = 3,
    .xClose = Close,
    .xRead = Read,
    .xWrite = Write,
    .xTruncate = Truncate,
    .xSync = Sync,
    .xFileSize = FileSize,
    .xLock = Lock,
    .xUnlock = Unlock,
    .xCheckReservedLock = CheckReservedLock,
    .xFileControl = FileControl,
    .xSectorSize = SectorSize,
    .xDeviceCharacteristics = DeviceCharacteristics,
    .xShmMap = ShmMap,
    .xShmLock = ShmLock,
    .xShmBarrier = ShmBarrier,
    .xShmUnmap = ShmUnmap,
    .xFetch = Fetch,
    .xUnfetch = Unfetch,
};

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = Self(file);
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->real->pMethods = nullptr;
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  f->buffer = nullptr;
  f->used = 0;
  f->capacity = 0;
  f->start = 0;
  int rc = Real(vfs)->xOpen(Real(vfs), name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (f->real->pMethods != nullptr) f->real->pMethods->xClose(f->real);
    return rc;
  }
  f->base.pMethods = &kIo;
  return SQLITE_OK;
}

// The VFS-level methods all forward to the default VFS.
int Delete(sqlite3_vfs* v, const char* name, int sync_dir) {
  return Real(v)->xDelete(Real(v), name, sync_dir);
}
int Access(sqlite3_vfs* v, const char* name, int flags, int* out) {
  return Real(v)->xAccess(Real(v), name, flags, out);
}
int FullPathname(sqlite3_vfs* v, const char* name, int size, char* out) {
  return Real(v)->xFullPathname(Real(v), name, size, out);
}
void* DlOpen(sqlite3_vfs* v, const char* name) { return Real(v)->xDlOpen(Real(v), name); }
void DlError(sqlite3_vfs* v, int size, char* out) { Real(v)->xDlError(Real(v), size, out); }
void (*DlSym(sqlite3_vfs* v, void* handle, const char* symbol))(void) {
  return Real(v)->xDlSym(Real(v), handle, symbol);
}
void DlClose(sqlite3_vfs* v, void* handle) { Real(v)->xDlClose(Real(v), handle); }
int Randomness(sqlite3_vfs* v, int size, char* out) {
  return Real(v)->xRandomness(Real(v), size, out);
}
int Sleep(sqlite3_vfs* v, int micros) { return Real(v)->xSleep(Real(v), micros); }
int CurrentTime(sqlite3_vfs* v, double* out) { return Real(v)->xCurrentTime(Real(v), out); }
int GetLastError(sqlite3_vfs* v, int size, char* out) {
  return Real(v)->xGetLastError(Real(v), size, out);
}
int CurrentTimeInt64(sqlite3_vfs* v, sqlite3_int64* out) {
  if (Real(v)->iVersion >= 2 && Real(v)->xCurrentTimeInt64 != nullptr) {
    return Real(v)->xCurrentTimeInt64(Real(v), out);
  }
  double days = 0;
  int rc = Real(v)->xCurrentTime(Real(v), &days);
  *out = static_cast<sqlite3_int64>(days * 86400000.0);
  return rc;
}

sqlite3_vfs* Register() {
  sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
  if (real == nullptr) return nullptr;
  static sqlite3_vfs vfs{};
  vfs.iVersion = 2;
  vfs.szOsFile = static_cast<int>(sizeof(File)) + real->szOsFile;
  vfs.mxPathname = real->mxPathname;
  vfs.zName = kVfsName;
  vfs.pAppData = real;
  vfs.xOpen = Open;
  vfs.xDelete = Delete;
  vfs.xAccess = Access;
  vfs.xFullPathname = FullPathname;
  vfs.xDlOpen = DlOpen;
  vfs.xDlError = DlError;
  vfs.xDlSym = DlSym;
  vfs.xDlClose = DlClose;
  vfs.xRandomness = Randomness;
  vfs.xSleep = Sleep;
  vfs.xCurrentTime = CurrentTime;
  vfs.xGetLastError = GetLastError;
  vfs.xCurrentTimeInt64 = CurrentTimeInt64;
  if (sqlite3_vfs_register(&vfs, /*makeDflt=*/0) != SQLITE_OK) return nullptr;
  return &vfs;
}

}  // namespace

const char* WalWriteBatchingVfs() {
  static sqlite3_vfs* vfs = Register();
  return vfs == nullptr ? nullptr : vfs->zName;
}

WalWriteCounts WalWriteBatchingCounts() {
  return {requested_writes.load(std::memory_order_relaxed),
          issued_writes.load(std::memory_order_relaxed)};
}

}  // namespace gpuq::store::sqlite
