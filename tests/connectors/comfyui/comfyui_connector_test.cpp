// The ComfyUI fake's protocol (with a real WebSocket client) and the comfyui connector against
// the fake, over real sockets.
#include "connectors/comfyui/comfyui_connector.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "connectors/fake_service.hpp"
#include "connectors/run_fixture.hpp"
#include "http/client.hpp"
#include "http/multipart.hpp"
#include "http/websocket.hpp"
#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace gpuq::connectors {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr std::string_view kPngMagic = "\x89PNG\r\n\x1a\n";

// checkpoint -> prompt -> sampler (STEPS steps) -> decode -> SaveImage.
Json Graph(Json steps = 5, Json ckpt = "sd_xl_base_1.0.safetensors", Json prompt = "a cat",
           std::string prefix = "gpuq/test") {
  return Json{
      {"4", {{"class_type", "CheckpointLoaderSimple"}, {"inputs", {{"ckpt_name", ckpt}}}}},
      {"6", {{"class_type", "CLIPTextEncode"}, {"inputs", {{"text", prompt}, {"clip", {"4", 1}}}}}},
      {"3",
       {{"class_type", "KSampler"},
        {"inputs", {{"seed", 1}, {"steps", steps}, {"model", {"4", 0}}, {"positive", {"6", 0}}}}}},
      {"8", {{"class_type", "VAEDecode"}, {"inputs", {{"samples", {"3", 0}}, {"vae", {"4", 2}}}}}},
      {"9",
       {{"class_type", "SaveImage"},
        {"inputs", {{"images", {"8", 0}}, {"filename_prefix", prefix}}}}}};
}

