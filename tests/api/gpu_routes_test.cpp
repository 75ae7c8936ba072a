// The /gpu/* routes and /health's gpu part over real sockets and a real SqliteStore, with
// FakeAgents heartbeating reports and answering commands through the store's command queue.
#include <fstream>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/api_fixture.hpp"
#include "api/fake_agent.hpp"
#include "api/sse_reader.hpp"
#include "support/wait.hpp"

namespace gpuq::api {
namespace {

using gpuq::testing::WaitUntil;
using ::testing::ElementsAre;
using testing::FakeAgent;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::MakeGpu;
using testing::ServerOptions;
using testing::TestServer;
using ::testing::UnorderedElementsAre;
using enum ServiceState;

ServiceSpec Spec(std::string name, int vram_mb, std::vector<int> phases) {
  ServiceSpec spec;
  spec.name = std::move(name);
  spec.vram_mb = vram_mb;
  spec.phases = std::move(phases);
  return spec;
}

ServerOptions WithServices() {
  ServerOptions options;
  for (auto spec :
       {Spec("comfyui", 20000, {4}), Spec("cosyvoice", 4000, {3}), Spec("ollama", 18000, {})}) {
    options.services.emplace(spec.name, spec);
  }
  return options;
}

Json Body(const http::Response& response) { return Json::parse(response.body); }

// Asserts status and body; returns the body.
Json Expect(const Result<http::Response>& response, int status) {
  EXPECT_TRUE(response) << response.error().message;
  if (!response) return Json();
  EXPECT_EQ(response.value().status, status) << response.value().body;
  Json body = Json::parse(response.value().body, nullptr, false);
  EXPECT_TRUE(body.is_object()) << response.value().body;
  return body;
}

void ExpectError(const Result<http::Response>& response, int status, std::string_view code) {
  Json body = Expect(response, status);
  EXPECT_EQ(body["error"], code) << body;
  EXPECT_TRUE(body["detail"].is_string() && !body["detail"].get<std::string>().empty()) << body;
}

// What an agent would answer, for tests that do not care.
Json DefaultReply(const store::Command& c) {
  if (c.kind == "service.start")
    return {{"success", true}, {"service", c.args["service"]}, {"gpu", 0}};
  if (c.kind == "service.stop") {
    return {{"success", true},
            {"service", c.args["service"]},
            {"busy", false},
            {"requeued", Json::array()}};
  }
  if (c.kind == "phase.prepare") {
    return {{"success", true},
            {"phase", c.args["phase"]},
            {"started", Json::array()},
            {"stopped", Json::array()},
            {"kept_busy", Json::array()}};
  }
  return {{"success", true}, {"stopped", Json::array()}, {"kept_busy", Json::array()}};
}

class GpuRoutes : public ::testing::Test {
 protected:
  explicit GpuRoutes(ServerOptions options = WithServices()) : server_(std::move(options)) {}

  store::Store& store() { return server_.store(); }

