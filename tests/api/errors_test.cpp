#include "api/errors.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace gpuq::api {
namespace {

TEST(ToHttpStatus, MapsEveryErrc) {
  EXPECT_EQ(ToHttpStatus(Errc::kInvalidArgument), 422);
  EXPECT_EQ(ToHttpStatus(Errc::kMalformed), 400);
  EXPECT_EQ(ToHttpStatus(Errc::kNotFound), 404);
  EXPECT_EQ(ToHttpStatus(Errc::kConflict), 409);
  EXPECT_EQ(ToHttpStatus(Errc::kResourceExhausted), 413);
  EXPECT_EQ(ToHttpStatus(Errc::kUnauthenticated), 401);
  EXPECT_EQ(ToHttpStatus(Errc::kUnavailable), 503);
  EXPECT_EQ(ToHttpStatus(Errc::kTimeout), 504);
  EXPECT_EQ(ToHttpStatus(Errc::kInternal), 500);
}

TEST(ToHttpResponse, HasErrorAndDetail) {
  Response response = ToHttpResponse(Error{Errc::kMalformed, "bad \xff bytes"});

  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.content_type, "application/json");
  auto body = nlohmann::json::parse(response.body);
  EXPECT_EQ(body["error"], "malformed_json");
  EXPECT_TRUE(body["detail"].is_string());
  EXPECT_EQ(body.size(), 2u);
}

TEST(ToHttpResponse, TakesASpecificCode) {
  Response response = ToHttpResponse(Error{Errc::kInvalidArgument, "x"}, "path_outside_run_dir");

  EXPECT_EQ(response.status, 422);
  EXPECT_EQ(nlohmann::json::parse(response.body)["error"], "path_outside_run_dir");
}

}  // namespace
}  // namespace gpuq::api
