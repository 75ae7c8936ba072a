#pragma once
// Run documents for GET /task_status/{id} and GET /runs/{id}. Clients poll these (the CLI's
// --wait, dashboards, scripts): a document is served again, without a query or a JSON build,
// while the store says the run has not changed since it was read (Store::RunUnchanged, one
// memory load that sees writes from every process). Stores that cannot tell get no caching.
#include <array>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/result.hpp"
#include "store/store.hpp"

namespace gpuq::api {

class RunCache {
 public:
  // Documents larger than this are built for every request (big payloads or results).
  static constexpr size_t kMaxBody = 64 * 1024;
  // A document older than this is read again even when its stamp still matches: edits made
  // outside gpuq (a sqlite3 shell) bump no stamp, and this bounds how long they go unseen.
  static constexpr std::chrono::milliseconds kMaxAge{1000};

  // Capacity counts documents across all shards.
  explicit RunCache(store::Store& store, size_t capacity = 4096);

  // The run's JSON document; the store's error (kNotFound for an unknown id) otherwise.
  Result<std::string> Document(std::string_view id);

 private:
  struct Entry {
    store::RunStamp stamp;
    std::chrono::steady_clock::time_point read_at;
    std::string body;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  // Sharded so the io threads rarely meet on one lock.
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Entry, Hash, std::equal_to<>> entries;
  };
  static constexpr size_t kShards = 16;

  store::Store& store_;
  size_t shard_capacity_;
  std::array<Shard, kShards> shards_;
};

}  // namespace gpuq::api
