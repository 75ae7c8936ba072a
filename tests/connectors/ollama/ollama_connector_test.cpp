#include "connectors/ollama/ollama_connector.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "connectors/fake_service.hpp"
#include "connectors/run_fixture.hpp"
#include "http/client.hpp"
#include "support/child_process.hpp"
#include "support/wait.hpp"

namespace gpuq::connectors {
namespace {

using ::testing::HasSubstr;
using testing::WaitUntil;

// The fake's reply is num_predict words of this sentence (see fake_service/ollama.cpp).
constexpr const char* kTwelveTokens =
    "The fake model answers every question with the same calm and patient";

TaskType OllamaType(Json settings = Json::object()) {
  TaskType type = MakeType("llm", "ollama");
  type.service = "ollama";
  type.settings = std::move(settings);
  return type;
}

FakeService StartFake(std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {"--personality", "ollama", "--work-ms", "5"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return FakeService(argv);
}

Result<Outcome> Execute(RunFixture& fixture, const std::string& service_url) {
  OllamaConnector connector;
  RunContext ctx = fixture.Context();
  ctx.service_url = service_url;
  ctx.gpu = 0;
  return connector.Execute(ctx);
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

Json Ps(const FakeService& fake) {
  http::Client client(fake.endpoint(), std::chrono::seconds(10));
  auto reply = client.Get("/api/ps");
  EXPECT_TRUE(reply && reply.value().status == 200);
  return reply ? Json::parse(reply.value().body, nullptr, false) : Json();
}

std::vector<std::string> LoadedNames(const FakeService& fake) {
  std::vector<std::string> names;
  Json ps = Ps(fake);
  for (const auto& model : ps["models"]) names.push_back(model["name"].get<std::string>());
  return names;
}

Result<Outcome> RunPrompt(const FakeService& fake, const std::string& prompt,
                          Json settings = {{"model", "llama3.2"}}) {
  RunFixture fixture(Json{{"prompt", prompt}}, OllamaType(std::move(settings)));
  return Execute(fixture, fake.url());
}

// --- the fake itself -------------------------------------------------------------------------

TEST(OllamaFake, AnswersTheBasicRoutes) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  http::Client client(fake.endpoint(), std::chrono::seconds(10));

  auto root = client.Get("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root.value().status, 200);
  EXPECT_EQ(root.value().body, "Ollama is running");
  auto head = client.Request("HEAD", "/");
  ASSERT_TRUE(head);
  EXPECT_EQ(head.value().status, 200);
  auto version = client.Get("/api/version");
  ASSERT_TRUE(version);
  EXPECT_TRUE(Json::parse(version.value().body)["version"].is_string());
  auto tags = client.Get("/api/tags");
  ASSERT_TRUE(tags);
  std::vector<std::string> names;
  Json listed = Json::parse(tags.value().body);
  for (const auto& model : listed["models"]) {
    names.push_back(model["name"].get<std::string>());
    EXPECT_TRUE(model["details"]["parameter_size"].is_string());
  }
  EXPECT_THAT(names, ::testing::Contains("llama3.2:latest"));
  EXPECT_THAT(names, ::testing::Contains("qwen2.5:7b"));
  EXPECT_EQ(Ps(fake)["models"], Json::array());
}

TEST(OllamaFake, StreamsNdjsonOrOneObjectWithStreamFalse) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  http::Client client(fake.endpoint(), std::chrono::seconds(10));

  Json body = {{"model", "llama3.2"}, {"prompt", "hi"}, {"options", {{"num_predict", 3}}}};
  auto streamed = client.Post("/api/generate", body.dump());
  ASSERT_TRUE(streamed);
  EXPECT_EQ(streamed.value().headers["content-type"], "application/x-ndjson");
  std::vector<Json> lines;
  std::istringstream in(streamed.value().body);
  for (std::string line; std::getline(in, line);) lines.push_back(Json::parse(line));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0]["response"], "The");
  EXPECT_EQ(lines[0]["done"], false);
  EXPECT_EQ(lines[3]["done"], true);
  EXPECT_EQ(lines[3]["done_reason"], "length");
  EXPECT_EQ(lines[3]["eval_count"], 3);
  EXPECT_TRUE(lines[3]["context"].is_array());
  EXPECT_GT(lines[3]["total_duration"].get<int64_t>(), 0);

