#include "connectors/echo/echo_connector.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "connectors/run_fixture.hpp"

namespace gpuq::connectors {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

TaskType EchoType() { return MakeType("echo", "echo"); }

TEST(EchoConnector, ResultIsThePayload) {
  RunFixture fixture(Json{{"text", "hi"}, {"n", 3}}, EchoType());
  EchoConnector echo;

  auto outcome = fixture.Execute(echo);

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome.value().result, (Json{{"text", "hi"}, {"n", 3}}));
  EXPECT_TRUE(outcome.value().files.empty());
}

TEST(EchoConnector, NeedsNoRunDirectory) {
  EchoConnector echo;

  EXPECT_FALSE(echo.UsesRunDir());
}

TEST(EchoConnector, FailsWithTheRequestedMessageNotRetryable) {
  RunFixture fixture(Json{{"fail", "boom"}}, EchoType());
  EchoConnector echo;

  auto outcome = fixture.Execute(echo);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(outcome.error().message, "boom");
}

TEST(EchoConnector, ReportsProgressSteps) {
  RunFixture fixture(Json{{"progress", 4}, {"sleep_ms", 4}}, EchoType());
  EchoConnector echo;

  ASSERT_TRUE(fixture.Execute(echo));

  auto progress = fixture.progress();
  ASSERT_THAT(progress, SizeIs(4));
  EXPECT_DOUBLE_EQ(*progress.back().fraction, 1.0);
  EXPECT_EQ(progress.back().message, "step 4/4");
}

TEST(EchoConnector, SleepReturnsEarlyOnStop) {
  RunFixture fixture(Json{{"sleep_ms", 600'000}}, EchoType());
  EchoConnector echo;
  std::thread stopper([&] { fixture.stop().request_stop(); });

  auto outcome = fixture.Execute(echo);
  stopper.join();

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
}

TEST(EchoConnector, ValidateAcceptsAnyObject) {
  EchoConnector echo;

  EXPECT_TRUE(echo.Validate(EchoType(), Json::object()));
  EXPECT_TRUE(echo.Validate(EchoType(), Json{{"anything", {1, 2}}, {"sleep_ms", 5}}));
}

TEST(EchoConnector, ValidateRejectsMistypedKeys) {
  EchoConnector echo;

  for (const Json& payload : {Json::array(), Json("text"), Json{{"sleep_ms", "5"}},
                              Json{{"sleep_ms", -1}}, Json{{"progress", 0.5}}, Json{{"fail", 3}}}) {
    auto valid = echo.Validate(EchoType(), payload);
    ASSERT_FALSE(valid) << payload.dump();
    EXPECT_EQ(valid.error().code, Errc::kInvalidArgument);
  }
}

}  // namespace
}  // namespace gpuq::connectors
