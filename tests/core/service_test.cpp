#include "core/service.hpp"

#include <gtest/gtest.h>

namespace gpuq {
namespace {

using S = ServiceState;

constexpr ServiceState kAllStates[] = {S::kUnknown, S::kStopped,  S::kStarting, S::kReady,
                                       S::kBusy,    S::kStopping, S::kError};
constexpr ServiceKind kAllKinds[] = {ServiceKind::kProcess, ServiceKind::kDocker,
                                     ServiceKind::kExternal};

TEST(ServiceState, WordsAreTheNotesWords) {
  EXPECT_STREQ(ToString(S::kUnknown), "unknown");
  EXPECT_STREQ(ToString(S::kStopped), "stopped");
  EXPECT_STREQ(ToString(S::kStarting), "starting");
  EXPECT_STREQ(ToString(S::kReady), "ready");
  EXPECT_STREQ(ToString(S::kBusy), "busy");
  EXPECT_STREQ(ToString(S::kStopping), "stopping");
  EXPECT_STREQ(ToString(S::kError), "error");
}

TEST(ServiceState, WordsRoundTrip) {
  for (ServiceState s : kAllStates) {
    auto parsed = ParseServiceState(ToString(s));
    ASSERT_TRUE(parsed.has_value()) << ToString(s);
    EXPECT_EQ(*parsed, s);
  }
}

TEST(ServiceState, UnknownWordsDoNotParse) {
  EXPECT_FALSE(ParseServiceState(""));
  EXPECT_FALSE(ParseServiceState("running"));
  EXPECT_FALSE(ParseServiceState("Ready"));
  EXPECT_FALSE(ParseServiceState("ready "));
}

TEST(ServiceState, ResidentStatesHoldVram) {
  for (ServiceState s : kAllStates) {
    bool resident = s == S::kStarting || s == S::kReady || s == S::kBusy || s == S::kStopping;
    EXPECT_EQ(IsResident(s), resident) << ToString(s);
  }
}

TEST(ServiceKind, WordsAreTheNotesWords) {
  EXPECT_STREQ(ToString(ServiceKind::kProcess), "process");
  EXPECT_STREQ(ToString(ServiceKind::kDocker), "docker");
  EXPECT_STREQ(ToString(ServiceKind::kExternal), "external");
}

TEST(ServiceKind, WordsRoundTripAndOthersDoNotParse) {
  for (ServiceKind k : kAllKinds) {
    auto parsed = ParseServiceKind(ToString(k));
    ASSERT_TRUE(parsed.has_value()) << ToString(k);
    EXPECT_EQ(*parsed, k);
  }
  EXPECT_FALSE(ParseServiceKind(""));
  EXPECT_FALSE(ParseServiceKind("podman"));
  EXPECT_FALSE(ParseServiceKind("Docker"));
}

TEST(ServiceSpec, DefaultsMatchTheContract) {
  ServiceSpec spec;

  EXPECT_EQ(spec.kind, ServiceKind::kProcess);
  EXPECT_EQ(spec.priority, 50);
  EXPECT_EQ(spec.stop_signal, 15);
  EXPECT_FALSE(spec.gpus.has_value());
  EXPECT_EQ(spec.idle_ttl, Millis(0));
  EXPECT_EQ(spec.max_concurrency, 1);
}

}  // namespace
}  // namespace gpuq