  body["stream"] = false;
  auto single = client.Post("/api/generate", body.dump());
  ASSERT_TRUE(single);
  EXPECT_THAT(single.value().headers["content-type"], HasSubstr("application/json"));
  Json reply = Json::parse(single.value().body);
  EXPECT_EQ(reply["response"], "The fake model");
  EXPECT_EQ(reply["done"], true);
  EXPECT_EQ(reply["eval_count"], 3);

  Json chat = {{"model", "qwen2.5:7b"},
               {"messages", {{{"role", "user"}, {"content", "hi"}}}},
               {"stream", false},
               {"options", {{"num_predict", 2}}}};
  auto chat_reply = client.Post("/api/chat", chat.dump());
  ASSERT_TRUE(chat_reply);
  reply = Json::parse(chat_reply.value().body);
  EXPECT_EQ(reply["message"]["role"], "assistant");
  EXPECT_EQ(reply["message"]["content"], "The fake");
  EXPECT_FALSE(reply.contains("context"));
}

TEST(OllamaFake, KeepAliveFollowsOllamaRules) {
  FakeService fake = StartFake({"--vram-mb", "1500"});
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  http::Client client(fake.endpoint(), std::chrono::seconds(10));

  // A bare numeric string fails Go's ParseDuration.
  auto bad = client.Post("/api/generate", R"({"model":"llama3.2","keep_alive":"300"})");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad.value().status, 400);
  EXPECT_THAT(bad.value().body, HasSubstr("missing unit"));

  // No prompt loads; a negative keep_alive keeps it forever.
  auto load = client.Post("/api/generate", R"({"model":"llama3.2","keep_alive":-1})");
  ASSERT_TRUE(load);
  EXPECT_EQ(Json::parse(load.value().body)["done_reason"], "load");
  Json ps = Ps(fake);
  ASSERT_EQ(ps["models"].size(), 1u);
  EXPECT_EQ(ps["models"][0]["name"], "llama3.2:latest");
  EXPECT_EQ(ps["models"][0]["size_vram"], int64_t{1500} * 1024 * 1024);
  int year = std::stoi(ps["models"][0]["expires_at"].get<std::string>().substr(0, 4));
  EXPECT_GT(year, 2200);

  // A number is seconds; "10m" a Go duration.
  ASSERT_TRUE(client.Post("/api/generate", R"({"model":"qwen2.5:7b","keep_alive":"10m"})"));
  EXPECT_EQ(LoadedNames(fake).size(), 2u);
  ASSERT_TRUE(client.Post("/api/generate", R"({"model":"qwen2.5:7b","keep_alive":0.2})"));
  EXPECT_TRUE(WaitUntil([&] { return LoadedNames(fake).size() == 1; }));

  // keep_alive 0 with a prompt: generated, then unloaded.
  auto once = client.Post(
      "/api/generate",
      R"({"model":"llama3.2","prompt":"hi","stream":false,"keep_alive":0,"options":{"num_predict":1}})");
  ASSERT_TRUE(once);
  EXPECT_EQ(Json::parse(once.value().body)["done_reason"], "length");
  EXPECT_EQ(Ps(fake)["models"], Json::array());
}

// --- the connector ---------------------------------------------------------------------------

