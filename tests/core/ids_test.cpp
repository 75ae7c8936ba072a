#include "core/ids.hpp"

#include <gtest/gtest.h>

#include <set>

namespace gpuq {
namespace {

TEST(Ids, NewUuidIsCanonicalVersion4) {
  for (int i = 0; i < 100; ++i) {
    std::string id = NewUuid();

    ASSERT_EQ(id.size(), 36u);
    EXPECT_TRUE(IsUuid(id)) << id;
    EXPECT_EQ(id[14], '4') << id;
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;
    for (char c : id) EXPECT_FALSE(c >= 'A' && c <= 'F') << id;
  }
}

TEST(Ids, NewUuidDoesNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 10'000; ++i) seen.insert(NewUuid());

  EXPECT_EQ(seen.size(), 10'000u);
}

TEST(Ids, IsUuidAcceptsOnlyTheCanonicalForm) {
  EXPECT_TRUE(IsUuid("8c1e7a52-9a4b-4c1e-9a52-8c1e7a529a4b"));
  EXPECT_TRUE(IsUuid("8C1E7A52-9A4B-4C1E-9A52-8C1E7A529A4B"));
  EXPECT_FALSE(IsUuid(""));
  EXPECT_FALSE(IsUuid("8c1e7a52-9a4b-4c1e-9a52-8c1e7a529a4"));
  EXPECT_FALSE(IsUuid("8c1e7a52-9a4b-4c1e-9a52-8c1e7a529a4bb"));
  EXPECT_FALSE(IsUuid("8c1e7a529a4b-4c1e-9a52-8c1e7a529a4b0"));
  EXPECT_FALSE(IsUuid("8c1e7a52-9a4b-4c1e-9a52-8c1e7a529a4g"));
  EXPECT_FALSE(IsUuid("../../etc/passwd-aaaa-bbbb-cccccccccc"));
}

}  // namespace
}  // namespace gpuq
