#pragma once
// A SQLite VFS for the writer connection that hands each commit's WAL frames to the kernel in
// one write. SQLite writes every WAL frame as two pwrite()s (its 24-byte header, then the
// page); a group commit of 64 submits is ~140 of them, half the writer's time on a VM where a
// syscall costs microseconds. This VFS wraps the default one and, for WAL files only, keeps
// contiguous writes in a buffer that reaches the file:
//   - at every xSync: the commit's sync, before SQLite publishes the commit in the wal-index
//     (so no reader, checkpoint or other process can look for frames still in the buffer, and
//     a commit that returned is in the OS page cache: it survives a kill -9 of this process);
//   - before any read, size query, truncate or close of that file, and past kMaxBuffered.
// Use it with `PRAGMA synchronous = FULL; PRAGMA checkpoint_fullfsync = ON`: SQLite then
// calls xSync with SQLITE_SYNC_NORMAL at each commit, which this VFS turns into the write
// without an fsync (what synchronous = NORMAL gives in WAL mode), and with SQLITE_SYNC_FULL
// for the WAL header after a restart and for checkpoints, which still fsync as before.
// Every other file, and every other method, goes straight to the default VFS.
#include <cstdint>

namespace gpuq::store::sqlite {

// Registers the VFS on first use (not as the default) and returns its name for
// sqlite3_open_v2. Null when there is no default VFS to wrap.
const char* WalWriteBatchingVfs();

// Process-wide counts since start, for tests: writes SQLite asked for on WAL files, and
// writes that reached the file.
struct WalWriteCounts {
  uint64_t requested = 0;
  uint64_t issued = 0;
};
WalWriteCounts WalWriteBatchingCounts();

}  // namespace gpuq::store::sqlite
