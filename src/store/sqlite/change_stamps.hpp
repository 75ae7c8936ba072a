#pragma once
// Per-run change counters shared by every process that opens one database file, so a reader
// can tell without a query that a run it read earlier has not changed since (the API's cache
// of run documents). A small file next to the database, mapped by each process: slot
// rowid % kSlots counts the commits that touched a run with that rowid. Writers bump a slot
// after the commit; a reader loads the slot before it reads. Two runs sharing a slot only
// cost a needless re-read.
#include <cstdint>
#include <filesystem>
#include <memory>

namespace gpuq::store::sqlite {

class ChangeStamps {
 public:
  static constexpr uint64_t kSlots = 8192;

  // Maps `<database>-stamps`, creating it when missing. Null when the file cannot be used (a
  // read-only directory, a file of another layout): callers then treat every read as fresh.
  static std::unique_ptr<ChangeStamps> Open(const std::filesystem::path& database);
  ~ChangeStamps();
  ChangeStamps(const ChangeStamps&) = delete;
  ChangeStamps& operator=(const ChangeStamps&) = delete;

  // Acquire: a read of the database after this sees every commit the value counts.
  uint64_t Load(int64_t rowid) const;
  // Release: call after the commit that changed the row.
  void Bump(int64_t rowid);

 private:
  ChangeStamps(void* map, size_t size) : map_(map), size_(size) {}
  uint64_t* Slot(int64_t rowid) const;

  void* map_;
  size_t size_;
};

}  // namespace gpuq::store::sqlite
