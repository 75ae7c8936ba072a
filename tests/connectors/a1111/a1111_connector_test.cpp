#include "connectors/a1111/a1111_connector.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "connectors/fake_service.hpp"
#include "connectors/run_fixture.hpp"
#include "core/base64.hpp"
#include "http/client.hpp"
#include "support/child_process.hpp"
#include "support/wait.hpp"

namespace gpuq::connectors {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;

namespace fs = std::filesystem;

constexpr std::string_view kPngSignature = "\x89PNG\r\n\x1a\n";
// A 1x1 PNG.
constexpr std::string_view kTinyPng =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJg"
    "gg==";

TaskType A1111Type(Json settings = Json::object()) {
  TaskType type = MakeType("sd", "a1111");
  type.service = "a1111";
  type.settings = std::move(settings);
  return type;
}

// A fake A1111 whose steps take `work_ms`.
std::vector<std::string> FakeA1111(int work_ms, std::string fault = "") {
  std::vector<std::string> flags = {"--personality", "a1111", "--work-ms",
                                    std::to_string(work_ms)};
  if (!fault.empty()) {
    flags.push_back("--fault");
    flags.push_back(std::move(fault));
  }
  return flags;
}

Json Txt2Img(std::string prompt, int steps = 2) {
  return Json{{"mode", "txt2img"},
              {"params",
               {{"prompt", std::move(prompt)},
                {"steps", steps},
                {"width", 64},
                {"height", 48},
                {"seed", 42}}}};
}

Result<Outcome> Execute(RunFixture& fixture, const std::string& service_url) {
  ConnectorOptions options;
  options.data_dir = fixture.data_dir();
  A1111Connector connector(options);
  RunContext ctx = fixture.Context();
  ctx.service_url = service_url;
  ctx.gpu = 0;
  return connector.Execute(ctx);
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string CurrentTask(const FakeService& fake) {
  http::Client client(fake.endpoint(), std::chrono::seconds(5));
  auto reply = client.Get("/sdapi/v1/progress?skip_current_image=true");
  if (!reply || reply.value().status != 200) return "";
  auto json = Json::parse(reply.value().body, nullptr, false);
  if (!json.is_object() || !json["current_task"].is_string()) return "";
  return json["current_task"].get<std::string>();
}

// A UI user's endless job (force_task_id "task(ui-job)"), on a thread of its own; ends when
// interrupted.
std::thread StartUiJob(const FakeService& fake) {
  return std::thread([endpoint = fake.endpoint()] {
    http::Client client(endpoint, std::chrono::seconds(120));
    auto reply = client.Post("/sdapi/v1/txt2img",
                             Json{{"prompt", "ui job"}, {"steps", 100000}, {"width", 8},
                                  {"height", 8}, {"force_task_id", "task(ui-job)"}}
                                 .dump());
    EXPECT_TRUE(reply && reply.value().status == 200);
  });
}

bool Interrupt(const FakeService& fake) {
  http::Client client(fake.endpoint(), std::chrono::seconds(5));
  auto reply = client.Post("/sdapi/v1/interrupt", "{}");
  return reply && reply.value().status == 200;
}

TEST(A1111Connector, TxtToImgWritesPngFilesDecodesInfoAndReportsOurProgress) {
  FakeService fake(FakeA1111(25));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Txt2Img("a red fox", 20), A1111Type({{"progress_interval_ms", 50}}));

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message << "\n" << fixture.Log();
  const Json& result = outcome.value().result;
  std::string image = "runs/" + fixture.run().id + "/image-0.png";
  EXPECT_EQ(outcome.value().files, std::vector<std::string>{image});
  EXPECT_EQ(result["images"], Json::array({image}));
  EXPECT_TRUE(result["grid"].is_null());
  std::string bytes = ReadFile(fixture.data_dir() / image);
  EXPECT_THAT(bytes, StartsWith(std::string(kPngSignature)));
  EXPECT_EQ(result["seed"], 42);
  EXPECT_EQ(result["all_seeds"], Json::array({42}));
  ASSERT_TRUE(result["info"].is_object()) << result.dump();
  EXPECT_EQ(result["info"]["width"], 64);
  EXPECT_THAT(result["info"]["infotexts"][0].get<std::string>(), HasSubstr("Seed: 42"));
  EXPECT_EQ(result["task_id"], "task(gpuq-" + fixture.run().id + ")");
  EXPECT_THAT(fake.Output(), HasSubstr("started task=task(gpuq-" + fixture.run().id + ")"));
  auto progress = fixture.progress();
  ASSERT_THAT(progress, Not(SizeIs(0)));
  bool saw_step = false;
  for (const auto& p : progress) {
    if (p.message.find("/20") != std::string::npos) saw_step = true;
  }
  EXPECT_TRUE(saw_step) << "no step progress reported";
  EXPECT_EQ(progress.back().fraction, 1.0);
}

TEST(A1111Connector, BatchKeepsTheGridApartFromTheImages) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  Json payload = Txt2Img("two cats", 1);
  payload["params"]["batch_size"] = 2;
  RunFixture fixture(payload, A1111Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  const Json& result = outcome.value().result;
  std::string dir = "runs/" + fixture.run().id + "/";
  EXPECT_EQ(result["grid"], dir + "image-0.png");
  EXPECT_EQ(result["images"], Json::array({dir + "image-1.png", dir + "image-2.png"}));
  EXPECT_THAT(outcome.value().files, SizeIs(3));
  EXPECT_EQ(result["all_seeds"], Json::array({42, 43}));
}

TEST(A1111Connector, ImgToImgSendsABase64InitImage) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  Json payload = {{"mode", "img2img"},
                  {"params", {{"prompt", "in oil"}, {"steps", 2}, {"width", 64}, {"height", 64}}},
                  {"init_image", "data:image/png;base64," + std::string(kTinyPng)}};
  RunFixture fixture(payload, A1111Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  size_t size = Base64Decode(kTinyPng).value().size();
  EXPECT_THAT(fake.Output(), HasSubstr(fmt::format("img2img queued task=task(gpuq-{}) steps=2 "
                                                   "size=64x64 images=1 init_bytes={}",
                                                   fixture.run().id, size)));
  EXPECT_THAT(ReadFile(fixture.run_dir() / "image-0.png"),
              StartsWith(std::string(kPngSignature)));
  EXPECT_EQ(outcome.value().result["mode"], "img2img");
}

TEST(A1111Connector, ImgToImgReadsTheInitImageFromAParentRun) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  // The parent: a txt2img run whose image becomes the child's init image.
  RunFixture parent(Txt2Img("a house"), A1111Type());
  auto first = Execute(parent, fake.url());
  ASSERT_TRUE(first) << first.error().message;
  Json payload = {{"params", {{"prompt", "at night"}, {"steps", 1}, {"width", 64}, {"height", 64}}},
                  {"init_image", {{"run", parent.run().id}, {"file", "out/house.png"}}}};
  RunFixture run(payload, A1111Type({{"mode", "img2img"}}));
  // Each fixture has a data dir of its own: put the parent's file where the child looks.
  fs::path own_parent = run.data_dir() / "runs" / parent.run().id / "out";
  fs::create_directories(own_parent);
  fs::copy_file(parent.run_dir() / "image-0.png", own_parent / "house.png");

