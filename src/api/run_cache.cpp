#include "api/run_cache.hpp"

#include "api/run_json.hpp"

namespace gpuq::api {

RunCache::RunCache(store::Store& store, size_t capacity)
    : store_(store), shard_capacity_(std::max<size_t>(1, capacity / kShards)) {}

Result<std::string> RunCache::Document(std::string_view id) {
  Shard& shard = shards_[std::hash<std::string_view>()(id) % kShards];
  const auto now = std::chrono::steady_clock::now();
  store::RunStamp stamp;
  {
    std::lock_guard lock(shard.mu);
    if (auto it = shard.entries.find(id); it != shard.entries.end()) {
      const Entry& entry = it->second;
      if (now - entry.read_at < kMaxAge && store_.RunUnchanged(entry.stamp)) return entry.body;
      stamp = entry.stamp;  // where the store found the run: its next stamp is then valid
    }
  }

  auto run = store_.GetStamped(id, stamp);
  if (!run) {
    if (run.error().code == Errc::kNotFound) {
      std::lock_guard lock(shard.mu);
      if (auto it = shard.entries.find(id); it != shard.entries.end()) shard.entries.erase(it);
    }
    return run.error();
  }
  std::string body;
  body.reserve(640 + run.value().id.size() * 2);
  AppendRunJson(run.value(), body);
  // An invalid stamp is kept too: it tells the next read where to look, which makes that
  // read's stamp valid.
  if (body.size() <= kMaxBody) {
    std::lock_guard lock(shard.mu);
    auto it = shard.entries.find(id);
    if (it == shard.entries.end()) {
      // Full: drop an arbitrary document. Pollers re-read theirs once; no ordering to keep.
      if (shard.entries.size() >= shard_capacity_) shard.entries.erase(shard.entries.begin());
      shard.entries.emplace(std::string(id), Entry{stamp, now, body});
    } else {
      it->second = Entry{stamp, now, body};
    }
  }
  return body;
}

}  // namespace gpuq::api
