#include "core/service.hpp"

namespace gpuq {

const char* ToString(ServiceKind kind) {
  switch (kind) {
    case ServiceKind::kProcess:
      return "process";
    case ServiceKind::kDocker:
      return "docker";
    case ServiceKind::kExternal:
      return "external";
    case ServiceKind::kSlot:
      return "slot";
  }
  return "process";
}

std::optional<ServiceKind> ParseServiceKind(std::string_view word) {
  for (ServiceKind k : {ServiceKind::kProcess, ServiceKind::kDocker, ServiceKind::kExternal,
                        ServiceKind::kSlot}) {
    if (word == ToString(k)) return k;
  }
  return std::nullopt;
}

const char* ToString(ServiceState state) {
  switch (state) {
    case ServiceState::kUnknown:
      return "unknown";
    case ServiceState::kStopped:
      return "stopped";
    case ServiceState::kStarting:
      return "starting";
    case ServiceState::kReady:
      return "ready";
    case ServiceState::kBusy:
      return "busy";
    case ServiceState::kStopping:
      return "stopping";
    case ServiceState::kError:
      return "error";
  }
  return "unknown";
}

std::optional<ServiceState> ParseServiceState(std::string_view word) {
  for (ServiceState s :
       {ServiceState::kUnknown, ServiceState::kStopped, ServiceState::kStarting,
        ServiceState::kReady, ServiceState::kBusy, ServiceState::kStopping, ServiceState::kError}) {
    if (word == ToString(s)) return s;
  }
  return std::nullopt;
}

bool IsResident(ServiceState state) {
  switch (state) {
    case ServiceState::kStarting:
    case ServiceState::kReady:
    case ServiceState::kBusy:
    case ServiceState::kStopping:
      return true;
    case ServiceState::kUnknown:
    case ServiceState::kStopped:
    case ServiceState::kError:
      return false;
  }
  return false;
}

}  // namespace gpuq
