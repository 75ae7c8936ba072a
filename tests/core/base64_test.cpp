#include "core/base64.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace gpuq {
namespace {

using ::testing::HasSubstr;

TEST(Base64, EncodesTheRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
}

TEST(Base64, DecodesTheRfc4648Vectors) {
  EXPECT_EQ(Base64Decode("").value(), "");
  EXPECT_EQ(Base64Decode("Zg==").value(), "f");
  EXPECT_EQ(Base64Decode("Zm8=").value(), "fo");
  EXPECT_EQ(Base64Decode("Zm9v").value(), "foo");
  EXPECT_EQ(Base64Decode("Zm9vYg==").value(), "foob");
  EXPECT_EQ(Base64Decode("Zm9vYmE=").value(), "fooba");
  EXPECT_EQ(Base64Decode("Zm9vYmFy").value(), "foobar");
}

TEST(Base64, RoundTripsEveryByteValue) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  for (size_t len = 0; len <= bytes.size(); len += 7) {
    auto piece = bytes.substr(0, len);

    auto decoded = Base64Decode(Base64Encode(piece));

    ASSERT_TRUE(decoded) << decoded.error().message;
    EXPECT_EQ(decoded.value(), piece);
  }
}

TEST(Base64, UsesPlusAndSlash) {
  EXPECT_EQ(Base64Encode("\xfb\xff"), "+/8=");
  EXPECT_EQ(Base64Decode("+/8=").value(), "\xfb\xff");
}

TEST(Base64, RejectsCharactersOutsideTheAlphabet) {
  for (std::string bad : {"Zm9v!mFy", "Zm9v\nYmFy", "Zm9-", "Zm9_", "Zm 9"}) {
    auto decoded = Base64Decode(bad);

    ASSERT_FALSE(decoded) << bad;
    EXPECT_EQ(decoded.error().code, Errc::kInvalidArgument);
  }
  EXPECT_THAT(Base64Decode("Zm9v!mFy").error().message, HasSubstr("'!' at offset 4"));
}

TEST(Base64, RejectsADataUrlPrefix) {
  auto decoded = Base64Decode("data:image/png;base64,Zm9v");

  ASSERT_FALSE(decoded);
  EXPECT_EQ(decoded.error().code, Errc::kInvalidArgument);
}

TEST(Base64, RejectsBadLengthAndMisplacedPadding) {
  for (std::string bad : {"Zm9", "Zm9vY", "Z===", "====", "Zm=v", "=m9v", "Zh=="}) {
    auto decoded = Base64Decode(bad);

    ASSERT_FALSE(decoded) << bad;
    EXPECT_EQ(decoded.error().code, Errc::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace gpuq