  TestServer server_;
  http::Client client_ = server_.Client();
};

// ---- GET /gpu/status ------------------------------------------------------------------------

TEST_F(GpuRoutes, StatusWithNoAgentIsEmptyWithEveryServiceStopped) {
  Json body = Expect(client_.Get("/gpu/status"), 200);

  EXPECT_EQ(body["gpus"], Json::array());
  EXPECT_EQ(body["vram"]["total_mb"], 0);
  EXPECT_EQ(body["services"], Json::parse(R"({"comfyui": {"state": "stopped"},
      "cosyvoice": {"state": "stopped"}, "ollama": {"state": "stopped"}})"));
  EXPECT_TRUE(body["lock"]["holder"].is_null());
  EXPECT_EQ(body["lock"]["ttl"], -2);
}

TEST_F(GpuRoutes, StatusShowsTwoGpusWithTheirServicesAndLocks) {
  FakeAgent agent(store(), "host-a",
                  {MakeGpu("host-a", 0, {{"comfyui", kReady}, {"cosyvoice", kStopped}}, 20000),
                   MakeGpu("host-a", 1, {{"comfyui", kStopped}, {"cosyvoice", kBusy}}, 4000)});
  auto lease = store().AcquireLease("lock:host-a:1", "host-a/gpu1", std::chrono::seconds(10));
  ASSERT_TRUE(lease) << lease.error().message;
  server_.clock().Advance(std::chrono::milliseconds(2500));  // 7.5 s left: ttl rounds up to 8

  Json body = Expect(client_.Get("/gpu/status"), 200);

  ASSERT_EQ(body["gpus"].size(), 2u);
  EXPECT_EQ(body["vram"]["total_mb"], 2 * 24576);
  EXPECT_EQ(body["vram"]["used_mb"], 24000);
  EXPECT_EQ(body["services"]["comfyui"]["state"], "ready");
  EXPECT_EQ(body["services"]["cosyvoice"]["state"], "busy");
  EXPECT_EQ(body["services"]["ollama"]["state"], "stopped");
  const Json& gpu0 = body["gpus"][0];
  const Json& gpu1 = body["gpus"][1];
  EXPECT_EQ(gpu0["host"], "host-a");
  EXPECT_EQ(gpu0["index"], 0);
  EXPECT_EQ(gpu0["services"]["comfyui"]["state"], "ready");
  EXPECT_EQ(gpu0["services"]["comfyui"]["pid"], 4242);
  EXPECT_TRUE(gpu0["lock"]["holder"].is_null());
  EXPECT_EQ(gpu0["lock"]["ttl"], -2);
  EXPECT_EQ(gpu1["lock"]["holder"], "host-a/gpu1");
  EXPECT_EQ(gpu1["lock"]["ttl"], 8);
  EXPECT_EQ(gpu1["lock"]["token"], lease.value().token);
  EXPECT_TRUE(body["lock"]["holder"].is_null());  // the top level shows GPU 0's lock
  EXPECT_EQ(body["lock"]["ttl"], -2);
}

TEST_F(GpuRoutes, StatusSkipsAgentsWithoutAGpuReportAndStaleOnes) {
  ASSERT_TRUE(store().PutAgent("cpu-only", Json::object()));
  FakeAgent stale(store(), "old-host", {MakeGpu("old-host", 0, {{"comfyui", kReady}})});
  server_.clock().Advance(std::chrono::seconds(11));
  FakeAgent live(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});

  Json body = Expect(client_.Get("/gpu/status"), 200);

  ASSERT_EQ(body["gpus"].size(), 1u);
  EXPECT_EQ(body["gpus"][0]["host"], "host-a");
  EXPECT_EQ(body["services"]["comfyui"]["state"], "stopped");
}

// ---- POST /gpu/prepare-phase/{phase} --------------------------------------------------------

TEST_F(GpuRoutes, PreparePhaseOutsideTheConfiguredPhasesIs400) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {})});
  agent.Serve(DefaultReply);

  for (const char* phase : {"9", "0", "-1", "abc", "4x", "99999999999"}) {
    auto response = client_.Post(std::string("/gpu/prepare-phase/") + phase);
    ExpectError(response, 400, "invalid_phase");
    EXPECT_THAT(Body(response.value())["detail"].get<std::string>(),
                HasSubstr("1 crawl, 2 analysis, 3 tts, 4 video, 5 render"));
  }
  EXPECT_THAT(agent.received(), IsEmpty());
}

TEST_F(GpuRoutes, PreparePhaseAsksEveryAgentAndMergesTheirReplies) {
  FakeAgent a(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});
  FakeAgent b(store(), "host-b", {MakeGpu("host-b", 0, {{"comfyui", kStopped}})});
  a.Serve([](const store::Command& c) {
    return Json{{"success", true},
                {"phase", c.args["phase"]},
                {"started", {"comfyui"}},
                {"stopped", {"cosyvoice"}},
                {"kept_busy", Json::array()}};
  });
  b.Serve([](const store::Command& c) {
    return Json{{"success", true},
                {"phase", c.args["phase"]},
                {"started", {"comfyui"}},
                {"stopped", {"ollama"}},
                {"kept_busy", {"vidi"}}};
  });

  Json body = Expect(client_.Post("/gpu/prepare-phase/4"), 200);

  EXPECT_EQ(body["success"], true);
  EXPECT_EQ(body["phase"], 4);
  EXPECT_EQ(body["started"], Json({"comfyui"}));
  EXPECT_EQ(body["stopped"], Json({"cosyvoice", "ollama"}));
  EXPECT_EQ(body["kept_busy"], Json({"vidi"}));
  EXPECT_FALSE(body.contains("error"));
  ASSERT_EQ(a.received().size(), 1u);
  EXPECT_EQ(a.received()[0].kind, "phase.prepare");
  EXPECT_EQ(a.received()[0].args, Json({{"phase", 4}}));
  ASSERT_EQ(b.received().size(), 1u);
}