  auto outcome = Execute(run, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  size_t size = fs::file_size(own_parent / "house.png");
  EXPECT_THAT(fake.Output(),
              HasSubstr(fmt::format("img2img queued task=task(gpuq-{}) steps=1 size=64x64 "
                                    "images=1 init_bytes={}",
                                    run.run().id, size)));
  EXPECT_THAT(outcome.value().result["images"], SizeIs(1));
}

TEST(A1111Connector, ParentFileLeavingTheRunDirThroughASymlinkIsRefused) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture run(Json{{"mode", "img2img"}, {"init_image", {{"run", "parent"}, {"file", "x.png"}}}},
                 A1111Type());
  fs::create_directories(run.data_dir() / "runs" / "parent");
  std::ofstream(run.data_dir() / "secret.png") << "not yours";
  fs::create_symlink(run.data_dir() / "secret.png", run.data_dir() / "runs" / "parent" / "x.png");

  auto outcome = Execute(run, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("outside the run's dir"));
  EXPECT_THAT(fake.Output(), Not(HasSubstr("img2img queued")));
}

TEST(A1111Connector, MissingParentFileFailsTheRun) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture run(Json{{"mode", "img2img"}, {"init_image", {{"run", "gone"}, {"file", "x.png"}}}},
                 A1111Type());

  auto outcome = Execute(run, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("no run gone"));
}