std::vector<std::string> FakeArgs(const fs::path& data_dir, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--personality", "comfyui", "--work-ms",  "20",
                                   "--vram-mb",     "24000",   "--data-dir", data_dir.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// ---- the fake's protocol ----

TEST(FakeComfyUi, SendsTheEventsOfOnePromptInOrderToItsClient) {
  testing::TempDir data;
  FakeService fake(FakeArgs(data.path()));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  auto ws = http::WebSocket::Connect(fake.endpoint(), "/ws?clientId=c1", std::chrono::seconds(10));
  ASSERT_TRUE(ws) << ws.error().message;
  auto first = ws.value()->Read(std::chrono::seconds(10));
  ASSERT_TRUE(first) << first.error().message;
  auto status = Json::parse(first.value().data);
  EXPECT_EQ(status["type"], "status");
  EXPECT_EQ(status["data"]["sid"], "c1");
  http::Client client(fake.endpoint());

  auto reply = client.Post("/prompt", Json{{"prompt", Graph(3)}, {"client_id", "c1"}}.dump());

  ASSERT_TRUE(reply) << reply.error().message;
  ASSERT_EQ(reply.value().status, 200) << reply.value().body;
  auto queued = Json::parse(reply.value().body);
  std::string prompt_id = queued["prompt_id"];
  EXPECT_EQ(queued["node_errors"], Json::object());
  std::vector<std::string> events;
  int binary = 0;
  while (true) {
    auto msg = ws.value()->Read(std::chrono::seconds(30));
    ASSERT_TRUE(msg) << msg.error().message;
    if (msg.value().binary) {
      ++binary;
      continue;
    }
    auto event = Json::parse(msg.value().data);
    std::string type = event["type"];
    const Json& d = event["data"];
    if (type == "status") continue;  // broadcast on every queue change
    EXPECT_EQ(d["prompt_id"], prompt_id) << msg.value().data;
    if (type == "executing") {
      events.push_back(d["node"].is_null() ? "executing null"
                                           : "executing " + d["node"].get<std::string>());
      if (d["node"].is_null()) break;
    } else if (type == "progress") {
      events.push_back(fmt::format("progress {}/{}", d["value"].get<int>(), d["max"].get<int>()));
    } else if (type == "executed") {
      events.push_back("executed " + d["node"].get<std::string>());
      EXPECT_EQ(d["output"]["images"][0]["filename"], "test_00001_.png");
      EXPECT_EQ(d["output"]["images"][0]["subfolder"], "gpuq");
    } else {
      events.push_back(type);
    }
  }
  // Dependency order; among ready nodes, numeric id order.
  EXPECT_THAT(events, ElementsAre("execution_start", "execution_cached", "executing 4",
                                  "executing 6", "executing 3", "progress 1/3", "progress 2/3",
                                  "progress 3/3", "executing 8", "executing 9", "executed 9",
                                  "execution_success", "executing null"));
  EXPECT_EQ(binary, 1);  // one preview frame
  auto history = client.Get("/history/" + prompt_id);
  ASSERT_TRUE(history);
  auto entry = Json::parse(history.value().body)[prompt_id];
  EXPECT_EQ(entry["status"]["status_str"], "success");
  EXPECT_EQ(entry["outputs"]["9"]["images"][0]["filename"], "test_00001_.png");
  EXPECT_TRUE(ReadFile(data.path() / "output" / "gpuq" / "test_00001_.png").starts_with(kPngMagic));
  auto view = client.Get("/view?filename=test_00001_.png&subfolder=gpuq&type=output");
  ASSERT_TRUE(view);
  EXPECT_EQ(view.value().status, 200);
  EXPECT_TRUE(view.value().body.starts_with(kPngMagic));
}

TEST(FakeComfyUi, RejectsBadPromptsWithComfyUisErrorShapes) {
  testing::TempDir data;
  FakeService fake(FakeArgs(data.path()));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  http::Client client(fake.endpoint());
  auto post = [&](const Json& body) {
    auto reply = client.Post("/api/prompt", body.dump());
    EXPECT_TRUE(reply);
    EXPECT_EQ(reply.value().status, 400) << reply.value().body;
    return Json::parse(reply.value().body);
  };

  auto missing = post(Json{{"client_id", "x"}});
  auto ui_format = post(Json{{"prompt", {{"nodes", Json::array()}, {"links", Json::array()}}}});
  auto unknown = post(Json{{"prompt", {{"5", {{"class_type", "NoSuchNode"}, {"inputs", {}}}}}}});
  auto bad_value = post(Json{{"prompt", Graph(5, "x.safetensors")}});

  EXPECT_EQ(missing["error"]["type"], "no_prompt");
  EXPECT_EQ(ui_format["error"]["type"], "invalid_prompt");
  EXPECT_EQ(unknown["error"]["type"], "missing_node_type");
  EXPECT_EQ(unknown["error"]["extra_info"]["node_id"], "5");
  EXPECT_EQ(bad_value["error"]["type"], "prompt_outputs_failed_validation");
  EXPECT_EQ(bad_value["node_errors"]["4"]["class_type"], "CheckpointLoaderSimple");
  EXPECT_EQ(bad_value["node_errors"]["4"]["errors"][0]["type"], "value_not_in_list");
  EXPECT_EQ(bad_value["node_errors"]["4"]["dependent_outputs"], Json::array({"9"}));
}

TEST(FakeComfyUi, UploadRenamesOnAContentClashAndViewGuardsPaths) {
  testing::TempDir data;
  FakeService fake(FakeArgs(data.path()));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  http::Client client(fake.endpoint());
  auto upload = [&](const std::string& bytes) {
    auto form = http::EncodeForm({{.name = "image", .value = bytes, .filename = "in.png"}});
    auto reply = client.Request("POST", "/upload/image", form.body, form.content_type);
    EXPECT_TRUE(reply);
    EXPECT_EQ(reply.value().status, 200) << reply.value().body;
    return Json::parse(reply.value().body);
  };

  auto a = upload("first");
  auto same = upload("first");
  auto b = upload("second");

  EXPECT_EQ(a["name"], "in.png");
  EXPECT_EQ(a["type"], "input");
  EXPECT_EQ(same["name"], "in.png");
  EXPECT_EQ(b["name"], "in (1).png");
  EXPECT_EQ(ReadFile(data.path() / "input" / "in (1).png"), "second");
  EXPECT_EQ(client.Get("/view?filename=in.png&type=input").value().status, 200);
  EXPECT_EQ(client.Get("/view?filename=nope.png").value().status, 404);
  EXPECT_EQ(client.Get("/view?filename=..%2Fx.png").value().status, 400);
  EXPECT_EQ(client.Get("/view?filename=%2Fetc%2Fpasswd").value().status, 400);
  auto stats = Json::parse(client.Get("/system_stats").value().body);
  EXPECT_EQ(stats["devices"][0]["vram_total"], int64_t{24000} * 1024 * 1024);
}

// ---- the connector ----

class ComfyUiConnectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(templates_.path());
    std::ofstream(templates_ / "t2i.json") << Graph("{{STEPS}}", "sd_xl_base_1.0.safetensors",
                                                    "{{POSITIVE_PROMPT}}, 4k", "gpuq/{{run_id}}")
                                                  .dump(2);
  }

  TaskType Type() {
    TaskType type = MakeType("comfyui", "comfyui");
    type.service = "comfyui";
    type.settings = {{"templates_dir", templates_.path().string()}};
    return type;
  }

  Result<Outcome> Execute(RunFixture& fixture, const std::string& url) {
    RunContext ctx = fixture.Context();
    ctx.service_url = url;
    ctx.gpu = 0;
    return connector_.Execute(ctx);
  }

  testing::TempDir templates_;
  testing::TempDir data_;
  ComfyUiConnector connector_;
};

