// The one place that knows every connector: BuiltinConnectors.
#include "connectors/command/command_connector.hpp"
#include "connectors/connector.hpp"
#include "connectors/echo/echo_connector.hpp"
#include "connectors/http/http_connector.hpp"

namespace gpuq::connectors {

ConnectorRegistry BuiltinConnectors(const ConnectorOptions& options) {
  (void)options;
  ConnectorRegistry registry;
  registry.Add("echo", std::make_unique<EchoConnector>());
  registry.Add("command", std::make_unique<CommandConnector>());
  registry.Add("http", std::make_unique<HttpConnector>());
  return registry;
}

}  // namespace gpuq::connectors