TEST(OllamaConnector, GenerateReturnsTheTextAndTokenCounts) {
  FakeService fake = StartFake({"--work-ms", "30"});
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Json{{"prompt", "Why is the sky blue?"}, {"options", {{"num_predict", 10}}}},
                     OllamaType({{"model", "llama3.2"}}));

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message << "\n" << fixture.Log();
  const Json& result = outcome.value().result;
  EXPECT_EQ(result["model"], "llama3.2");
  EXPECT_EQ(result["response"], "The fake model answers every question with the same calm");
  EXPECT_EQ(result["done_reason"], "length");
  EXPECT_EQ(result["eval_count"], 10);
  EXPECT_GT(result["prompt_eval_count"].get<int>(), 0);
  EXPECT_GT(result["total_duration_ms"].get<double>(), 0);
  EXPECT_GT(result["eval_duration_ms"].get<double>(), 0);
  EXPECT_GT(result["tokens_per_s"].get<double>(), 0);
  std::string file = "runs/" + fixture.run().id + "/response.txt";
  EXPECT_EQ(outcome.value().files, std::vector<std::string>{file});
  EXPECT_EQ(ReadFile(fixture.data_dir() / file), result["response"].get<std::string>());

  auto progress = fixture.progress();
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.front().message, "1 tokens");
  ASSERT_TRUE(progress.front().fraction.has_value());
  EXPECT_DOUBLE_EQ(*progress.front().fraction, 0.1);
  EXPECT_DOUBLE_EQ(progress.back().fraction.value_or(0), 1.0);
  EXPECT_THAT(fixture.Log(), HasSubstr("/api/generate"));
}

TEST(OllamaConnector, ChatReturnsTheAssistantMessage) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(
      Json{{"system", "Be brief."}, {"messages", {{{"role", "user"}, {"content", "Hello there"}}}}},
      OllamaType({{"model", "qwen2.5:7b"}, {"keep_alive", "10m"}}));

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  const Json& result = outcome.value().result;
  EXPECT_EQ(result["message"]["role"], "assistant");
  EXPECT_EQ(result["message"]["content"], kTwelveTokens);
  EXPECT_FALSE(result.contains("response"));
  EXPECT_EQ(result["done_reason"], "stop");
  EXPECT_EQ(result["eval_count"], 12);
  EXPECT_THAT(fixture.Log(), HasSubstr("/api/chat"));
  EXPECT_EQ(LoadedNames(fake), std::vector<std::string>{"qwen2.5:7b"});
}

TEST(OllamaConnector, ChatModeTurnsAPromptIntoAUserMessage) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Json{{"prompt", "Hello"}, {"model", "tinyllama"}},
                     OllamaType({{"mode", "chat"}}));

  auto outcome = Execute(fixture, fake.url());

  ASSERT_TRUE(outcome) << outcome.error().message;
  EXPECT_EQ(outcome.value().result["message"]["content"], kTwelveTokens);
}

TEST(OllamaConnector, KeepAliveZeroUnloadsAfterTheRun) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();

  ASSERT_TRUE(RunPrompt(fake, "hi", {{"model", "llama3.2"}, {"keep_alive", 0}}));

  EXPECT_EQ(Ps(fake)["models"], Json::array());
}

// The GPU lifecycle's evict_api/evict_body for an Ollama service is exactly this POST.
TEST(OllamaConnector, EvictBodyUnloadsTheModel) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  ASSERT_TRUE(RunPrompt(fake, "hi", {{"model", "llama3.2"}, {"keep_alive", "1h"}}));
  ASSERT_EQ(LoadedNames(fake), std::vector<std::string>{"llama3.2:latest"});
  EXPECT_FALSE(Ps(fake)["models"][0]["expires_at"].get<std::string>().empty());

  http::Client client(fake.endpoint(), std::chrono::seconds(10));
  auto reply = client.Post("/api/generate", R"({"model": "llama3.2", "keep_alive": 0})");

  ASSERT_TRUE(reply);
  EXPECT_EQ(reply.value().status, 200);
  EXPECT_EQ(Json::parse(reply.value().body)["done_reason"], "unload");
  EXPECT_EQ(Ps(fake)["models"], Json::array());

  // The helper does the same.
  ASSERT_TRUE(RunPrompt(fake, "hi", {{"model", "qwen2.5:7b"}}));
  ASSERT_EQ(LoadedNames(fake).size(), 1u);
  ASSERT_TRUE(OllamaConnector::Unload(fake.url(), "qwen2.5:7b"));
  EXPECT_EQ(Ps(fake)["models"], Json::array());
  auto unknown = OllamaConnector::Unload(fake.url(), "nope");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::kInvalidArgument);
}