TEST(A1111Connector, ProgressOfAnotherJobIsNotTakenAsOurs) {
  FakeService fake(FakeA1111(25));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  // A UI user's job holds A1111's queue lock until the test interrupts it.
  std::thread ui = StartUiJob(fake);
  ASSERT_TRUE(testing::WaitUntil([&] { return CurrentTask(fake) == "task(ui-job)"; }));
  RunFixture fixture(Txt2Img("ours", 3), A1111Type({{"progress_interval_ms", 50}}));
  std::optional<Result<Outcome>> outcome_slot;
  std::thread worker([&] { outcome_slot = Execute(fixture, fake.url()); });
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return fixture.Log().find("waiting: a1111 is running") != std::string::npos; }));
  ASSERT_TRUE(Interrupt(fake));  // the UI job ends; ours runs
  worker.join();
  ui.join();
  ASSERT_TRUE(outcome_slot.has_value());
  auto& outcome = *outcome_slot;

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_THAT(fixture.Log(), HasSubstr("waiting: a1111 is running task(ui-job)"));
  for (const auto& p : fixture.progress()) {
    EXPECT_THAT(p.message, Not(HasSubstr("/100000"))) << "the UI job's progress was taken as ours";
  }
  EXPECT_THAT(fake.Output(), HasSubstr("finished task=task(ui-job)"));
}

TEST(A1111Connector, StopInterruptsOurJobAndReturnsWithinASecond) {
  FakeService fake(FakeA1111(50));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Txt2Img("a long one", 2000), A1111Type({{"progress_interval_ms", 50}}));
  std::optional<Result<Outcome>> outcome;
  std::chrono::steady_clock::time_point returned;
  std::thread worker([&] {
    outcome = Execute(fixture, fake.url());
    returned = std::chrono::steady_clock::now();
  });
  ASSERT_TRUE(testing::WaitUntil([&] { return !fixture.progress().empty(); }));

  auto stopped = std::chrono::steady_clock::now();
  fixture.stop().request_stop();
  worker.join();

  EXPECT_LT(returned - stopped, std::chrono::seconds(1));
  ASSERT_TRUE(outcome.has_value());
  ASSERT_FALSE(*outcome);
  EXPECT_EQ(outcome->error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome->error().message, HasSubstr("stopped"));
  std::string task = "task(gpuq-" + fixture.run().id + ")";
  EXPECT_TRUE(testing::WaitUntil(
      [&] { return fake.Output().find("a1111 interrupt task=" + task) != std::string::npos; }))
      << fake.Output();
  EXPECT_TRUE(testing::WaitUntil([&] {
    return fake.Output().find("finished task=" + task + " images=0 interrupted") !=
           std::string::npos;
  })) << fake.Output();
}

