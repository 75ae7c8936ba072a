#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/output.hpp"
#include "cli/run_commands.hpp"
#include "http/client.hpp"

namespace gpuq::cli {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

TEST(BuildSubmitBody, MergesParamsOverPayloadWithTypes) {
  SubmitOptions o;
  o.type = "render";
  o.priority = 70;
  o.payload = R"({"a": 1, "name": "old"})";
  o.params = {"name=world", "frames:=20", "opts:={\"x\":[1,2]}", "eq=a=b"};

  auto body = BuildSubmitBody(o);

  ASSERT_TRUE(body) << body.error().message;
  EXPECT_EQ(body.value(), json::parse(R"({"task_type": "render", "priority": 70,
      "payload": {"a": 1, "name": "world", "frames": 20, "opts": {"x": [1, 2]}, "eq": "a=b"}})"));
}

TEST(BuildSubmitBody, LeavesPriorityToTheServerWhenNotGiven) {
  SubmitOptions o;
  o.type = "echo";

  auto body = BuildSubmitBody(o);

  ASSERT_TRUE(body);
  EXPECT_FALSE(body.value().contains("priority"));
  EXPECT_EQ(body.value()["payload"], json::object());
}

TEST(BuildSubmitBody, RejectsBadParamsAndPayloadNamingThem) {
  SubmitOptions no_equals, bad_json, not_object;
  no_equals.type = bad_json.type = not_object.type = "echo";
  no_equals.params = {"novalue"};
  bad_json.params = {"n:={oops"};
  not_object.payload = "[1,2]";

  auto a = BuildSubmitBody(no_equals);
  auto b = BuildSubmitBody(bad_json);
  auto c = BuildSubmitBody(not_object);

  ASSERT_FALSE(a);
  EXPECT_THAT(a.error().message, HasSubstr("novalue"));
  ASSERT_FALSE(b);
  EXPECT_THAT(b.error().message, HasSubstr("n:={oops"));
  ASSERT_FALSE(c);
  EXPECT_THAT(c.error().message, HasSubstr("--payload"));
}

TEST(RenderTable, PadsColumnsToTheWidestCell) {
  auto text = RenderTable({{"ID", "STATUS"}, {"abc", "pending"}, {"a", "completed"}});

  EXPECT_EQ(text, "ID   STATUS\nabc  pending\na    completed\n");
}

TEST(ToExitCode, DistinguishesKindsOfFailure) {
  EXPECT_EQ(ToExitCode(Errc::kInvalidArgument), 2);
  EXPECT_EQ(ToExitCode(Errc::kNotFound), 3);
  EXPECT_EQ(ToExitCode(Errc::kConflict), 4);
  EXPECT_EQ(ToExitCode(Errc::kUnavailable), 5);
  EXPECT_EQ(ToExitCode(Errc::kUnauthenticated), 6);
}

TEST(ProgressLine, ShowsPercentAndMessage) {
  auto run = json::parse(R"({"id": "x", "type": "render", "status": "processing",
      "progress": {"fraction": 0.4, "message": "frame 4/10"}, "waiting_reason": null})");

  EXPECT_EQ(ProgressLine(run), "x render processing 40% frame 4/10");
}

TEST(ParseServerUrl, AcceptsUrlsAndHostPort) {
  auto a = http::ParseServerUrl("http://127.0.0.1:8000/");
  auto b = http::ParseServerUrl("localhost:9000");

  ASSERT_TRUE(a);
  EXPECT_EQ(a.value().host, "127.0.0.1");
  EXPECT_EQ(a.value().port, 8000);
  ASSERT_TRUE(b);
  EXPECT_EQ(b.value().port, 9000);
  EXPECT_FALSE(http::ParseServerUrl("https://x:1"));
  EXPECT_FALSE(http::ParseServerUrl("http://x:notaport"));
}

}  // namespace
}  // namespace gpuq::cli
