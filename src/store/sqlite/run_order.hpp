#pragma once
// How the SQLite store orders runs: the indexes that keep the queue and the lists in order, and
// the queries that read them. Each index ends at its ordering column(s): the rowid, which
// SQLite appends to every index entry, breaks ties. It is the order in which runs were
// committed to the file (across processes too), so FIFO within a millisecond is exact, and an
// entry is a few bytes instead of carrying the 36-byte id.
#include <string>

namespace gpuq::store::sqlite {

// CREATE INDEX statements of every ordered index (claim, aging, lists).
extern const char* const kOrderedIndexes;
// DROP INDEX IF EXISTS of the same names: an upgrade drops and recreates them.
extern const char* const kDropOrderedIndexes;

// Claim: the claimable pending runs of one type (bind: type, now ms, limit), best first:
// columns priority, created_at, rowid, id.
extern const char* const kClaimableSql;
// PendingRuns: the same runs best first, and oldest first whatever the priority (bind: type,
// now ms, limit): columns priority, created_at, id.
extern const char* const kPendingBestSql;
extern const char* const kPendingOldestSql;

// List: `columns` of runs newest first, filtered by whichever of state, type, parent (bound in
// that order) are set, after the cursor (created_at ms, rowid) when `after_cursor`, then LIMIT.
std::string ListSql(const char* columns, bool state, bool type, bool parent, bool after_cursor);

}  // namespace gpuq::store::sqlite