TEST_F(GpuRoutes, PreparePhaseFailsWhenOneAgentFails) {
  FakeAgent a(store(), "host-a", {MakeGpu("host-a", 0, {})});
  FakeAgent b(store(), "host-b", {MakeGpu("host-b", 0, {})});
  a.Serve(DefaultReply);
  b.Serve([](const store::Command&) {
    return Json{{"success", false}, {"error", "comfyui did not get healthy in 120 s"}};
  });

  Json body = Expect(client_.Post("/gpu/prepare-phase/4"), 200);

  EXPECT_EQ(body["success"], false);
  EXPECT_THAT(body["error"].get<std::string>(), HasSubstr("host-b: comfyui did not get healthy"));
}

// ---- POST /gpu/service/{name}/start ---------------------------------------------------------

TEST_F(GpuRoutes, StartOfAnUnknownServiceIs404) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});
  agent.Serve(DefaultReply);

  auto response = client_.Post("/gpu/service/nope/start");

  ExpectError(response, 404, "not_found");
  EXPECT_THAT(Body(response.value())["detail"].get<std::string>(),
              HasSubstr("comfyui, cosyvoice, ollama"));
  EXPECT_THAT(agent.received(), IsEmpty());
}

TEST_F(GpuRoutes, StartGoesToTheAgentWhereTheServiceIsAlreadyResident) {
  FakeAgent a(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});
  FakeAgent b(store(), "host-b",
              {MakeGpu("host-b", 0, {{"cosyvoice", kStopped}}),
               MakeGpu("host-b", 1, {{"comfyui", kReady}})});
  a.Serve(DefaultReply);
  b.Serve([](const store::Command& c) {
    return Json{{"success", true}, {"service", c.args["service"]}, {"gpu", 1}};
  });

  Json body = Expect(client_.Post("/gpu/service/comfyui/start"), 200);

  EXPECT_EQ(body, Json::parse(R"({"success": true, "service": "comfyui", "gpu": 1})"));
  EXPECT_THAT(a.received(), IsEmpty());
  ASSERT_EQ(b.received().size(), 1u);
  EXPECT_EQ(b.received()[0].kind, "service.start");
  EXPECT_EQ(b.received()[0].args, Json({{"service", "comfyui"}}));
}

TEST_F(GpuRoutes, StartThatFailsSaysWhy) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});
  agent.Serve([](const store::Command& c) {
    return Json{{"success", false},
                {"service", c.args["service"]},
                {"gpu", nullptr},
                {"error", "not enough VRAM: busy services hold it"}};
  });

  Json body = Expect(client_.Post("/gpu/service/comfyui/start"), 200);

  EXPECT_EQ(body["success"], false);
  EXPECT_EQ(body["service"], "comfyui");
  EXPECT_TRUE(body["gpu"].is_null());
  EXPECT_EQ(body["error"], "not enough VRAM: busy services hold it");
}

TEST_F(GpuRoutes, StartOfAServiceNoAgentCanPlaceIs503) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {{"cosyvoice", kStopped}})});
  agent.Serve(DefaultReply);

  ExpectError(client_.Post("/gpu/service/comfyui/start"), 503, "unavailable");
}

// ---- POST /gpu/service/{name}/stop ----------------------------------------------------------

Json BusyAwareStop(const store::Command& c) {
  if (!c.args["force"].get<bool>()) {
    return {{"success", false},
            {"service", c.args["service"]},
            {"busy", true},
            {"error", "serving 1 run"}};
  }
  return {
      {"success", true}, {"service", c.args["service"]}, {"busy", false}, {"requeued", {"run-1"}}};
}

