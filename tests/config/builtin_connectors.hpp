#pragma once
// Finalize as `gpuq serve` and `gpuq check-config` do it: with every built-in connector and
// its check of the task types' settings.
#include "config/config.hpp"
#include "connectors/connector.hpp"

namespace gpuq::config {

inline void FinalizeWithBuiltins(Config& config, std::vector<Problem>* problems) {
  auto registry = connectors::BuiltinConnectors();
  Finalize(config, registry.Names(), problems, [&registry](const TaskType& type) {
    std::vector<Problem> found;
    if (auto* connector = registry.Find(type.connector)) {
      for (auto& p : connector->CheckSettings(type)) found.push_back({p.key, p.message});
    }
    return found;
  });
}

}  // namespace gpuq::config
