#include "api/auth.hpp"

#include <gtest/gtest.h>

namespace gpuq::api {
namespace {

TEST(Authorized, EverythingPassesWithoutAToken) { EXPECT_TRUE(Authorized("", "", "")); }

TEST(Authorized, AcceptsBearerToken) {
  EXPECT_TRUE(Authorized("s3cret", "Bearer s3cret", ""));
  EXPECT_TRUE(Authorized("s3cret", "bearer  s3cret ", ""));
}

TEST(Authorized, RefusesMissingOrWrongToken) {
  EXPECT_FALSE(Authorized("s3cret", "", ""));
  EXPECT_FALSE(Authorized("s3cret", "Bearer s3cre", ""));
  EXPECT_FALSE(Authorized("s3cret", "Bearer s3cretx", ""));
  EXPECT_FALSE(Authorized("s3cret", "Basic s3cret", ""));
  EXPECT_FALSE(Authorized("s3cret", "s3cret", ""));
  EXPECT_FALSE(Authorized("s3cret", "Bearer ", ""));
}

TEST(Authorized, AcceptsTheCookie) {
  EXPECT_TRUE(Authorized("s3cret", "", "gpuq_token=s3cret"));
  EXPECT_TRUE(Authorized("s3cret", "", "a=1; gpuq_token=s3cret; b=2"));
  EXPECT_TRUE(Authorized("s3cret", "", "gpuq_token=\"s3cret\""));
  EXPECT_FALSE(Authorized("s3cret", "", "gpuq_token=nope"));
  EXPECT_FALSE(Authorized("s3cret", "", "other_token=s3cret"));
}

TEST(ConstantTimeEquals, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

}  // namespace
}  // namespace gpuq::api
