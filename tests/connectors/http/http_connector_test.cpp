#include "connectors/http/http_connector.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "connectors/fake_service.hpp"
#include "connectors/run_fixture.hpp"
#include "http/client.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::connectors {
namespace {

using testing::ChildProcess;
using testing::FreePort;
using ::testing::HasSubstr;
using testing::ProcessAlive;

TaskType WorkType(std::string endpoint = "/work") {
  TaskType type = MakeType("fake_work", "http");
  type.service = "fake";
  type.endpoint = std::move(endpoint);
  return type;
}

Result<Outcome> Execute(RunFixture& fixture, const std::string& service_url) {
  HttpConnector connector;
  RunContext ctx = fixture.Context();
  ctx.service_url = service_url;
  ctx.gpu = 0;
  return connector.Execute(ctx);
}

TEST(HttpConnector, PostsThePayloadAndReturnsTheServiceReply) {
  FakeService fake;
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Json{{"prompt", "a cat"}, {"sleep_ms", 0}}, WorkType());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  const Json& result = outcome.value().result;
  EXPECT_EQ(result["service"], "fake");
  EXPECT_EQ(result["gpu"], "0");
  EXPECT_EQ(result["input"]["prompt"], "a cat");
  EXPECT_THAT(fixture.Log(), HasSubstr("status 200"));
}

TEST(HttpConnector, FillsTheEndpointFromThePayload) {
  FakeService fake;
  ASSERT_TRUE(fake.healthy());
  RunFixture fixture(Json{{"route", "work"}}, WorkType("/{{route}}"));

  auto outcome = Execute(fixture, fake.url() + "/");

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome.value().result["input"]["route"], "work");
}

TEST(HttpConnector, ServiceErrorFailsTheRunWithItsMessage) {
  FakeService fake;
  ASSERT_TRUE(fake.healthy());
  RunFixture fixture(Json{{"fail", "out of memory"}}, WorkType());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("500"));
  EXPECT_THAT(outcome.error().message, HasSubstr("out of memory"));
}

TEST(HttpConnector, UnknownEndpointFailsWithTheStatus) {
  FakeService fake;
  ASSERT_TRUE(fake.healthy());
  RunFixture fixture(Json::object(), WorkType("/nowhere"));

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message, HasSubstr("service replied 404"));
}

TEST(HttpConnector, RefusedConnectionIsRetried) {
  RunFixture fixture(Json::object(), WorkType());

  auto outcome = Execute(fixture, fmt::format("http://127.0.0.1:{}", FreePort()));

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
}

TEST(HttpConnector, NeedsAServiceUrl) {
  RunFixture fixture(Json::object(), WorkType());

  auto outcome = Execute(fixture, "");

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
}

TEST(HttpConnector, StopDuringSlowWorkReturnsPromptly) {
  FakeService fake;
  ASSERT_TRUE(fake.healthy());
  RunFixture fixture(Json{{"sleep_ms", 60'000}}, WorkType());
  std::jthread canceller([&] {
    // Cancel once the service has the request in hand.
    testing::WaitUntil([&] { return fake.Output().find("work started") != std::string::npos; });
    fixture.stop().request_stop();
  });
  auto start = std::chrono::steady_clock::now();

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome.error().message, HasSubstr("stopped"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(HttpConnector, StopBeforeTheRequestSendsNothing) {
  RunFixture fixture(Json::object(), WorkType());
  fixture.stop().request_stop();

  auto outcome = Execute(fixture, "http://127.0.0.1:9");

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message, HasSubstr("stopped"));
}

TEST(HttpConnector, ValidateTakesAnyObjectWhoseEndpointFills) {
  HttpConnector connector;

  EXPECT_TRUE(connector.Validate(WorkType(), Json{{"anything", 1}}));
  EXPECT_FALSE(connector.Validate(WorkType(), Json::array()));
  EXPECT_FALSE(connector.Validate(WorkType("/{{missing}}"), Json::object()));
}

}  // namespace
}  // namespace gpuq::connectors
