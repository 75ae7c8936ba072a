#pragma once
// Health checks: GET the service's health URL; 200 means healthy. A JSON reply may carry
// the instance's VRAM use as a top-level "vram_mb" number (the fake services do; the sim
// ledger charges it).
#include <functional>
#include <optional>
#include <stop_token>
#include <string>

#include "core/clock.hpp"
#include "core/result.hpp"

namespace gpuq::gpu {

struct HealthReply {
  int status = 0;               // HTTP status
  std::optional<int> vram_mb;   // from the JSON body, when present
};

// One check with a per-request deadline. kUnavailable (refused, reset), kTimeout, or the reply.
Result<HealthReply> CheckHealth(const std::string& url, Millis timeout);

struct WaitHealthyOptions {
  Millis deadline{60'000};      // from now
  Millis first_interval{20};    // polls start fast and back off ...
  Millis max_interval{250};     // ... to this
  Millis request_timeout{2'000};
};

// Polls until a 200 (returns that reply), the deadline (kTimeout, with the last failure in the
// message), `stop` (kUnavailable "stopped"), or `alive()` turning false (kUnavailable: "exited
// before it was healthy", so a crashed start is noticed at once, not at the deadline).
Result<HealthReply> WaitHealthy(const std::string& url, const WaitHealthyOptions& options,
                                std::stop_token stop, const std::function<bool()>& alive);

}  // namespace gpuq::gpu