TEST(A1111Connector, StopWhileAnotherJobRunsDoesNotInterruptIt) {
  FakeService fake(FakeA1111(25));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  std::thread ui = StartUiJob(fake);
  ASSERT_TRUE(testing::WaitUntil([&] { return CurrentTask(fake) == "task(ui-job)"; }));
  RunFixture fixture(Txt2Img("ours", 1), A1111Type({{"progress_interval_ms", 50}}));
  std::optional<Result<Outcome>> outcome;
  std::thread worker([&] { outcome = Execute(fixture, fake.url()); });
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return fixture.Log().find("waiting: a1111 is running") != std::string::npos; }));

  fixture.stop().request_stop();
  worker.join();

  ASSERT_TRUE(outcome.has_value() && !*outcome);
  EXPECT_EQ(outcome->error().code, Errc::kUnavailable);
  EXPECT_THAT(fake.Output(), Not(HasSubstr("a1111 interrupt")));
  EXPECT_EQ(CurrentTask(fake), "task(ui-job)");
  EXPECT_THAT(fixture.Log(), HasSubstr("not interrupting it"));
  ASSERT_TRUE(Interrupt(fake));
  ui.join();
}

TEST(A1111Connector, ServerErrorFailsTheRunWithA1111sWords) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Txt2Img("FAKE_FAIL_500"), A1111Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message,
              HasSubstr("a1111 txt2img replied 500: OutOfMemoryError: CUDA out of memory"));
}

TEST(A1111Connector, UnknownSamplerFailsWithA1111sDetail) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  Json payload = Txt2Img("a cat");
  payload["params"]["sampler_name"] = "Nope";
  RunFixture fixture(payload, A1111Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("replied 400: Sampler not found"));
}

TEST(A1111Connector, WrongFieldTypeFailsWithTheValidationDetail) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  Json payload = Txt2Img("a cat");
  payload["params"]["steps"] = "many";
  RunFixture fixture(payload, A1111Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message,
              HasSubstr("replied 422: body.steps: value is not a valid integer"));
}

TEST(A1111Connector, ServiceWithoutApiFlagIsNamed) {
  FakeService fake(FakeA1111(0, "noapi"));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Txt2Img("a cat"), A1111Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message, HasSubstr("replied 404: Not Found (is A1111 started with --api?)"));
}

TEST(A1111Connector, DroppedConnectionIsRetriable) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Txt2Img("FAKE_DROP"), A1111Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable) << outcome.error().message;
  EXPECT_THAT(outcome.error().message, HasSubstr("a1111 txt2img at " + fake.url()));
}

TEST(A1111Connector, MalformedReplyFailsClearly) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Txt2Img("FAKE_MALFORMED"), A1111Type());

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message,
              HasSubstr("replied 200 with a body that is not a JSON object: <html>"));
  EXPECT_FALSE(fs::exists(fixture.run_dir() / "image-0.png"));
}

TEST(A1111Connector, ServerDownIsUnavailable) {
  int port = testing::FreePort();
  RunFixture fixture(Txt2Img("a cat"), A1111Type());

  auto outcome = Execute(fixture, fmt::format("http://127.0.0.1:{}", port));

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
}

TEST(A1111Connector, SilentServicePastTheRunTimeoutIsATimeout) {
  FakeService fake(FakeA1111(100));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Txt2Img("slow", 1000), A1111Type());
  gpuq::Run run = fixture.run();
  run.timeout_s = 1;
  RunContext base = fixture.Context();
  RunContext ctx{.run = run,
                 .task_type = base.task_type,
                 .data_dir = base.data_dir,
                 .run_dir = base.run_dir,
                 .log_file = base.log_file,
                 .service_url = fake.url(),
                 .gpu = 0,
                 .stop = base.stop,
                 .report_progress = base.report_progress};
  A1111Connector connector;

  auto outcome = connector.Execute(ctx);

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kTimeout) << outcome.error().message;
}

// ---- submit-time checks (422)

Result<void> Validate(const Json& payload, Json settings = Json::object()) {
  return A1111Connector().Validate(A1111Type(std::move(settings)), payload);
}