TEST_F(GpuRoutes, StopOfABusyServiceWithoutForceIs409) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kBusy}})});
  agent.Serve(BusyAwareStop);

  auto response = client_.Post("/gpu/service/comfyui/stop");

  ExpectError(response, 409, "conflict");
  EXPECT_EQ(Body(response.value())["detail"],
            "comfyui is serving runs: stop with force=true to requeue them");
  ASSERT_EQ(agent.received().size(), 1u);
  EXPECT_EQ(agent.received()[0].args, Json::parse(R"({"service": "comfyui", "force": false})"));
}

TEST_F(GpuRoutes, StopWithForceRequeuesTheRuns) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kBusy}})});
  agent.Serve(BusyAwareStop);

  Json body = Expect(client_.Post("/gpu/service/comfyui/stop?force=true"), 200);

  EXPECT_EQ(body, Json::parse(R"({"success": true, "service": "comfyui",
                                  "requeued": ["run-1"]})"));
  EXPECT_EQ(agent.received().at(0).args, Json::parse(R"({"service": "comfyui", "force": true})"));
}

TEST_F(GpuRoutes, StopGoesOnlyToAgentsWhereTheServiceIsResident) {
  FakeAgent a(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});
  FakeAgent b(store(), "host-b", {MakeGpu("host-b", 0, {{"comfyui", kReady}})});
  a.Serve(DefaultReply);
  b.Serve(DefaultReply);

  Json body = Expect(client_.Post("/gpu/service/comfyui/stop?force=false"), 200);

  EXPECT_EQ(body["success"], true);
  EXPECT_THAT(a.received(), IsEmpty());
  EXPECT_EQ(b.received().size(), 1u);
}

TEST_F(GpuRoutes, StopOfAServiceNowhereResidentSucceedsAtOnce) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});
  agent.Serve(DefaultReply);

  Json body = Expect(client_.Post("/gpu/service/comfyui/stop"), 200);

  EXPECT_EQ(body, Json::parse(R"({"success": true, "service": "comfyui"})"));
  EXPECT_THAT(agent.received(), IsEmpty());
}

TEST_F(GpuRoutes, StopRejectsAnUnknownServiceAndABadForce) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kReady}})});
  agent.Serve(DefaultReply);

  ExpectError(client_.Post("/gpu/service/nope/stop"), 404, "not_found");
  ExpectError(client_.Post("/gpu/service/comfyui/stop?force=yes"), 422, "invalid_argument");
  EXPECT_THAT(agent.received(), IsEmpty());
}

// ---- POST /gpu/release-all ------------------------------------------------------------------

TEST_F(GpuRoutes, ReleaseAllStopsEverywhereAndSaysWhatStayedBusy) {
  FakeAgent a(store(), "host-a", {MakeGpu("host-a", 0, {})});
  FakeAgent b(store(), "host-b", {MakeGpu("host-b", 0, {})});
  a.Serve([](const store::Command&) {
    return Json{{"success", true}, {"stopped", {"comfyui"}}, {"kept_busy", Json::array()}};
  });
  b.Serve([](const store::Command&) {
    return Json{{"success", true}, {"stopped", {"ollama"}}, {"kept_busy", {"cosyvoice"}}};
  });

  Json body = Expect(client_.Post("/gpu/release-all"), 200);

  EXPECT_EQ(body["success"], true);
  EXPECT_EQ(body["stopped"], Json({"comfyui", "ollama"}));
  EXPECT_EQ(body["kept_busy"], Json({"cosyvoice"}));
  EXPECT_THAT(body["message"].get<std::string>(), HasSubstr("cosyvoice"));
  EXPECT_EQ(a.received().at(0).kind, "release_all");
  EXPECT_EQ(b.received().at(0).kind, "release_all");
}

TEST_F(GpuRoutes, ReleaseAllWithNothingBusySaysAllStopped) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {})});
  agent.Serve(DefaultReply);

  Json body = Expect(client_.Post("/gpu/release-all"), 200);

  EXPECT_EQ(body, Json::parse(R"({"success": true, "message": "All GPU services stopped",
                                  "stopped": [], "kept_busy": []})"));
}