TEST(OllamaConnector, UnknownModelFailsWithOllamasWords) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();

  auto outcome = RunPrompt(fake, "hi", {{"model", "nope:1b"}});

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(outcome.error().message, HasSubstr("404"));
  EXPECT_THAT(outcome.error().message,
              HasSubstr("model 'nope:1b' not found, try pulling it first"));
}

TEST(OllamaConnector, ErrorLineMidStreamFailsWithIt) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Json{{"prompt", "FAKE_MIDSTREAM_ERROR"}}, OllamaType({{"model", "llama3.2"}}));

  auto outcome = Execute(fixture, fake.url());

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInternal);
  EXPECT_THAT(outcome.error().message, HasSubstr("after 2 tokens"));
  EXPECT_THAT(outcome.error().message, HasSubstr("an error was encountered while running"));
  EXPECT_FALSE(fixture.progress().empty());
}

TEST(OllamaConnector, DroppedStreamIsUnavailable) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();

  auto outcome = RunPrompt(fake, "FAKE_DROP");

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome.error().message, HasSubstr("ollama generate"));
}

TEST(OllamaConnector, StreamEndingWithoutDoneIsCutOff) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();

  auto outcome = RunPrompt(fake, "FAKE_TRUNCATE");

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome.error().message, HasSubstr("cut off after 2 tokens"));
}

TEST(OllamaConnector, MalformedLineFails) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();

  auto outcome = RunPrompt(fake, "FAKE_MALFORMED");

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInternal);
  EXPECT_THAT(outcome.error().message, HasSubstr("not a JSON object"));
}

TEST(OllamaConnector, ServerErrorFails) {
  FakeService fake = StartFake();
  ASSERT_TRUE(fake.healthy()) << fake.Output();

  auto outcome = RunPrompt(fake, "FAKE_500");

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kInternal);
  EXPECT_THAT(outcome.error().message, HasSubstr("500"));
  EXPECT_THAT(outcome.error().message, HasSubstr("llama runner process has terminated"));
}

TEST(OllamaConnector, FaultFlagAppliesToEveryRequest) {
  FakeService fake = StartFake({"--fault", "midstream_error"});
  ASSERT_TRUE(fake.healthy()) << fake.Output();

  auto outcome = RunPrompt(fake, "an ordinary prompt");

  ASSERT_FALSE(outcome);
  EXPECT_THAT(outcome.error().message, HasSubstr("an error was encountered while running"));
}

TEST(OllamaConnector, ServerDownIsUnavailable) {
  int port = testing::FreePort();
  RunFixture fixture(Json{{"prompt", "hi"}}, OllamaType({{"model", "llama3.2"}}));

  auto outcome = Execute(fixture, fmt::format("http://127.0.0.1:{}", port));

  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
}

TEST(OllamaConnector, StopAbortsTheStreamWithinASecond) {
  FakeService fake = StartFake({"--work-ms", "200"});
  ASSERT_TRUE(fake.healthy()) << fake.Output();
  RunFixture fixture(Json{{"prompt", "write a long story"}, {"options", {{"num_predict", 500}}}},
                     OllamaType({{"model", "llama3.2"}}));

  Result<Outcome> outcome = Error{Errc::kInternal, "not run"};
  std::thread worker([&] { outcome = Execute(fixture, fake.url()); });
  ASSERT_TRUE(WaitUntil([&] { return !fixture.progress().empty(); }));
  auto stopped_at = std::chrono::steady_clock::now();
  fixture.stop().request_stop();
  worker.join();
  auto took = std::chrono::steady_clock::now() - stopped_at;

  EXPECT_LT(took, std::chrono::seconds(1));
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, Errc::kUnavailable);
  EXPECT_THAT(outcome.error().message, HasSubstr("stopped"));
  // The server sees the client gone at its next token.
  EXPECT_TRUE(WaitUntil([&] { return fake.Output().find("client gone") != std::string::npos; }))
      << fake.Output();
}

