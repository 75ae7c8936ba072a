// `gpuq gpu status`, `gpuq service ...` and `gpuq phase N` against a real API server, with a
// FakeAgent answering through the store's command queue.
#include "cli/gpu_commands.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/api_fixture.hpp"
#include "api/fake_agent.hpp"
#include "cli/main.hpp"

namespace gpuq::cli {
namespace {

using api::testing::FakeAgent;
using api::testing::MakeGpu;
using api::testing::ServerOptions;
using api::testing::TestServer;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using enum ServiceState;
using nlohmann::json;

TEST(RenderGpuStatus, DrawsABarPerGpuAndATableOfServices) {
  auto status = json::parse(R"({
    "vram": {"total_mb": 24576, "used_mb": 20000, "free_mb": 4576},
    "services": {"comfyui": {"state": "busy"}, "vidi": {"state": "stopped"}},
    "lock": {"holder": null, "ttl": -2},
    "gpus": [{"host": "host-a", "index": 0, "name": "RTX 4090", "total_mb": 24576,
              "used_mb": 12288, "free_mb": 12288, "reserve_mb": 512, "unknown_mb": 300,
              "services": {"comfyui": {"state": "busy", "vram_mb_declared": 20000,
                                       "vram_mb_measured": 11988, "port": 8188, "pid": 4242,
                                       "container": "", "active_runs": 1, "error": ""}},
              "lock": {"holder": "host-a/gpu0", "ttl": 7, "token": 12}}]})");

  std::string text = RenderGpuStatus(status);

  EXPECT_THAT(text, StartsWith("host-a:0 RTX 4090 [##########----------] 12288/24576 MB "
                               "(free 12288, reserve 512, unknown 300)\n"
                               "  locked by host-a/gpu0 (ttl 7 s, token 12)\n\n"));
  EXPECT_THAT(text, HasSubstr("SERVICE  GPU       STATE    VRAM(declared/measured)  PORT  PID"
                              "   RUNS\n"));
  EXPECT_THAT(text, HasSubstr("comfyui  host-a:0  busy     20000/11988              8188  4242"
                              "  1\n"));
  EXPECT_THAT(text, HasSubstr("vidi     -         stopped  -"));
}

TEST(RenderGpuStatus, SaysWhenNoAgentReports) {
  auto text = RenderGpuStatus(json::parse(R"({"gpus": [], "services": {}})"));

  EXPECT_THAT(text, HasSubstr("no GPU reported"));
}

ServerOptions WithServices() {
  ServerOptions options;
  for (const char* name : {"comfyui", "cosyvoice"}) {
    ServiceSpec spec;
    spec.name = name;
    spec.vram_mb = 4000;
    options.services.emplace(name, spec);
  }
  return options;
}

json Reply(const store::Command& c) {
  if (c.kind == "service.stop") {
    if (!c.args["force"].get<bool>()) {
      return {{"success", false},
              {"service", c.args["service"]},
              {"busy", true},
              {"error", "serving runs"}};
    }
    return {{"success", true}, {"service", c.args["service"]}, {"requeued", {"r1"}}};
  }
  if (c.kind == "service.start") {
    return {{"success", true}, {"service", c.args["service"]}, {"gpu", 0}};
  }
  return {{"success", true},
          {"phase", c.args["phase"]},
          {"started", {"comfyui"}},
          {"stopped", {"cosyvoice"}},
          {"kept_busy", json::array()}};
}

class GpuCli : public ::testing::Test {
 protected:
  explicit GpuCli(ServerOptions options = WithServices()) : server_(std::move(options)) {
    global_.server = "http://127.0.0.1:" + std::to_string(server_.port());
  }

  // Runs `gpuq ARGS... --server URL` through Main, capturing stdout.
  int Gpuq(std::vector<std::string> args, std::string* out = nullptr) {
    args.insert(args.begin(), "gpuq");
    args.push_back("--server");
    args.push_back(global_.server);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    ::testing::internal::CaptureStdout();
    int code = Main(static_cast<int>(argv.size()), argv.data());
    std::string text = ::testing::internal::GetCapturedStdout();
    if (out) *out = text;
    return code;
  }