// ---- POST /gpu/lock/release -----------------------------------------------------------------

TEST_F(GpuRoutes, LockReleaseBreaksEveryLockInViewOnce) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {}), MakeGpu("host-a", 1, {})});
  ASSERT_TRUE(store().AcquireLease("lock:host-a:1", "worker", std::chrono::seconds(10)));

  Json first = Expect(client_.Post("/gpu/lock/release"), 200);
  Json second = Expect(client_.Post("/gpu/lock/release"), 200);

  EXPECT_EQ(first, Json({{"released", true}}));
  EXPECT_EQ(second, Json({{"released", false}}));
  auto lease = store().GetLease("lock:host-a:1");
  ASSERT_TRUE(lease);
  EXPECT_FALSE(lease.value().has_value());
}

TEST_F(GpuRoutes, LockReleaseOfOneGpu) {
  ASSERT_TRUE(store().AcquireLease("lock:host-a:0", "w0", std::chrono::seconds(10)));
  ASSERT_TRUE(store().AcquireLease("lock:host-a:1", "w1", std::chrono::seconds(10)));

  Json body = Expect(client_.Post("/gpu/lock/release?gpu=host-a:1"), 200);

  EXPECT_EQ(body, Json({{"released", true}}));
  EXPECT_TRUE(store().GetLease("lock:host-a:0").value().has_value());
  EXPECT_FALSE(store().GetLease("lock:host-a:1").value().has_value());
  ExpectError(client_.Post("/gpu/lock/release?gpu=host-a"), 422, "invalid_argument");
  ExpectError(client_.Post("/gpu/lock/release?gpu=host-a:x"), 422, "invalid_argument");
}

// ---- no agent, no reply ---------------------------------------------------------------------

TEST_F(GpuRoutes, CommandsWithNoLiveAgentAre503) {
  ASSERT_TRUE(store().PutAgent("cpu-only", Json::object()));  // no GPU report: not counted

  for (const char* target : {"/gpu/prepare-phase/4", "/gpu/service/comfyui/start",
                             "/gpu/service/comfyui/stop", "/gpu/release-all"}) {
    auto response = client_.Post(target);
    ExpectError(response, 503, "unavailable");
    EXPECT_THAT(Body(response.value())["detail"].get<std::string>(), HasSubstr("gpuq serve"))
        << target;
  }
}

class GpuRoutesShortDeadline : public GpuRoutes {
 protected:
  static ServerOptions Options() {
    ServerOptions options = WithServices();
    options.gpu_command_timeout = std::chrono::milliseconds(300);
    return options;
  }
  GpuRoutesShortDeadline() : GpuRoutes(Options()) {}
};

TEST_F(GpuRoutesShortDeadline, NoReplyByTheDeadlineIs504) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});
  // It heartbeats but never takes its commands.

  auto response = client_.Post("/gpu/service/comfyui/start");

  ExpectError(response, 504, "timeout");
  EXPECT_THAT(Body(response.value())["detail"].get<std::string>(), HasSubstr("host-a"));
}

TEST_F(GpuRoutesShortDeadline, ACommandTheAgentFoundExpiredIs504) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {})});
  agent.Serve([](const store::Command&) { return Json{{"success", false}, {"error", "expired"}}; });

  ExpectError(client_.Post("/gpu/release-all"), 504, "timeout");
}

TEST_F(GpuRoutesShortDeadline, TheCommandCarriesItsDeadline) {
  FakeAgent agent(store(), "host-a", {MakeGpu("host-a", 0, {})});
  agent.Serve(DefaultReply);

  Expect(client_.Post("/gpu/release-all"), 200);

  ASSERT_EQ(agent.received().size(), 1u);
  EXPECT_EQ(agent.received()[0].deadline, server_.clock().Now() + std::chrono::milliseconds(300));
}

// ---- GET /gpu/service/{name}/logs -----------------------------------------------------------