TEST(OllamaConnector, ValidateRefusesBadPayloads) {
  OllamaConnector connector;
  TaskType with_model = OllamaType({{"model", "llama3.2"}});
  TaskType no_model = OllamaType();
  auto refused = [&](const TaskType& type, const Json& payload, const std::string& words) {
    auto r = connector.Validate(type, payload);
    ASSERT_FALSE(r) << payload.dump();
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_THAT(r.error().message, HasSubstr(words)) << payload.dump();
  };
  refused(no_model, Json{{"prompt", "hi"}}, "model");
  refused(with_model, Json::array(), "JSON object");
  refused(with_model, Json::object(), "\"prompt\" (generate) or \"messages\" (chat)");
  refused(with_model, Json{{"prompt", ""}}, "\"prompt\" (generate) or \"messages\"");
  refused(with_model, Json{{"messages", "hi"}}, "messages");
  refused(with_model, Json{{"messages", Json::array()}}, "messages");
  refused(with_model, Json{{"messages", {{{"role", "user"}}}}}, "messages[0]");
  refused(with_model, Json{{"messages", {{{"role", "user"}, {"content", "a"}}, "b"}}},
          "messages[1]");
  refused(with_model, Json{{"prompt", "hi"}, {"keep_alive", "300"}}, "missing unit");
  refused(OllamaType({{"model", "m"}, {"keep_alive", "300"}}), Json{{"prompt", "hi"}},
          "missing unit");
  refused(with_model, Json{{"prompt", "hi"}, {"keep_alive", true}}, "keep_alive");
  refused(with_model, Json{{"prompt", "hi"}, {"mode", "complete"}}, "generate or chat");
  refused(with_model,
          Json{{"mode", "generate"}, {"messages", {{{"role", "user"}, {"content", "a"}}}}},
          "generate mode needs a \"prompt\"");
  refused(with_model, Json{{"prompt", "hi"}, {"options", 3}}, "options");

  EXPECT_TRUE(connector.Validate(with_model, Json{{"prompt", "hi"}}));
  EXPECT_TRUE(connector.Validate(no_model, Json{{"prompt", "hi"}, {"model", "qwen2.5:7b"}}));
  EXPECT_TRUE(connector.Validate(
      with_model, Json{{"messages", {{{"role", "user"}, {"content", "a"}}}}, {"keep_alive", -1}}));
  for (Json keep_alive : {Json(0), Json(300), Json("10m"), Json("1h30m"), Json("-1m"), Json("0")}) {
    EXPECT_TRUE(connector.Validate(with_model, Json{{"prompt", "hi"}, {"keep_alive", keep_alive}}))
        << keep_alive.dump();
  }
}

TEST(OllamaConnector, CheckSettingsNamesTheBadKeys) {
  OllamaConnector connector;
  EXPECT_TRUE(connector
                  .CheckSettings(
                      OllamaType({{"model", "llama3.2"}, {"keep_alive", "5m"}, {"mode", "chat"}}))
                  .empty());
  auto problems = connector.CheckSettings(
      OllamaType({{"model", ""}, {"keep_alive", "300"}, {"mode", "complete"}, {"temperature", 1}}));
  std::vector<std::string> keys;
  for (const auto& problem : problems) keys.push_back(problem.key);
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre("model", "keep_alive", "mode", "temperature"));
}

}  // namespace
}  // namespace gpuq::connectors
