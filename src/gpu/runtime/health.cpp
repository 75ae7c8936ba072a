#include "gpu/runtime/health.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>

#include "http/client.hpp"

namespace gpuq::gpu {

namespace {

using SteadyClock = std::chrono::steady_clock;

// Sleeps up to `duration`; false when `stop` was requested first (so a stop is prompt).
bool SleepUnlessStopped(std::stop_token stop, Millis duration) {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::unique_lock lock(mutex);
  return !cv.wait_for(lock, stop, duration, [] { return false; });
}

}  // namespace

Result<HealthReply> CheckHealth(const std::string& url, Millis timeout) {
  BOOST_OUTCOME_TRY(auto parsed, http::ParseHttpUrl(url));
  http::Client client(parsed.endpoint, std::max(timeout, Millis(1)));
  BOOST_OUTCOME_TRY(auto response, client.Get(parsed.target));
  HealthReply reply;
  reply.status = response.status;
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_object()) {
    if (auto it = body.find("vram_mb"); it != body.end() && it->is_number()) {
      reply.vram_mb = static_cast<int>(it->get<double>());
    }
  }
  return reply;
}

Result<HealthReply> WaitHealthy(const std::string& url, const WaitHealthyOptions& options,
                                std::stop_token stop, const std::function<bool()>& alive) {
  // A bad URL never gets better: fail now rather than at the deadline.
  BOOST_OUTCOME_TRY(http::ParseHttpUrl(url));
  auto deadline = SteadyClock::now() + options.deadline;
  Millis interval = options.first_interval;
  std::string last = "no check yet";
  while (true) {
    if (stop.stop_requested()) return Error{Errc::kUnavailable, "stopped"};
    if (alive && !alive()) {
      return Error{Errc::kUnavailable, fmt::format("exited before it was healthy ({})", last)};
    }
    auto left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
    if (left <= Millis(0)) {
      return Error{Errc::kTimeout, fmt::format("not healthy after {} ms at {}: {}",
                                               options.deadline.count(), url, last)};
    }
    auto check = CheckHealth(url, std::min(options.request_timeout, left));
    if (check && check.value().status == 200) return check.value();
    last = check ? fmt::format("status {}", check.value().status) : check.error().message;

    left = std::chrono::duration_cast<Millis>(deadline - SteadyClock::now());
    if (left > Millis(0) && !SleepUnlessStopped(stop, std::min(interval, left))) {
      return Error{Errc::kUnavailable, "stopped"};
    }
    interval = std::min(interval * 2, options.max_interval);
  }
}

}  // namespace gpuq::gpu
