#include "core/clock.hpp"

#include <gtest/gtest.h>

namespace gpuq {
namespace {

TEST(Clock, FormatTimeIsUtcWithMilliseconds) {
  EXPECT_EQ(FormatTime(FromMillis(0)), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatTime(FromMillis(1'790'000'000'123)), "2026-09-21T14:13:20.123Z");
  EXPECT_EQ(FormatTime(FromMillis(951'782'400'007)), "2000-02-29T00:00:00.007Z");
}

TEST(Clock, ParseTimeReadsFormatTimeBack) {
  for (long long ms :
       {0LL, 1LL, 999LL, 1'790'000'000'123LL, 951'782'400'007LL, 4'102'444'799'999LL}) {
    auto parsed = ParseTime(FormatTime(FromMillis(ms)));
    ASSERT_TRUE(parsed.has_value()) << ms;
    EXPECT_EQ(ToMillis(*parsed), ms);
  }
}

TEST(Clock, ParseTimeRejectsOtherShapes) {
  EXPECT_FALSE(ParseTime(""));
  EXPECT_FALSE(ParseTime("2026-09-21T13:33:20Z"));
  EXPECT_FALSE(ParseTime("2026-09-21T13:33:20.123"));
  EXPECT_FALSE(ParseTime("2026-09-21 13:33:20.123Z"));
  EXPECT_FALSE(ParseTime("not a time at all, sorry"));
}

TEST(Clock, ManualClockMovesOnlyWhenAdvanced) {
  ManualClock clock(FromMillis(1000));

  clock.Advance(Millis(250));

  EXPECT_EQ(ToMillis(clock.Now()), 1250);
}

}  // namespace
}  // namespace gpuq
