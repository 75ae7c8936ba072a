#include "connectors/echo/echo_connector.hpp"

#include <fmt/format.h>

#include <condition_variable>
#include <mutex>

namespace gpuq::connectors {

namespace {

bool IsCount(const Json& value) { return value.is_number_integer() && value.get<long long>() >= 0; }

// Sleeps up to `duration`; false when `stop` was requested first.
bool SleepUnlessStopped(std::stop_token stop, Millis duration) {
  std::mutex mutex;
  std::condition_variable_any cv;
  std::unique_lock lock(mutex);
  return !cv.wait_for(lock, stop, duration, [] { return false; });
}

}  // namespace

Result<void> EchoConnector::Validate(const TaskType& type, const Json& payload) const {
  if (!payload.is_object()) {
    return Error{Errc::kInvalidArgument, "echo payload must be a JSON object"};
  }
  if (payload.contains("sleep_ms") && !IsCount(payload["sleep_ms"])) {
    return Error{Errc::kInvalidArgument, "payload.sleep_ms must be a non-negative integer"};
  }
  if (payload.contains("progress") && !IsCount(payload["progress"])) {
    return Error{Errc::kInvalidArgument, "payload.progress must be a non-negative integer"};
  }
  if (payload.contains("fail") && !payload["fail"].is_string()) {
    return Error{Errc::kInvalidArgument, "payload.fail must be a string"};
  }
  return Ok();
}

Result<Outcome> EchoConnector::Execute(RunContext& ctx) {
  const Json& payload = ctx.run.payload;

  long long sleep_ms = 0;
  long long steps = 0;
  if (payload.is_object()) {
    if (auto it = payload.find("sleep_ms"); it != payload.end() && IsCount(*it)) {
      sleep_ms = it->get<long long>();
    }
    if (auto it = payload.find("progress"); it != payload.end() && IsCount(*it)) {
      steps = it->get<long long>();
    }
  }
  long long slices = std::max(steps, 1LL);
  for (long long i = 1; i <= slices; ++i) {
    if (sleep_ms > 0 && !SleepUnlessStopped(ctx.stop, Millis(sleep_ms / slices))) {
      return Error{Errc::kUnavailable, "echo stopped"};
    }
    if (steps > 0 && ctx.report_progress) {
      ctx.report_progress(Progress{static_cast<double>(i) / static_cast<double>(steps),
                                   fmt::format("step {}/{}", i, steps)});
    }
  }
  if (ctx.stop.stop_requested()) return Error{Errc::kUnavailable, "echo stopped"};

  if (payload.is_object()) {
    if (auto it = payload.find("fail"); it != payload.end() && it->is_string()) {
      return Error{Errc::kInvalidArgument, it->get<std::string>()};
    }
  }
  return Outcome{.result = payload, .files = {}};
}

}  // namespace gpuq::connectors
