#include "store/sqlite/run_order.hpp"

namespace gpuq::store::sqlite {

// Ascending on purpose: a new run goes at the right end, where SQLite appends to full pages
// (DESC columns took every insert at the left end, split pages there and left them half
// full). Lists read them backwards. Version 3 files had `id` before the rowid in each; a
// submit then wrote ~50 bytes into each of six indexes instead of ~10.
const char* const kOrderedIndexes = R"sql(
CREATE INDEX runs_claim ON runs (type, priority DESC, created_at) WHERE state = 'pending';
CREATE INDEX runs_pending_age ON runs (type, created_at) WHERE state = 'pending';
CREATE INDEX runs_newest ON runs (created_at);
CREATE INDEX runs_state_newest ON runs (state, created_at);
CREATE INDEX runs_type_newest ON runs (type, created_at);
CREATE INDEX runs_parent_newest ON runs (parent_run_id, created_at)
  WHERE parent_run_id IS NOT NULL;
)sql";

const char* const kDropOrderedIndexes = R"sql(
DROP INDEX IF EXISTS runs_claim;
DROP INDEX IF EXISTS runs_pending_age;
DROP INDEX IF EXISTS runs_newest;
DROP INDEX IF EXISTS runs_state_newest;
DROP INDEX IF EXISTS runs_type_newest;
DROP INDEX IF EXISTS runs_parent_newest;
)sql";

// not_before is not in runs_claim: the id has to come from the row anyway, and only the head
// of the queue (LIMIT) is read.
const char* const kClaimableSql =
    "SELECT priority, created_at, rowid, id FROM runs WHERE state = 'pending' AND type = ? "
    "AND coalesce(not_before, 0) <= ? ORDER BY priority DESC, created_at, rowid LIMIT ?";

const char* const kPendingBestSql =
    "SELECT priority, created_at, id FROM runs WHERE state = 'pending' AND type = ? "
    "AND coalesce(not_before, 0) <= ? ORDER BY priority DESC, created_at, rowid LIMIT ?";

const char* const kPendingOldestSql =
    "SELECT priority, created_at, id FROM runs WHERE state = 'pending' AND type = ? "
    "AND coalesce(not_before, 0) <= ? ORDER BY created_at, rowid LIMIT ?";

std::string ListSql(const char* columns, bool state, bool type, bool parent, bool after_cursor) {
  std::string sql = "SELECT ";
  sql += columns;
  sql += " FROM runs WHERE 1 = 1";
  if (state) sql += " AND state = ?";
  if (type) sql += " AND type = ?";
  if (parent) sql += " AND parent_run_id = ?";
  if (after_cursor) sql += " AND (created_at, rowid) < (?, ?)";
  sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?";
  return sql;
}

}  // namespace gpuq::store::sqlite
