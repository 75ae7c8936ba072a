#include "core/gpu_status.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gpuq {
namespace {

using ::testing::HasSubstr;

ServiceInstanceStatus Instance(ServiceState state, int declared) {
  ServiceInstanceStatus s;
  s.state = state;
  s.vram_mb_declared = declared;
  return s;
}

GpuStatus Gpu(std::string host, int index, int total, int used) {
  GpuStatus gpu;
  gpu.host = std::move(host);
  gpu.index = index;
  gpu.name = "NVIDIA H100";
  gpu.total_mb = total;
  gpu.used_mb = used;
  gpu.free_mb = total - used;
  gpu.reserve_mb = 512;
  return gpu;
}

AgentGpuReport FullReport() {
  AgentGpuReport report;
  report.agent = "host-a";
  report.backend = "sim";
  report.ok = false;
  report.error = "nvml: driver gone";
  GpuStatus gpu0 = Gpu("host-a", 0, 24576, 20000);
  gpu0.unknown_mb = 300;
  ServiceInstanceStatus comfy = Instance(ServiceState::kBusy, 20000);
  comfy.vram_mb_measured = 19500;
  comfy.port = 8188;
  comfy.pid = 4242;
  comfy.active_runs = 1;
  gpu0.services["comfyui"] = comfy;
  ServiceInstanceStatus tts = Instance(ServiceState::kError, 4000);
  tts.container = "gpuq_cosyvoice_gpu0";
  tts.port = 50000;
  tts.error = "exited with status 1";
  gpu0.services["cosyvoice"] = tts;
  gpu0.lock.holder = "host-a/gpu0";
  gpu0.lock.ttl_s = 9;
  gpu0.lock.token = 17;
  report.gpus.push_back(gpu0);
  report.gpus.push_back(Gpu("host-a", 1, 8192, 0));
  return report;
}

void ExpectSame(const ServiceInstanceStatus& a, const ServiceInstanceStatus& b) {
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.vram_mb_declared, b.vram_mb_declared);
  EXPECT_EQ(a.vram_mb_measured, b.vram_mb_measured);
  EXPECT_EQ(a.port, b.port);
  EXPECT_EQ(a.pid, b.pid);
  EXPECT_EQ(a.container, b.container);
  EXPECT_EQ(a.active_runs, b.active_runs);
  EXPECT_EQ(a.error, b.error);
}

TEST(AgentGpuReport, RoundTripsThroughJson) {
  AgentGpuReport report = FullReport();

  auto back = AgentGpuReportFromJson(ToJson(report));

  ASSERT_TRUE(back) << back.error().message;
  const AgentGpuReport& r = back.value();
  EXPECT_EQ(r.agent, report.agent);
  EXPECT_EQ(r.backend, report.backend);
  EXPECT_EQ(r.ok, report.ok);
  EXPECT_EQ(r.error, report.error);
  ASSERT_EQ(r.gpus.size(), 2u);
  for (std::size_t i = 0; i < r.gpus.size(); ++i) {
    SCOPED_TRACE(i);
    const GpuStatus& a = r.gpus[i];
    const GpuStatus& b = report.gpus[i];
    EXPECT_EQ(a.host, b.host);
    EXPECT_EQ(a.index, b.index);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.total_mb, b.total_mb);
    EXPECT_EQ(a.used_mb, b.used_mb);
    EXPECT_EQ(a.free_mb, b.free_mb);
    EXPECT_EQ(a.reserve_mb, b.reserve_mb);
    EXPECT_EQ(a.unknown_mb, b.unknown_mb);
    EXPECT_EQ(a.lock.holder, b.lock.holder);
    EXPECT_EQ(a.lock.ttl_s, b.lock.ttl_s);
    EXPECT_EQ(a.lock.token, b.lock.token);
    ASSERT_EQ(a.services.size(), b.services.size());
    for (const auto& [name, instance] : b.services) {
      SCOPED_TRACE(name);
      ASSERT_EQ(a.services.count(name), 1u);
      ExpectSame(a.services.at(name), instance);
    }
  }
}

