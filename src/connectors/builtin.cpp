// The one place that knows every connector: BuiltinConnectors.
#include "connectors/a1111/a1111_connector.hpp"
#include "connectors/comfyui/comfyui_connector.hpp"
#include "connectors/command/command_connector.hpp"
#include "connectors/connector.hpp"
#include "connectors/container/container_connector.hpp"
#include "connectors/cosyvoice/cosyvoice_connector.hpp"
#include "connectors/echo/echo_connector.hpp"
#include "connectors/http/http_connector.hpp"
#include "connectors/ollama/ollama_connector.hpp"
#include "connectors/remotion/remotion_connector.hpp"

namespace gpuq::connectors {

ConnectorRegistry BuiltinConnectors(const ConnectorOptions& options) {
  ConnectorRegistry registry;
  registry.Add("echo", std::make_unique<EchoConnector>());
  registry.Add("command", std::make_unique<CommandConnector>());
  registry.Add("http", std::make_unique<HttpConnector>());
  registry.Add("remotion_render", std::make_unique<RemotionConnector>());
  registry.Add("comfyui", std::make_unique<ComfyUiConnector>(options));
  registry.Add("ollama", std::make_unique<OllamaConnector>());
  registry.Add("a1111", std::make_unique<A1111Connector>(options));
  registry.Add("container", std::make_unique<ContainerConnector>(options));
  registry.Add("cosyvoice", std::make_unique<CosyVoiceConnector>(options));
  return registry;
}

}  // namespace gpuq::connectors