TEST_F(ComfyUiConnectorTest, FillsATemplateRunsItAndDownloadsThePng) {
  FakeService fake(FakeArgs(data_.path()));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  Json payload = {{"template", "t2i"},
                  {"params", {{"POSITIVE_PROMPT", "a \"quoted\"\ncat"}, {"STEPS", 4}}}};
  ASSERT_TRUE(connector_.Validate(Type(), payload));
  RunFixture fixture(payload, Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message << "\n" << fixture.Log() << fake.Output();
  const auto& files = outcome.value().files;
  ASSERT_THAT(files, SizeIs(1));
  // filename_prefix gpuq/<run id> -> subfolder gpuq, file <run id>_00001_.png
  EXPECT_EQ(files[0], fmt::format("runs/{0}/gpuq/{0}_00001_.png", fixture.run().id));
  EXPECT_TRUE(ReadFile(fixture.data_dir() / files[0]).starts_with(kPngMagic));
  EXPECT_EQ(outcome.value().result["outputs"]["9"], Json::array({files[0]}));
  EXPECT_EQ(outcome.value().result["status"], "success");
  auto progress = fixture.progress();
  bool saw_steps = false;
  for (const auto& p : progress) saw_steps |= p.message == "node 3 KSampler 2/4";
  EXPECT_TRUE(saw_steps);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().fraction, 1.0);
  // The prompt text arrived intact (JSON-escaped, not spliced into the text).
  auto history = http::Client(fake.endpoint())
                     .Get("/history/" + outcome.value().result["prompt_id"].get<std::string>());
  auto entry = Json::parse(history.value().body).begin().value();
  EXPECT_EQ(entry["prompt"][2]["6"]["inputs"]["text"], "a \"quoted\"\ncat, 4k");
  EXPECT_EQ(entry["prompt"][2]["3"]["inputs"]["steps"], 4);  // the type is kept
}

TEST_F(ComfyUiConnectorTest, RunsAnInlineWorkflowAndUploadsImages) {
  FakeService fake(FakeArgs(data_.path()));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  Json graph = Graph(2);
  graph["10"] = {{"class_type", "LoadImage"}, {"inputs", {{"image", "{{REF}}"}}}};
  Json payload = {{"workflow", graph}, {"images", {{"REF", "aGVsbG8="}}}};  // "hello"
  ASSERT_TRUE(connector_.Validate(Type(), payload));
  RunFixture fixture(payload, Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message << "\n" << fixture.Log() << fake.Output();
  EXPECT_THAT(outcome.value().files, SizeIs(1));
  EXPECT_EQ(ReadFile(data_.path() / "input" / fmt::format("gpuq-{}-REF.png", fixture.run().id)),
            "hello");
}

TEST_F(ComfyUiConnectorTest, AValidationErrorFailsNamingTheNode) {
  FakeService fake(FakeArgs(data_.path()));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Json{{"workflow", Graph(2, "missing.safetensors")}}, Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("node 4 (CheckpointLoaderSimple)"));
  EXPECT_THAT(outcome.error().message, HasSubstr("missing.safetensors"));
}

TEST_F(ComfyUiConnectorTest, AnExecutionErrorFailsNamingTheNode) {
  FakeService fake(FakeArgs(data_.path()));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  Json graph = Graph(2);
  graph["8"]["inputs"]["fake_fault"] = "execution_error";
  RunFixture fixture(Json{{"workflow", graph}}, Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("comfyui node 8 (VAEDecode): VAEDecode failed"));
}

