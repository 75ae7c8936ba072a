#pragma once
// What an agent reports about its GPUs in every heartbeat (store::AgentRecord::state), and
// how the API folds the reports of every agent into DESIGN.md's /gpu/status shape.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"
#include "core/service.hpp"

namespace gpuq {

using Json = nlohmann::json;  // as in core/run.hpp

struct ServiceInstanceStatus {
  ServiceState state = ServiceState::kStopped;
  int vram_mb_declared = 0;
  std::optional<int> vram_mb_measured;  // from NVML per-process use or the health reply
  int port = 0;
  std::optional<int> pid;
  std::string container;                // docker: the container name
  int active_runs = 0;
  std::string error;                    // why it is in `error` (empty otherwise)
};

struct GpuLockStatus {
  std::optional<std::string> holder;  // null when free
  long long ttl_s = -2;               // the notes' Redis TTL: seconds left, -2 when free
  long long token = 0;
};

struct GpuStatus {
  std::string host;  // "host-a"
  int index = 0;
  std::string name;
  int total_mb = 0;
  int used_mb = 0;
  int free_mb = 0;
  int reserve_mb = 0;
  int unknown_mb = 0;  // used by processes gpuq does not manage
  std::map<std::string, ServiceInstanceStatus> services;  // every service allowed on this GPU
  GpuLockStatus lock;
};

// One agent's report.
struct AgentGpuReport {
  std::string agent;
  std::string backend;  // "nvml" | "nvidia-smi" | "sim" | "none"
  bool ok = true;       // false when the tracker failed; `error` says why
  std::string error;
  std::vector<GpuStatus> gpus;
};

Json ToJson(const AgentGpuReport& report);
// kMalformed when `json` is not that shape.
Result<AgentGpuReport> AgentGpuReportFromJson(const Json& json);

// DESIGN.md's /gpu/status over every agent's report:
// {"vram": {total_mb, used_mb, free_mb} (sums), "services": {name: {"state": best state
//  anywhere}} (busy > ready > starting > stopping > error > stopped > unknown; every
//  configured service named in `service_names` appears, "stopped" when no agent has it),
//  "lock": GPU 0's lock of the first agent ({holder: null, ttl: -2} when free or no GPU),
//  "gpus": [GpuStatus as JSON, with "lock": {holder, ttl, token}], "agents": [{agent, backend,
//  ok, error}]}.
Json GpuStatusReply(const std::vector<AgentGpuReport>& reports,
                    const std::vector<std::string>& service_names);

// The best of two service states by the order above.
ServiceState BestState(ServiceState a, ServiceState b);

}  // namespace gpuq