TEST_F(GpuRoutes, ServiceLogsServeTheServicesOwnOutput) {
  auto dir = server_.data_dir() / "services" / "comfyui";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "gpu1.log") << "loading model\nlistening on 8189\n";

  auto text = client_.Get("/gpu/service/comfyui/logs?gpu=1");
  auto none = client_.Get("/gpu/service/comfyui/logs");  // GPU 0 by default: no log there

  ASSERT_TRUE(text);
  EXPECT_EQ(text.value().status, 200);
  EXPECT_EQ(text.value().body, "loading model\nlistening on 8189\n");
  ExpectError(none, 404, "not_found");
  ExpectError(client_.Get("/gpu/service/nope/logs"), 404, "not_found");
  ExpectError(client_.Get("/gpu/service/comfyui/logs?gpu=x"), 422, "invalid_argument");
}

TEST_F(GpuRoutes, ServiceLogsFollowStreamsNewLines) {
  auto log = server_.data_dir() / "services" / "comfyui" / "gpu0.log";
  std::filesystem::create_directories(log.parent_path());
  std::ofstream(log) << "first\n";
  std::mutex mutex;
  std::vector<std::string> lines;
  std::thread reader([&] {
    testing::ReadEventStream(server_.port(), "/gpu/service/comfyui/logs?follow=1",
                             [&](std::string_view, std::string_view data) {
                               std::lock_guard lock(mutex);
                               lines.emplace_back(data);
                               return lines.size() < 2;
                             });
  });
  auto count = [&] {
    std::lock_guard lock(mutex);
    return lines.size();
  };

  ASSERT_TRUE(WaitUntil([&] { return count() == 1; }));
  std::ofstream(log, std::ios::app) << "second\n";
  reader.join();

  EXPECT_THAT(lines, ElementsAre("first", "second"));
}

// ---- /health --------------------------------------------------------------------------------

TEST_F(GpuRoutes, HealthIsDegradedWithServicesAndNoAgent) {
  Json body = Expect(client_.Get("/health"), 200);

  EXPECT_EQ(body["status"], "degraded");
  EXPECT_EQ(body["gpu"], Json::parse(R"({"ok": false, "free_mb": null})"));
}

TEST_F(GpuRoutes, HealthSumsFreeMemoryOfLiveReports) {
  FakeAgent a(store(), "host-a", {MakeGpu("host-a", 0, {}, 20000), MakeGpu("host-a", 1, {}, 0)});
  FakeAgent b(store(), "host-b", {MakeGpu("host-b", 0, {}, 4576)});

  Json body = Expect(client_.Get("/health"), 200);

  EXPECT_EQ(body["status"], "healthy");
  EXPECT_EQ(body["gpu"], Json::parse(R"({"ok": true, "free_mb": 49152})"));
}

TEST_F(GpuRoutes, HealthIsDegradedWhenAReportIsNotOk) {
  FakeAgent a(store(), "host-a", {MakeGpu("host-a", 0, {})});
  FakeAgent b(store(), "host-b", {MakeGpu("host-b", 0, {})});
  b.report().ok = false;
  b.report().error = "nvml: GPU is lost";
  b.Heartbeat();

  Json body = Expect(client_.Get("/health"), 200);

  EXPECT_EQ(body["status"], "degraded");
  EXPECT_EQ(body["gpu"]["ok"], false);
  EXPECT_EQ(body["gpu"]["free_mb"], 2 * 24576);
}

class GpuRoutesNoServices : public GpuRoutes {
 protected:
  GpuRoutesNoServices() : GpuRoutes(ServerOptions{}) {}
};

TEST_F(GpuRoutesNoServices, HealthIsOkWithNoGpuServicesConfigured) {
  Json body = Expect(client_.Get("/health"), 200);

  EXPECT_EQ(body["status"], "healthy");
  EXPECT_EQ(body["gpu"], Json::parse(R"({"ok": true, "free_mb": 0})"));
}

TEST_F(GpuRoutes, OpenApiListsTheGpuRoutes) {
  Json doc = Expect(client_.Get("/openapi.json"), 200);

  for (const char* path : {"/gpu/status", "/gpu/prepare-phase/{phase}", "/gpu/service/{name}/start",
                           "/gpu/service/{name}/stop", "/gpu/service/{name}/logs",
                           "/gpu/release-all", "/gpu/lock/release"}) {
    EXPECT_TRUE(doc["paths"].contains(path)) << path;
  }
}

}  // namespace
}  // namespace gpuq::api
