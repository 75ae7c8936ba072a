#pragma once
// For the SQLite store's tests: what another process sees in (or does to) the file.
#include <sqlite3.h>

#include <filesystem>
#include <string>

namespace gpuq::store::testing {

// Counts the runs with `id` through a read-only connection of its own on the default VFS, as
// another process would; -1 when the file cannot be read.
inline int CountOnDisk(const std::filesystem::path& file, const std::string& id) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return -1;
  }
  sqlite3_stmt* stmt = nullptr;
  int count = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM runs WHERE id = ?", -1, &stmt, nullptr) ==
      SQLITE_OK) {
    sqlite3_bind_text(stmt, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) == SQLITE_ROW) count = sqlite3_column_int(stmt, 0);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return count;
}

// Runs `sql` through a connection of its own, as a `sqlite3` shell would: "" when it ran,
// else SQLite's message.
inline std::string ExecOnDisk(const std::filesystem::path& file, const char* sql) {
  sqlite3* db = nullptr;
  std::string error;
  if (sqlite3_open(file.c_str(), &db) != SQLITE_OK ||
      sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    error = sqlite3_errmsg(db);
  }
  sqlite3_close(db);
  return error;
}

// The first column of the first row of `sql` through a connection of its own, as text; ""
// when there is none.
inline std::string QueryText(const std::filesystem::path& file, const char* sql) {
  sqlite3* db = nullptr;
  std::string out;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_open(file.c_str(), &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
    out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

// The same, as an integer; -1 when there is none.
inline int QueryInt(const std::filesystem::path& file, const char* sql) {
  std::string text = QueryText(file, sql);
  return text.empty() ? -1 : std::stoi(text);
}

}  // namespace gpuq::store::testing