TEST_F(ComfyUiConnectorTest, StopInterruptsThePromptWithinASecond) {
  FakeService fake(FakeArgs(data_.path()));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  Json graph = Graph(2);
  graph["3"]["inputs"]["fake_fault"] = "hang";
  RunFixture fixture(Json{{"workflow", graph}}, Type());
  Result<Outcome> outcome = Error{Errc::kInternal, "not run"};
  std::thread runner([&] { outcome = Execute(fixture, fake.url()); });
  ASSERT_TRUE(testing::WaitUntil([&] {
    for (const auto& p : fixture.progress()) {
      if (p.message == "node 3 KSampler") return true;
    }
    return false;
  }));

  auto asked = std::chrono::steady_clock::now();
  fixture.stop().request_stop();
  runner.join();
  auto took = std::chrono::steady_clock::now() - asked;

  EXPECT_LT(took, std::chrono::seconds(1));
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_TRUE(testing::WaitUntil([&] {
    return fake.Output().find("comfyui interrupt prompt=") != std::string::npos &&
           fake.Output().find("running=(none)") == std::string::npos;
  })) << fake.Output();
}

TEST_F(ComfyUiConnectorTest, ADroppedWebSocketStillCompletesThroughHistory) {
  FakeService fake(FakeArgs(data_.path()));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  Json graph = Graph(10);
  graph["3"]["inputs"]["fake_fault"] = "drop_ws";
  RunFixture fixture(Json{{"workflow", graph}}, Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message << "\n" << fixture.Log() << fake.Output();
  EXPECT_THAT(outcome.value().files, SizeIs(1));
  EXPECT_THAT(fixture.Log(), HasSubstr("websocket lost"));
}

TEST_F(ComfyUiConnectorTest, AMalformedFrameIsSkipped) {
  FakeService fake(FakeArgs(data_.path(), {"--fault", "malformed_ws"}));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Json{{"workflow", Graph(2)}}, Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message << "\n" << fixture.Log();
  EXPECT_EQ(outcome.value().result["malformed_messages"], 1);
}

TEST_F(ComfyUiConnectorTest, Http500OnPromptIsRetryable) {
  FakeService fake(FakeArgs(data_.path(), {"--fault", "http500"}));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Json{{"workflow", Graph(2)}}, Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInternal);
  EXPECT_THAT(outcome.error().message, HasSubstr("replied 500"));
}

TEST_F(ComfyUiConnectorTest, AServerThatIsDownIsUnavailable) {
  RunFixture fixture(Json{{"workflow", Graph(2)}}, Type());

  auto outcome = Execute(fixture, fmt::format("http://127.0.0.1:{}", testing::FreePort()));

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
}

TEST_F(ComfyUiConnectorTest, ValidateRejectsBadPayloads) {
  auto rejects = [&](const Json& payload, std::string_view words) {
    auto r = connector_.Validate(Type(), payload);
    ASSERT_FALSE(r) << payload.dump();
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_THAT(r.error().message, HasSubstr(std::string(words)));
  };

  rejects(Json{{"template", "nope"}}, "template 'nope' not found");
  rejects(Json{{"template", "../t2i"}}, "not a plain file name");
  rejects(Json{{"template", "t2i"}, {"params", {{"STEPS", 3}}}}, "POSITIVE_PROMPT");
  rejects(Json{{"workflow", {{"nodes", Json::array()}, {"links", Json::array()}}}}, "UI format");
  rejects(Json{{"workflow", {{"1", {{"inputs", Json::object()}}}}}}, "not in API format");
  rejects(Json{{"params", Json::object()}}, "exactly one of");
  rejects(Json::array(), "JSON object");
  rejects(Json{{"workflow", Graph()}, {"images", {{"X", "!!"}}}}, "images.X");
  EXPECT_TRUE(connector_.Validate(
      Type(), Json{{"template", "t2i"}, {"POSITIVE_PROMPT", "x"}, {"steps", 3}}));
  auto no_dir = MakeType("comfyui", "comfyui");
  EXPECT_FALSE(connector_.Validate(no_dir, Json{{"template", "t2i"}}));
}

TEST_F(ComfyUiConnectorTest, ChecksItsSettings) {
  TaskType type = Type();
  type.settings["upload"] = true;
  type.settings["templates_dir"] = "/no/such/dir";

  auto problems = connector_.CheckSettings(type);

  ASSERT_THAT(problems, SizeIs(2));
}

}  // namespace
}  // namespace gpuq::connectors