TEST(A1111ConnectorValidate, AcceptsTheDocumentedShapes) {
  EXPECT_TRUE(Validate(Txt2Img("a cat")));
  EXPECT_TRUE(Validate(Json::object()));
  EXPECT_TRUE(Validate(Json{{"mode", "img2img"}, {"init_image", kTinyPng}}));
  EXPECT_TRUE(Validate(Json{{"init_image", "data:image/png;base64," + std::string(kTinyPng)}},
                       Json{{"mode", "img2img"}}));
  EXPECT_TRUE(Validate(
      Json{{"mode", "img2img"}, {"init_image", {{"run", "abc"}, {"file", "out/./a.png"}}}}));
  EXPECT_TRUE(Validate(
      Json{{"mode", "img2img"}, {"params", {{"init_images", Json::array({kTinyPng})}}}}));
}

TEST(A1111ConnectorValidate, RejectsBadPayloads) {
  struct Case {
    Json payload;
    std::string says;
  };
  std::vector<Case> cases = {
      {Json::array(), "JSON object"},
      {Json{{"mode", "upscale"}}, "mode must be"},
      {Json{{"mode", "img2img"}}, "img2img needs an init image"},
      {Json{{"mode", "img2img"}, {"params", {{"init_images", Json::array()}}}}, "non-empty"},
      {Json{{"params", "steps=20"}}, "params must be an object"},
      {Json{{"prompt", "a cat"}}, "unknown key \"prompt\""},
      {Json{{"init_image", kTinyPng}}, "only for mode \"img2img\""},
      {Json{{"mode", "img2img"}, {"init_image", "not base64!"}}, "not valid base64"},
      {Json{{"mode", "img2img"}, {"init_image", "data:image/png,abc"}}, ";base64,"},
      {Json{{"mode", "img2img"}, {"init_image", 7}}, "base64 text or"},
      {Json{{"mode", "img2img"}, {"init_image", {{"run", "abc"}, {"file", "../other/a.png"}}}},
       "inside run abc's dir"},
      {Json{{"mode", "img2img"}, {"init_image", {{"run", "abc"}, {"file", "x/../../a.png"}}}},
       "inside run abc's dir"},
      {Json{{"mode", "img2img"}, {"init_image", {{"run", "abc"}, {"file", "/etc/passwd"}}}},
       "inside run abc's dir"},
      {Json{{"mode", "img2img"}, {"init_image", {{"run", ".."}, {"file", "a.png"}}}},
       "not a run id"},
      {Json{{"mode", "img2img"}, {"init_image", {{"run", "a/b"}, {"file", "a.png"}}}},
       "not a run id"},
  };
  for (const auto& c : cases) {
    auto result = Validate(c.payload);

    ASSERT_FALSE(result) << c.payload.dump();
    EXPECT_EQ(result.error().code, Errc::kInvalidArgument);
    EXPECT_THAT(result.error().message, HasSubstr(c.says)) << c.payload.dump();
  }
}

TEST(A1111ConnectorSettings, ChecksEachKey) {
  A1111Connector connector;
  EXPECT_THAT(connector.CheckSettings(A1111Type(
                  {{"mode", "img2img"}, {"progress_interval_ms", 100}, {"params", {{"steps", 30}}}})),
              SizeIs(0));

  auto problems = connector.CheckSettings(A1111Type(
      {{"mode", "upscale"}, {"progress_interval_ms", 5}, {"params", 3}, {"templates_dir", "/x"}}));

  ASSERT_THAT(problems, SizeIs(4));
  std::vector<std::string> keys;
  for (const auto& p : problems) keys.push_back(p.key);
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre("mode", "progress_interval_ms", "params",
                                                    "templates_dir"));
}

TEST(A1111Connector, TaskTypeParamsAreDefaultsUnderThePayloads) {
  FakeService fake(FakeA1111(0));
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Txt2Img("a cat", 3),
                     A1111Type({{"params", {{"steps", 30}, {"sampler_name", "DPM++ 2M"}}}}));

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome.value().result["info"]["steps"], 3);
  EXPECT_EQ(outcome.value().result["info"]["sampler_name"], "DPM++ 2M");
}

}  // namespace
}  // namespace gpuq::connectors