TEST(AgentGpuReport, JsonUsesTheWireNames) {
  Json json = ToJson(FullReport());

  const Json& gpu = json["gpus"][0];
  EXPECT_EQ(gpu["host"], "host-a");
  EXPECT_EQ(gpu["total_mb"], 24576);
  EXPECT_EQ(gpu["unknown_mb"], 300);
  EXPECT_EQ(gpu["services"]["comfyui"]["state"], "busy");
  EXPECT_EQ(gpu["services"]["comfyui"]["vram_mb_measured"], 19500);
  EXPECT_EQ(gpu["services"]["comfyui"]["pid"], 4242);
  EXPECT_TRUE(gpu["services"]["cosyvoice"]["vram_mb_measured"].is_null());
  EXPECT_TRUE(gpu["services"]["cosyvoice"]["pid"].is_null());
  EXPECT_EQ(gpu["services"]["cosyvoice"]["container"], "gpuq_cosyvoice_gpu0");
  EXPECT_EQ(gpu["lock"], (Json{{"holder", "host-a/gpu0"}, {"ttl", 9}, {"token", 17}}));
  EXPECT_TRUE(json["gpus"][1]["lock"]["holder"].is_null());
  EXPECT_EQ(json["gpus"][1]["lock"]["ttl"], -2);
}

TEST(AgentGpuReport, MalformedInputIsRejectedWithoutThrowing) {
  const Json good = ToJson(FullReport());
  auto with = [&](const Json::json_pointer& at, Json value) {
    Json j = good;
    j[at] = std::move(value);
    return j;
  };
  auto without = [&](const Json::json_pointer& at) {
    Json j = good;
    j[at.parent_pointer()].erase(at.back());
    return j;
  };
  const std::vector<std::pair<std::string, Json>> table = {
      {"not an object", Json::array()},
      {"null", Json(nullptr)},
      {"agent is a number", with("/agent"_json_pointer, 7)},
      {"ok is a string", with("/ok"_json_pointer, "yes")},
      {"gpus is an object", with("/gpus"_json_pointer, Json::object())},
      {"no gpus", without("/gpus"_json_pointer)},
      {"a gpu is a string", with("/gpus/0"_json_pointer, "gpu0")},
      {"index is a string", with("/gpus/0/index"_json_pointer, "0")},
      {"total_mb is a float", with("/gpus/0/total_mb"_json_pointer, 1.5)},
      {"used_mb out of int range", with("/gpus/0/used_mb"_json_pointer, 1LL << 40)},
      {"no free_mb", without("/gpus/0/free_mb"_json_pointer)},
      {"services is an array", with("/gpus/0/services"_json_pointer, Json::array())},
      {"a service is a number", with("/gpus/0/services/comfyui"_json_pointer, 3)},
      {"unknown state word", with("/gpus/0/services/comfyui/state"_json_pointer, "running")},
      {"pid is a string", with("/gpus/0/services/comfyui/pid"_json_pointer, "4242")},
      {"measured is a bool", with("/gpus/0/services/comfyui/vram_mb_measured"_json_pointer, true)},
      {"no lock", without("/gpus/0/lock"_json_pointer)},
      {"holder is a number", with("/gpus/0/lock/holder"_json_pointer, 1)},
      {"ttl is a string", with("/gpus/0/lock/ttl"_json_pointer, "9")},
  };
  for (const auto& [what, json] : table) {
    SCOPED_TRACE(what);

    auto parsed = AgentGpuReportFromJson(json);

    ASSERT_FALSE(parsed);
    EXPECT_EQ(parsed.error().code, Errc::kMalformed);
    EXPECT_FALSE(parsed.error().message.empty());
  }
}

