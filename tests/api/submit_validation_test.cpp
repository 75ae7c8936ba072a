#include "api/submit_validation.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/test_connector.hpp"

namespace gpuq::api {
namespace {

using ::testing::HasSubstr;

class SubmitValidation : public ::testing::Test {
 protected:
  std::map<std::string, TaskType> types_ = testing::TestTaskTypes();
  connectors::ConnectorRegistry connectors_ = testing::TestConnectors();
  SubmitRules rules_{types_, connectors_};

  Error Rejected(std::string_view body, std::string_view header = {}) {
    auto run = ParseSubmitTask(body, header, rules_);
    EXPECT_FALSE(run) << body;
    return run ? Error{Errc::kInternal, "accepted"} : run.error();
  }
};

TEST_F(SubmitValidation, FillsDefaultsFromTheTaskType) {
  auto run = ParseSubmitTask(R"({"task_type": "comfyui"})", "", rules_);

  ASSERT_TRUE(run) << run.error().message;
  EXPECT_EQ(run.value().type, "comfyui");
  EXPECT_EQ(run.value().priority, 60);
  EXPECT_EQ(run.value().payload, Json::object());
  EXPECT_EQ(run.value().timeout_s, 600);
  EXPECT_EQ(run.value().max_attempts, 2);
  EXPECT_FALSE(run.value().idempotency_key);
}

TEST_F(SubmitValidation, TakesEveryField) {
  auto run = ParseSubmitTask(
      R"({"task_type": "echo", "priority": -5, "payload": {"a": [1]}, "timeout_s": 30,
          "max_attempts": 1, "idempotency_key": "k1",
          "parent_run_id": "0b9a4b8e-4a52-4c39-9f5e-2f0f3c0a1b2c"})",
      "", rules_);

  ASSERT_TRUE(run) << run.error().message;
  EXPECT_EQ(run.value().priority, -5);
  EXPECT_EQ(run.value().payload, Json::parse(R"({"a": [1]})"));
  EXPECT_EQ(run.value().timeout_s, 30);
  EXPECT_EQ(run.value().max_attempts, 1);
  EXPECT_EQ(run.value().idempotency_key, "k1");
  EXPECT_EQ(run.value().parent_run_id, "0b9a4b8e-4a52-4c39-9f5e-2f0f3c0a1b2c");
}

TEST_F(SubmitValidation, TakesTheIdempotencyKeyFromTheHeader) {
  auto run = ParseSubmitTask(R"({"task_type": "echo"})", "h1", rules_);

  ASSERT_TRUE(run);
  EXPECT_EQ(run.value().idempotency_key, "h1");
}

TEST_F(SubmitValidation, MalformedJsonIsMalformed) {
  for (std::string_view body : {"", "{", "{\"task_type\": }", "nope", "{} x"}) {
    EXPECT_EQ(Rejected(body).code, Errc::kMalformed) << body;
  }
}

TEST_F(SubmitValidation, EachInvalidFieldIsInvalidArgument) {
  for (std::string_view body : {
           R"([])",
           R"("echo")",
           R"({})",
           R"({"task_type": 5})",
           R"({"task_type": ""})",
           R"({"task_type": "echo", "priority": "high"})",
           R"({"task_type": "echo", "priority": 1.5})",
           R"({"task_type": "echo", "priority": true})",
           R"({"task_type": "echo", "priority": 99999999999})",
           R"({"task_type": "echo", "payload": []})",
           R"({"task_type": "echo", "payload": "x"})",
           R"({"task_type": "echo", "timeout_s": 0})",
           R"({"task_type": "echo", "max_attempts": "3"})",
           R"({"task_type": "echo", "idempotency_key": 7})",
           R"({"task_type": "echo", "idempotency_key": ""})",
           R"({"task_type": "echo", "parent_run_id": "nope"})",
           R"({"task_type": "echo", "payload": {"bad": true}})",
       }) {
    EXPECT_EQ(Rejected(body).code, Errc::kInvalidArgument) << body;
  }
}

TEST_F(SubmitValidation, UnknownTypeNamesTheKnownOnes) {
  Error error = Rejected(R"({"task_type": "nope"})");

  EXPECT_EQ(error.code, Errc::kInvalidArgument);
  EXPECT_THAT(error.message, HasSubstr("nope"));
  EXPECT_THAT(error.message, HasSubstr("comfyui, echo"));
}

TEST_F(SubmitValidation, ConnectorValidateFailureIsQuoted) {
  Error error = Rejected(R"({"task_type": "echo", "payload": {"bad": true}})");

  EXPECT_THAT(error.message, HasSubstr("payload says bad"));
}

TEST_F(SubmitValidation, HeaderAndFieldMustAgree) {
  EXPECT_EQ(Rejected(R"({"task_type": "echo", "idempotency_key": "a"})", "b").code,
            Errc::kInvalidArgument);
  EXPECT_TRUE(ParseSubmitTask(R"({"task_type": "echo", "idempotency_key": "a"})", "a", rules_));
}

TEST_F(SubmitValidation, AliasMapsComfyAndParams) {
  auto run = ParseTaskSubmit(R"({"type": "comfy", "params": {"template": "flux"}})", "", rules_);

  ASSERT_TRUE(run) << run.error().message;
  EXPECT_EQ(run.value().type, "comfyui");
  EXPECT_EQ(run.value().payload, Json::parse(R"({"template": "flux"})"));
  EXPECT_EQ(run.value().priority, 60);
}

TEST_F(SubmitValidation, AliasRejectsLikeSubmit) {
  EXPECT_EQ(ParseTaskSubmit("{", "", rules_).error().code, Errc::kMalformed);
  EXPECT_EQ(ParseTaskSubmit(R"({"params": {}})", "", rules_).error().code,
            Errc::kInvalidArgument);
  EXPECT_EQ(ParseTaskSubmit(R"({"type": "echo", "params": 3})", "", rules_).error().code,
            Errc::kInvalidArgument);
  EXPECT_EQ(ParseTaskSubmit(R"({"type": "echo", "priority": "x"})", "", rules_).error().code,
            Errc::kInvalidArgument);
}

}  // namespace
}  // namespace gpuq::api
