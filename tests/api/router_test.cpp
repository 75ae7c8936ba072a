#include "api/router.hpp"

#include <gtest/gtest.h>

namespace gpuq::api {
namespace {

namespace asio = boost::asio;

asio::awaitable<Response> A(ApiContext&, const Request&, PathParams) { co_return Response{}; }
asio::awaitable<Response> B(ApiContext&, const Request&, PathParams) { co_return Response{}; }
asio::awaitable<Response> C(ApiContext&, const Request&, PathParams) { co_return Response{}; }

Router TestRouter() {
  Router router;
  router.Add(Method::kGet, "/runs", &A);
  router.Add(Method::kGet, "/runs/{id}", &B);
  router.Add(Method::kPost, "/runs/{id}/cancel", &C);
  router.Add(Method::kGet, "/runs/{id}/files/{path*}", &A);
  router.Add(Method::kPost, "/things", &A);
  router.Add(Method::kGet, "/things", &B);
  return router;
}

TEST(Router, MatchesLiteralPath) {
  auto match = TestRouter().Find(Method::kGet, "/runs");

  EXPECT_EQ(match.handler, &A);
  EXPECT_EQ(match.params.size, 0);
}

TEST(Router, CapturesOneSegment) {
  auto match = TestRouter().Find(Method::kGet, "/runs/abc");

  EXPECT_EQ(match.handler, &B);
  ASSERT_EQ(match.params.size, 1);
  EXPECT_EQ(match.params[0], "abc");
}

TEST(Router, CapturesTheRestOfThePath) {
  auto match = TestRouter().Find(Method::kGet, "/runs/abc/files/sub/dir/x.png");

  EXPECT_EQ(match.handler, &A);
  ASSERT_EQ(match.params.size, 2);
  EXPECT_EQ(match.params[0], "abc");
  EXPECT_EQ(match.params[1], "sub/dir/x.png");
}

TEST(Router, RestNeedsAtLeastOneCharacter) {
  EXPECT_FALSE(TestRouter().Find(Method::kGet, "/runs/abc/files/").path_known);
  EXPECT_FALSE(TestRouter().Find(Method::kGet, "/runs/abc/files").path_known);
}

TEST(Router, UnknownPathIsNotKnown) {
  Router router = TestRouter();

  for (const char* path : {"/", "/nope", "/runs/", "/runs/a/b", "/runs/a/cancel/x", "runs", ""}) {
    auto match = router.Find(Method::kGet, path);
    EXPECT_EQ(match.handler, nullptr) << path;
    EXPECT_FALSE(match.path_known) << path;
  }
}

TEST(Router, WrongMethodIsKnownPathWithAllow) {
  Router router = TestRouter();  // a match's `allow` points into its router

  auto match = router.Find(Method::kGet, "/runs/abc/cancel");

  EXPECT_EQ(match.handler, nullptr);
  EXPECT_TRUE(match.path_known);
  EXPECT_EQ(match.allow, "POST");
}

TEST(Router, AllowListsEveryMethodOfAPath) {
  Router router = TestRouter();

  auto match = router.Find(Method::kOther, "/things");

  EXPECT_TRUE(match.path_known);
  EXPECT_EQ(match.allow, "POST, GET");
  EXPECT_EQ(router.Find(Method::kGet, "/things").handler, &B);
  EXPECT_EQ(router.Find(Method::kPost, "/things").handler, &A);
}

TEST(QueryParam, FindsAndDecodesValues) {
  std::string_view query = "status=pending&type=a%20b&x=1+2&empty=&flag";

  EXPECT_EQ(QueryParam(query, "status"), "pending");
  EXPECT_EQ(QueryParam(query, "type"), "a b");
  EXPECT_EQ(QueryParam(query, "x"), "1 2");
  EXPECT_EQ(QueryParam(query, "empty"), "");
  EXPECT_EQ(QueryParam(query, "flag"), "");
  EXPECT_EQ(QueryParam(query, "missing"), std::nullopt);
  EXPECT_EQ(QueryParam("", "status"), std::nullopt);
}

TEST(PercentDecode, RejectsBadEscapesAndNul) {
  EXPECT_EQ(PercentDecode("a%2Fb", false), "a/b");
  EXPECT_EQ(PercentDecode("a+b", false), "a+b");
  EXPECT_EQ(PercentDecode("%", false), std::nullopt);
  EXPECT_EQ(PercentDecode("%4", false), std::nullopt);
  EXPECT_EQ(PercentDecode("%zz", false), std::nullopt);
  EXPECT_EQ(PercentDecode("a%00b", false), std::nullopt);
}

}  // namespace
}  // namespace gpuq::api
