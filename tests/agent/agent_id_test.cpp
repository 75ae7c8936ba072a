#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "agent/agent.hpp"
#include "support/temp_dir.hpp"

namespace gpuq::agent {
namespace {

using ::testing::MatchesRegex;

TEST(ResolveAgentId, ConfiguredIdWins) {
  testing::TempDir dir;

  auto id = ResolveAgentId(dir.path(), "host-a");

  ASSERT_TRUE(id);
  EXPECT_EQ(id.value(), "host-a");
  EXPECT_FALSE(std::filesystem::exists(dir / "agent-id"));
}

TEST(ResolveAgentId, CreatesHostnameWithHexOnceAndKeepsIt) {
  testing::TempDir dir;
  auto data_dir = dir / "data";

  auto first = ResolveAgentId(data_dir, "");
  auto second = ResolveAgentId(data_dir, "");

  ASSERT_TRUE(first) << first.error().message;
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_THAT(first.value(), MatchesRegex(".+-[0-9a-f]{8}"));
  EXPECT_EQ(first.value(), second.value());
  EXPECT_TRUE(std::filesystem::exists(data_dir / "agent-id"));
}

TEST(ResolveAgentId, ReadsAnExistingFile) {
  testing::TempDir dir;
  std::ofstream(dir / "agent-id") << "  gpu-box-7\n";

  auto id = ResolveAgentId(dir.path(), "");

  ASSERT_TRUE(id);
  EXPECT_EQ(id.value(), "gpu-box-7");
}

}  // namespace
}  // namespace gpuq::agent