TEST(AgentGpuReport, MalformedMessageSaysWhere) {
  Json json = ToJson(FullReport());
  json["gpus"][1]["name"] = 5;

  auto parsed = AgentGpuReportFromJson(json);

  ASSERT_FALSE(parsed);
  EXPECT_THAT(parsed.error().message, HasSubstr("gpus[1]"));
  EXPECT_THAT(parsed.error().message, HasSubstr("name"));
}

TEST(BestState, FollowsBusyReadyStartingStoppingErrorStoppedUnknown) {
  using S = ServiceState;
  const std::vector<ServiceState> order = {S::kBusy,  S::kReady,   S::kStarting, S::kStopping,
                                           S::kError, S::kStopped, S::kUnknown};
  for (std::size_t i = 0; i < order.size(); ++i) {
    for (std::size_t j = 0; j < order.size(); ++j) {
      ServiceState expected = order[std::min(i, j)];
      EXPECT_EQ(BestState(order[i], order[j]), expected)
          << ToString(order[i]) << " vs " << ToString(order[j]);
    }
  }
}

TEST(GpuStatusReply, SumsVramAndTakesTheBestStateAnywhere) {
  AgentGpuReport a = FullReport();  // comfyui busy, cosyvoice error; 24576 + 8192
  AgentGpuReport b;
  b.agent = "host-b";
  b.backend = "nvml";
  GpuStatus other = Gpu("host-b", 0, 16384, 4000);
  other.services["cosyvoice"] = Instance(ServiceState::kReady, 4000);
  other.services["comfyui"] = Instance(ServiceState::kStopped, 20000);
  b.gpus.push_back(other);

  Json reply = GpuStatusReply({a, b}, {"comfyui", "cosyvoice", "vidi"});

  EXPECT_EQ(reply["vram"], (Json{{"total_mb", 24576 + 8192 + 16384},
                                 {"used_mb", 20000 + 0 + 4000},
                                 {"free_mb", 4576 + 8192 + 12384}}));
  EXPECT_EQ(reply["services"]["comfyui"], (Json{{"state", "busy"}}));
  EXPECT_EQ(reply["services"]["cosyvoice"], (Json{{"state", "ready"}}));
  EXPECT_EQ(reply["services"]["vidi"], (Json{{"state", "stopped"}}));
  EXPECT_EQ(reply["gpus"].size(), 3u);
  EXPECT_EQ(reply["gpus"][2]["host"], "host-b");
  ASSERT_EQ(reply["agents"].size(), 2u);
  EXPECT_EQ(
      reply["agents"][0],
      (Json{
          {"agent", "host-a"}, {"backend", "sim"}, {"ok", false}, {"error", "nvml: driver gone"}}));
}

TEST(GpuStatusReply, LockIsTheFirstGpusHolderAndTtl) {
  Json reply = GpuStatusReply({FullReport()}, {});

  EXPECT_EQ(reply["lock"], (Json{{"holder", "host-a/gpu0"}, {"ttl", 9}}));
  EXPECT_EQ(reply["gpus"][0]["lock"]["token"], 17);
}

TEST(GpuStatusReply, FreeLockAndNoGpuReadTtlMinusTwo) {
  AgentGpuReport free_lock = FullReport();
  free_lock.gpus[0].lock = GpuLockStatus{};

  Json with_free_lock = GpuStatusReply({free_lock}, {});
  Json with_no_gpu = GpuStatusReply({}, {"comfyui"});

  const Json expected = Json{{"holder", nullptr}, {"ttl", -2}};
  EXPECT_EQ(with_free_lock["lock"], expected);
  EXPECT_EQ(with_no_gpu["lock"], expected);
  EXPECT_EQ(with_no_gpu["vram"], (Json{{"total_mb", 0}, {"used_mb", 0}, {"free_mb", 0}}));
  EXPECT_EQ(with_no_gpu["services"]["comfyui"], (Json{{"state", "stopped"}}));
  EXPECT_TRUE(with_no_gpu["gpus"].is_array());
  EXPECT_TRUE(with_no_gpu["gpus"].empty());
}

}  // namespace
}  // namespace gpuq