  TestServer server_;
  GlobalOptions global_;
};

TEST_F(GpuCli, GpuStatusPrintsTheBarAndTheServiceTable) {
  FakeAgent agent(server_.store(), "host-a",
                  {MakeGpu("host-a", 0, {{"comfyui", kReady}, {"cosyvoice", kStopped}}, 4000)});
  std::string out;

  int code = Gpuq({"gpu", "status"}, &out);

  EXPECT_EQ(code, 0);
  EXPECT_THAT(out, StartsWith("host-a:0 Sim GPU [###-----------------] 4000/24576 MB (free "
                              "20576, reserve 512, unknown 0)\n"));
  EXPECT_THAT(out, HasSubstr("comfyui    host-a:0  ready    4000/-"));
}

TEST_F(GpuCli, GpuStatusJsonPrintsTheReply) {
  FakeAgent agent(server_.store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kReady}})});
  std::string out;

  int code = Gpuq({"gpu", "status", "--json"}, &out);

  EXPECT_EQ(code, 0);
  json reply = json::parse(out);
  EXPECT_EQ(reply["services"]["comfyui"]["state"], "ready");
  EXPECT_EQ(reply["gpus"].size(), 1u);
}

TEST_F(GpuCli, PhaseAndServiceCommandsSucceed) {
  FakeAgent agent(server_.store(), "host-a",
                  {MakeGpu("host-a", 0, {{"comfyui", kBusy}, {"cosyvoice", kStopped}})});
  agent.Serve(Reply);
  std::string phase, start, stop;

  EXPECT_EQ(Gpuq({"phase", "4"}, &phase), 0);
  EXPECT_EQ(Gpuq({"service", "start", "cosyvoice"}, &start), 0);
  EXPECT_EQ(Gpuq({"service", "stop", "comfyui", "--force"}, &stop), 0);

  EXPECT_EQ(phase, "phase 4 ready: started comfyui; stopped cosyvoice; kept busy -\n");
  EXPECT_EQ(start, "cosyvoice ready on GPU 0\n");
  EXPECT_EQ(stop, "comfyui stopped (requeued r1)\n");
}

TEST_F(GpuCli, ErrorsHaveTheirExitCodes) {
  EXPECT_EQ(PreparePhase(global_, 1), 5);  // no agent: 503

  FakeAgent agent(server_.store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kBusy}})});
  agent.Serve(Reply);

  EXPECT_EQ(PreparePhase(global_, 9), 2);                   // 400 invalid_phase
  EXPECT_EQ(ServiceStart(global_, "nope"), 3);              // 404
  EXPECT_EQ(ServiceStop(global_, "comfyui", false), 4);     // 409 busy
  EXPECT_EQ(ServiceLogs(global_, "comfyui", 0, false), 3);  // no log yet
}

TEST_F(GpuCli, AFailedStartExitsWithOne) {
  FakeAgent agent(server_.store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});
  agent.Serve([](const store::Command&) {
    return json{{"success", false}, {"service", "comfyui"}, {"error", "never got healthy"}};
  });

  EXPECT_EQ(ServiceStart(global_, "comfyui"), 1);
}

class GpuCliShortDeadline : public GpuCli {
 protected:
  static ServerOptions Options() {
    ServerOptions options = WithServices();
    options.gpu_command_timeout = std::chrono::milliseconds(200);
    return options;
  }
  GpuCliShortDeadline() : GpuCli(Options()) {}
};

TEST_F(GpuCliShortDeadline, NoReplyExitsWithTheTimeoutCode) {
  FakeAgent agent(server_.store(), "host-a", {MakeGpu("host-a", 0, {{"comfyui", kStopped}})});

  EXPECT_EQ(ServiceStart(global_, "comfyui"), 7);
}

}  // namespace
}  // namespace gpuq::cli
