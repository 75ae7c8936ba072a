#include "connectors/connector.hpp"

namespace gpuq::connectors {

void ConnectorRegistry::Add(std::string name, std::unique_ptr<Connector> connector) {
  connectors_[std::move(name)] = std::move(connector);
}

Connector* ConnectorRegistry::Find(std::string_view name) const {
  auto it = connectors_.find(name);
  return it == connectors_.end() ? nullptr : it->second.get();
}

std::vector<std::string> ConnectorRegistry::Names() const {
  std::vector<std::string> names;
  names.reserve(connectors_.size());
  for (const auto& [name, connector] : connectors_) names.push_back(name);
  return names;
}

std::vector<SettingProblem> Connector::CheckSettings(const TaskType& type) const {
  std::vector<SettingProblem> problems;
  for (const auto& [key, value] : type.settings.items()) {
    problems.push_back({key, "unknown setting"});
  }
  return problems;
}

}  // namespace gpuq::connectors
