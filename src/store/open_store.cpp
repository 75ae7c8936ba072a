#include <fmt/format.h>

#include "store/sqlite/sqlite_store.hpp"
#include "store/store.hpp"

namespace gpuq::store {

Result<std::unique_ptr<Store>> OpenStore(std::string_view url, Clock& clock) {
  constexpr std::string_view kSqlite = "sqlite://";
  constexpr std::string_view kRedis = "redis://";
  if (url.empty()) return Error{Errc::kInvalidArgument, "store URL is empty"};
  std::string_view path = url;
  if (url.starts_with(kRedis)) {
    return Error{Errc::kInvalidArgument, "redis store not built yet"};
  }
  if (url.starts_with(kSqlite)) {
    // "sqlite:///abs/path.db" keeps the leading slash; "sqlite://rel/path.db" is relative.
    path = url.substr(kSqlite.size());
  } else if (url.find("://") != std::string_view::npos) {
    return Error{Errc::kInvalidArgument,
                 fmt::format("unsupported store URL '{}': use sqlite:///path.db", url)};
  }
  if (path.empty()) {
    return Error{Errc::kInvalidArgument, fmt::format("store URL '{}' names no file", url)};
  }
  auto store = SqliteStore::Open(std::filesystem::path(path), clock);
  if (!store) return store.error();
  return std::unique_ptr<Store>(std::move(store).value());
}

}  // namespace gpuq::store
