// The demo's `container` task type end to end against a real Docker Engine API (podman,
// started by the docker_engine CTest fixture): `gpuq serve --config examples/demo.toml` with
// DOCKER_HOST pointing at it, `gpuq submit container --wait`, the container's file fetched.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "e2e/demo.hpp"
#include "http/docker_client.hpp"

namespace gpuq::e2e {
namespace {

using ::testing::HasSubstr;

TEST(DemoDockerEndToEnd, ContainerTaskRunsOnTheGpuSlotAndLeavesNoContainer) {
  const char* socket = std::getenv("GPUQ_DOCKER_SOCKET");
  if (socket == nullptr || *socket == '\0') GTEST_SKIP() << "no Docker engine (GPUQ_DOCKER_SOCKET)";
  // The engine has no network: give the test image the name the demo pulls when missing.
  http::DockerClient docker(http::DockerOptions{.socket = socket});
  auto tagged = docker.Tag("gpuq-test:latest", "docker.io/library/busybox", "latest");
  ASSERT_TRUE(tagged) << tagged.error().message;
  Cluster c;
  auto server =
      c.StartServerWith(DemoConfig(c.dir()), {}, {{"DOCKER_HOST", std::string("unix://") + socket}});

  auto run = SubmitAndFetch(c, "container", {"--param", "message=hello-from-a-container"},
                            {"message.txt"});

  EXPECT_EQ(run["result"]["exit_code"], 0);
  std::ifstream message(c.dir() / "fetched-container" / "message.txt");
  std::string text;
  std::getline(message, text);
  EXPECT_EQ(text, "hello-from-a-container");
  auto log = c.Cli({"logs", run.value("id", "")});
  EXPECT_THAT(log.output, HasSubstr("hello-from-a-container"));
  auto left = docker.List({"gpuq.run=" + run.value("id", "")});
  ASSERT_TRUE(left);
  EXPECT_TRUE(left.value().empty());
}

}  // namespace
}  // namespace gpuq::e2e
