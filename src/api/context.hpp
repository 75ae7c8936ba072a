#pragma once
// What every route handler reads: the server's dependencies and shared resources.
#include <atomic>
#include <filesystem>
#include <optional>

#include <boost/asio/thread_pool.hpp>

#include "api/run_cache.hpp"
#include "config/config.hpp"
#include "connectors/connector.hpp"
#include "core/clock.hpp"
#include "store/store.hpp"

namespace gpuq::api {

struct ApiContext {
  store::Store& store;  // Get() runs on io threads; writes and lists go to `blocking`
  const config::Config& config;
  const connectors::ConnectorRegistry& connectors;
  boost::asio::thread_pool& blocking;  // for calls that wait (group commit, scans)
  const std::atomic<bool>& stopping;   // set by Server::Stop()
  std::filesystem::path data_dir;      // config.data_dir made absolute
  const Clock& clock;                  // the store's clock (lease TTLs, command deadlines)
  std::optional<Millis> gpu_command_timeout;  // tests only: overrides every GPU command's wait
  RunCache& runs;  // run documents for the GET routes that clients poll
};

}  // namespace gpuq::api
