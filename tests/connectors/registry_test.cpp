#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "connectors/connector.hpp"

namespace gpuq::connectors {
namespace {

using ::testing::ElementsAre;

TEST(ConnectorRegistry, BuiltinsHaveEveryConnector) {
  ConnectorRegistry registry = BuiltinConnectors();

  EXPECT_THAT(registry.Names(),
              ElementsAre("a1111", "comfyui", "command", "container", "cosyvoice", "echo", "http",
                          "ollama", "remotion_render"));
  EXPECT_NE(registry.Find("echo"), nullptr);
  EXPECT_NE(registry.Find("command"), nullptr);
  EXPECT_NE(registry.Find("http"), nullptr);
  EXPECT_NE(registry.Find("comfyui"), nullptr);
  EXPECT_EQ(registry.Find("comfy"), nullptr);  // an alias of task types, not a connector
}

}  // namespace
}  // namespace gpuq::connectors
