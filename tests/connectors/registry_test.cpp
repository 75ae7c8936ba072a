#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "connectors/connector.hpp"

namespace gpuq::connectors {
namespace {

using ::testing::ElementsAre;

TEST(ConnectorRegistry, BuiltinsHaveEchoCommandAndHttp) {
  ConnectorRegistry registry = BuiltinConnectors();

  EXPECT_THAT(registry.Names(), ElementsAre("command", "echo", "http"));
  EXPECT_NE(registry.Find("echo"), nullptr);
  EXPECT_NE(registry.Find("command"), nullptr);
  EXPECT_NE(registry.Find("http"), nullptr);
  EXPECT_EQ(registry.Find("comfyui"), nullptr);
}

}  // namespace
}  // namespace gpuq::connectors
