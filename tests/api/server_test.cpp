// The API over real sockets: every route, every error, auth, limits, logs, SSE and files.
#include "api/server.hpp"

#include <atomic>
#include <fstream>
#include <mutex>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/api_fixture.hpp"
#include "api/held_store.hpp"
#include "api/sse_reader.hpp"
#include "core/ids.hpp"
#include "support/wait.hpp"

namespace gpuq::api {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::RawExchange;
using testing::ServerOptions;
using testing::TestServer;
using gpuq::testing::WaitUntil;

Json Body(const http::Response& response) { return Json::parse(response.body); }

// Asserts an error response: status, the short code, and a detail for people.
void ExpectError(const Result<http::Response>& response, int status, std::string_view code) {
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response.value().status, status) << response.value().body;
  EXPECT_EQ(response.value().headers.at("content-type"), "application/json");
  Json body = Json::parse(response.value().body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << response.value().body;
  EXPECT_EQ(body["error"], code) << response.value().body;
  EXPECT_TRUE(body["detail"].is_string() && !body["detail"].get<std::string>().empty());
}

class ApiServer : public ::testing::Test {
 protected:
  TestServer server_;
  http::Client client_ = server_.Client();

  std::string Submit(const Json& body) {
    auto response = client_.Post("/submit_task", body.dump());
    EXPECT_TRUE(response);
    EXPECT_EQ(response.value().status, 200) << response.value().body;
    return Body(response.value())["task_id"].get<std::string>();
  }

  // Claims the oldest pending run as a worker would; returns its fencing token.
  store::Lease Claim() {
    auto leases = server_.store().Claim(
        store::ClaimRequest{.worker = "test/cpu0", .types = {"echo", "comfyui"}});
    EXPECT_TRUE(leases && leases.value().size() == 1);
    return leases.value().at(0);
  }

  Json Status(const std::string& id) {
    auto response = client_.Get("/task_status/" + id);
    EXPECT_TRUE(response);
    EXPECT_EQ(response.value().status, 200) << response.value().body;
    return Body(response.value());
  }

  void WriteFile(const std::filesystem::path& path, std::string_view text, bool append = false) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, append ? std::ios::app : std::ios::trunc);
    out << text;
  }
};

// ---- submit -------------------------------------------------------------------------------

TEST_F(ApiServer, SubmitQueuesARunAndStatusShowsIt) {
  auto response = client_.Post("/submit_task",
                               R"({"task_type": "echo", "priority": 7, "payload": {"x": 1}})");

  ASSERT_TRUE(response);
  EXPECT_EQ(response.value().status, 200);
  EXPECT_EQ(response.value().headers.at("content-type"), "application/json");
  Json body = Body(response.value());
  EXPECT_EQ(body["status"], "queued");
  std::string id = body["task_id"];
  EXPECT_TRUE(IsUuid(id));
  Json run = Status(id);
  EXPECT_EQ(run["task_id"], id);
  EXPECT_EQ(run["id"], id);
  EXPECT_EQ(run["status"], "pending");
  EXPECT_EQ(run["type"], "echo");
  EXPECT_EQ(run["priority"], 7);
  EXPECT_EQ(run["payload"], Json::parse(R"({"x": 1})"));
  EXPECT_TRUE(run.contains("result"));
}

// Status documents are cached between polls; every change shows at once, whoever made it.
TEST_F(ApiServer, RepeatedStatusReadsSeeEveryChange) {
  std::string id = Submit({{"task_type", "echo"}, {"payload", {{"x", 1}}}});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Status(id)["status"], "pending");
  auto response = client_.Get("/runs/" + id);
  ASSERT_TRUE(response);
  EXPECT_EQ(Body(response.value())["status"], "pending");

  // The server's own store: claim and progress.
  auto leases = server_.store().Claim(store::ClaimRequest{"host/cpu0", {"echo"}, Millis(10'000), 1});
  ASSERT_TRUE(leases);
  ASSERT_EQ(leases.value().size(), 1u);
  EXPECT_EQ(Status(id)["status"], "processing");
  ASSERT_TRUE(server_.store().ReportProgress(id, leases.value()[0].token, Progress{0.25, "a"}));
  EXPECT_EQ(Status(id)["progress"]["fraction"], 0.25);
  EXPECT_EQ(Status(id)["progress"]["fraction"], 0.25);

  // Another store on the same file, as a separate `gpuq agent` process would be.
  ManualClock clock;
  auto other = store::SqliteStore::Open(server_.data_dir() / "gpuq.db", clock);
  ASSERT_TRUE(other);
  ASSERT_TRUE(other.value()->Complete(id, leases.value()[0].token, Json{{"y", 2}}, {}));
  Json done = Status(id);
  EXPECT_EQ(done["status"], "completed");
  EXPECT_EQ(done["result"], Json({{"y", 2}}));
  response = client_.Get("/runs/" + id);
  ASSERT_TRUE(response);
  EXPECT_EQ(Body(response.value())["status"], "completed");
}

TEST_F(ApiServer, SubmitTakesDefaultsFromTheTaskType) {
  std::string id = Submit({{"task_type", "comfyui"}});

  Json run = Status(id);

  EXPECT_EQ(run["priority"], 60);
  EXPECT_EQ(run["payload"], Json::object());
  EXPECT_EQ(run["timeout_s"], 600);
  EXPECT_EQ(run["max_attempts"], 2);
}

TEST_F(ApiServer, AliasSubmitMapsComfyToComfyui) {
  auto response = client_.Post("/task/submit", R"({"type": "comfy", "params": {"seed": 3}})");

  ASSERT_TRUE(response);
  ASSERT_EQ(response.value().status, 200) << response.value().body;
  EXPECT_EQ(Body(response.value())["status"], "queued");
  Json run = Status(Body(response.value())["task_id"]);
  EXPECT_EQ(run["type"], "comfyui");
  EXPECT_EQ(run["payload"], Json::parse(R"({"seed": 3})"));
}

TEST_F(ApiServer, MalformedJsonIs400AndQueuesNothing) {
  for (std::string body : {"{", "", "not json", R"({"task_type": "echo",})"}) {
    ExpectError(client_.Post("/submit_task", body), 400, "malformed_json");
    ExpectError(client_.Post("/task/submit", body), 400, "malformed_json");
  }

  EXPECT_EQ(server_.RunCount(), 0u);
}

TEST_F(ApiServer, EachInvalidFieldIs422AndQueuesNothing) {
  for (std::string body : {
           R"([1])",
           R"({"priority": 5})",
           R"({"task_type": 3})",
           R"({"task_type": "nope"})",
           R"({"task_type": "echo", "priority": "high"})",
           R"({"task_type": "echo", "priority": 2.5})",
           R"({"task_type": "echo", "payload": [1, 2]})",
           R"({"task_type": "echo", "payload": "text"})",
           R"({"task_type": "echo", "timeout_s": -1})",
           R"({"task_type": "echo", "max_attempts": 0})",
           R"({"task_type": "echo", "payload": {"bad": true}})",
           R"({"task_type": "echo", "parent_run_id": "not-a-uuid"})",
           R"({"task_type": "echo", "parent_run_id": "0b9a4b8e-4a52-4c39-9f5e-2f0f3c0a1b2c"})",
       }) {
    SCOPED_TRACE(body);
    ExpectError(client_.Post("/submit_task", body), 422, "invalid_argument");
  }
  ExpectError(client_.Post("/task/submit", R"({"type": "nope"})"), 422, "invalid_argument");
  ExpectError(client_.Post("/task/submit", R"({"type": "echo", "params": 1})"), 422,
              "invalid_argument");

  EXPECT_EQ(server_.RunCount(), 0u);
}

TEST_F(ApiServer, UnknownTaskTypeNamesTheKnownOnes) {
  auto response = client_.Post("/submit_task", R"({"task_type": "nope"})");

  ASSERT_TRUE(response);
  EXPECT_EQ(response.value().status, 422);
  EXPECT_THAT(Body(response.value())["detail"].get<std::string>(), HasSubstr("comfyui, echo"));
}

TEST_F(ApiServer, IdempotencyKeyInTheBodyReturnsTheFirstId) {
  Json body = {{"task_type", "echo"}, {"idempotency_key", "job-1"}};

  std::string first = Submit(body);
  auto again = client_.Post("/submit_task", body.dump());

  ASSERT_TRUE(again);
  EXPECT_EQ(again.value().status, 200);
  EXPECT_EQ(Body(again.value())["status"], "queued");
  EXPECT_EQ(Body(again.value())["task_id"], first);
  EXPECT_EQ(server_.RunCount(), 1u);
}

TEST_F(ApiServer, IdempotencyKeyHeaderReturnsTheFirstId) {
  std::map<std::string, std::string> headers = {{"Idempotency-Key", "job-2"}};

  auto first = client_.Request("POST", "/submit_task", R"({"task_type": "echo"})",
                               "application/json", headers);
  auto again = client_.Request("POST", "/task/submit", R"({"type": "echo"})", "application/json",
                               headers);

  ASSERT_TRUE(first && again);
  EXPECT_EQ(first.value().status, 200);
  EXPECT_EQ(again.value().status, 200);
  EXPECT_EQ(Body(first.value())["task_id"], Body(again.value())["task_id"]);
  EXPECT_EQ(server_.RunCount(), 1u);
}

TEST_F(ApiServer, ChildRunsAreListedUnderTheirParent) {
  std::string parent = Submit({{"task_type", "echo"}});
  std::string a = Submit({{"task_type", "echo"}, {"parent_run_id", parent}});
  server_.clock().Advance(Millis(1));
  std::string b = Submit({{"task_type", "echo"}, {"parent_run_id", parent}});
  Submit({{"task_type", "echo"}});

  auto response = client_.Get("/runs/" + parent + "/children");

  ASSERT_TRUE(response);
  ASSERT_EQ(response.value().status, 200) << response.value().body;
  Json runs = Body(response.value())["runs"];
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0]["id"], b);  // newest first
  EXPECT_EQ(runs[1]["id"], a);
  EXPECT_EQ(runs[0]["parent_run_id"], parent);
  ExpectError(client_.Get("/runs/" + NewUuid() + "/children"), 404, "not_found");
}

// ---- reading runs -------------------------------------------------------------------------

TEST_F(ApiServer, UnknownOrMalformedIdIs404) {
  for (const std::string& target : std::vector<std::string>{
           "/task_status/" + NewUuid(), "/task_status/nope", "/runs/" + NewUuid(),
           "/runs/x';drop%20table%20runs;--", "/runs/%00/children", "/runs/" + NewUuid() + "/logs",
           "/runs/abc/files/x.txt"}) {
    SCOPED_TRACE(target);
    ExpectError(client_.Get(target), 404, "not_found");
  }
  ExpectError(client_.Post("/runs/" + NewUuid() + "/cancel"), 404, "not_found");
  ExpectError(client_.Post("/runs/nope/retry"), 404, "not_found");
}

TEST_F(ApiServer, UnknownRouteIs404) {
  ExpectError(client_.Get("/nope"), 404, "not_found");
  ExpectError(client_.Get("/runs/" + NewUuid() + "/nope"), 404, "not_found");
  ExpectError(client_.Post("/submit_task/x"), 404, "not_found");
}

TEST_F(ApiServer, WrongMethodIs405WithAllow) {
  auto get_submit = client_.Get("/submit_task");
  auto post_run = client_.Post("/runs/" + NewUuid());
  auto delete_runs = client_.Request("DELETE", "/runs");

  ExpectError(get_submit, 405, "method_not_allowed");
  EXPECT_EQ(get_submit.value().headers.at("allow"), "POST");
  ExpectError(post_run, 405, "method_not_allowed");
  EXPECT_EQ(post_run.value().headers.at("allow"), "GET");
  ExpectError(delete_runs, 405, "method_not_allowed");
  EXPECT_EQ(delete_runs.value().headers.at("allow"), "GET");
}

TEST_F(ApiServer, ListPagesNewestFirst) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(Submit({{"task_type", "echo"}}));
    server_.clock().Advance(Millis(1));
  }

  std::vector<std::string> seen;
  std::string target = "/runs?limit=2";
  for (int page = 0; page < 5; ++page) {
    auto response = client_.Get(target);
    ASSERT_TRUE(response);
    ASSERT_EQ(response.value().status, 200) << response.value().body;
    Json body = Body(response.value());
    EXPECT_LE(body["runs"].size(), 2u);
    for (const Json& run : body["runs"]) seen.push_back(run["id"]);
    if (body["next_before"].is_null()) break;
    target = "/runs?limit=2&before=" + body["next_before"].get<std::string>();
  }

  EXPECT_THAT(seen, ElementsAre(ids[4], ids[3], ids[2], ids[1], ids[0]));
}

TEST_F(ApiServer, ListFiltersByStatusAndType) {
  std::string echo = Submit({{"task_type", "echo"}});
  std::string comfy = Submit({{"task_type", "comfyui"}});
  ASSERT_TRUE(client_.Post("/runs/" + echo + "/cancel"));

  auto cancelled = client_.Get("/runs?status=cancelled");
  auto comfy_runs = client_.Get("/runs?type=comfy");  // the alias works here too

  ASSERT_TRUE(cancelled && comfy_runs);
  ASSERT_EQ(Body(cancelled.value())["runs"].size(), 1u);
  EXPECT_EQ(Body(cancelled.value())["runs"][0]["id"], echo);
  ASSERT_EQ(Body(comfy_runs.value())["runs"].size(), 1u);
  EXPECT_EQ(Body(comfy_runs.value())["runs"][0]["id"], comfy);
  EXPECT_TRUE(Body(comfy_runs.value())["next_before"].is_null());
}

TEST_F(ApiServer, ListRejectsBadStatusAndLimit) {
  for (std::string target : {"/runs?status=running", "/runs?limit=0", "/runs?limit=1001",
                             "/runs?limit=ten", "/runs?limit=", "/runs?parent=nope"}) {
    SCOPED_TRACE(target);
    ExpectError(client_.Get(target), 422, "invalid_argument");
  }
}

// ---- transitions ------------------------------------------------------------------------

TEST_F(ApiServer, CancelAPendingRunThenRetryIt) {
  std::string id = Submit({{"task_type", "echo"}});

  auto cancelled = client_.Post("/runs/" + id + "/cancel");
  auto again = client_.Post("/runs/" + id + "/cancel");
  auto retried = client_.Post("/runs/" + id + "/retry");

  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled.value().status, 200);
  EXPECT_EQ(Body(cancelled.value())["status"], "cancelled");
  ExpectError(again, 409, "conflict");
  ASSERT_TRUE(retried);
  EXPECT_EQ(retried.value().status, 200) << retried.value().body;
  EXPECT_EQ(Body(retried.value())["status"], "pending");
}

TEST_F(ApiServer, CancelOrRetryOfACompletedRunIs409) {
  std::string id = Submit({{"task_type", "echo"}});
  store::Lease lease = Claim();
  ASSERT_TRUE(server_.store().Complete(id, lease.token, Json{{"ok", true}}, {}));

  ExpectError(client_.Post("/runs/" + id + "/cancel"), 409, "conflict");
  ExpectError(client_.Post("/runs/" + id + "/retry"), 409, "conflict");
  ExpectError(client_.Post("/runs/" + Submit({{"task_type", "echo"}}) + "/retry"), 409,
              "conflict");

  Json run = Status(id);
  EXPECT_EQ(run["status"], "completed");
  EXPECT_EQ(run["result"], Json::parse(R"({"ok": true})"));
}

TEST_F(ApiServer, CancelAProcessingRunRequestsIt) {
  std::string id = Submit({{"task_type", "echo"}});
  Claim();

  auto response = client_.Post("/runs/" + id + "/cancel");

  ASSERT_TRUE(response);
  EXPECT_EQ(response.value().status, 200);
  EXPECT_EQ(Body(response.value())["cancel_requested"], true);
}

// ---- task types, health, openapi ------------------------------------------------------

TEST_F(ApiServer, TaskTypesListsTheConfiguredTypes) {
  auto response = client_.Get("/task_types");

  ASSERT_TRUE(response);
  ASSERT_EQ(response.value().status, 200);
  Json types = Body(response.value())["task_types"];
  ASSERT_EQ(types.size(), 2u);
  EXPECT_EQ(types[0]["name"], "comfyui");
  EXPECT_EQ(types[0]["connector"], "echo");
  EXPECT_EQ(types[0]["service"], "comfyui");
  EXPECT_EQ(types[0]["description"], "images");
  EXPECT_EQ(types[1]["name"], "echo");
  EXPECT_TRUE(types[1]["service"].is_null());
}

TEST_F(ApiServer, HealthSaysHealthyWithTheStore) {
  auto response = client_.Get("/health");

  ASSERT_TRUE(response);
  ASSERT_EQ(response.value().status, 200);
  Json body = Body(response.value());
  EXPECT_EQ(body["status"], "healthy");
  EXPECT_EQ(body["version"], "0.1.0");
  EXPECT_THAT(body["store"].get<std::string>(), StartsWith("sqlite://"));
  EXPECT_EQ(body["store_ok"], true);
  // No GPU services configured: nothing to be unhealthy about.
  EXPECT_EQ(body["gpu"], Json::parse(R"({"ok": true, "free_mb": 0})"));
}

TEST_F(ApiServer, OpenApiListsEveryRoute) {
  auto response = client_.Get("/openapi.json");

  ASSERT_TRUE(response);
  ASSERT_EQ(response.value().status, 200);
  Json doc = Body(response.value());
  EXPECT_THAT(doc["openapi"].get<std::string>(), StartsWith("3."));
  for (const char* path :
       {"/submit_task", "/task/submit", "/task_status/{id}", "/runs", "/runs/{id}",
        "/runs/{id}/children", "/runs/{id}/cancel", "/runs/{id}/retry", "/runs/{id}/logs",
        "/runs/{id}/files/{path}", "/task_types", "/health", "/openapi.json"}) {
    EXPECT_TRUE(doc["paths"].contains(path)) << path;
  }
}

// ---- body limit ---------------------------------------------------------------------------

TEST_F(ApiServer, OversizedContentLengthIs413FromTheHeader) {
  // Only the header is sent: the answer must come without the body being read.
  std::string reply = RawExchange(server_.port(),
                                  "POST /submit_task HTTP/1.1\r\nHost: t\r\n"
                                  "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n");

  EXPECT_THAT(reply, StartsWith("HTTP/1.1 413"));
  EXPECT_THAT(reply, HasSubstr("\"error\":\"too_large\""));
  EXPECT_THAT(reply, HasSubstr("Connection: close"));
  EXPECT_EQ(server_.RunCount(), 0u);
}

TEST_F(ApiServer, OversizedBodyIsAnsweredNotDropped) {
  std::string body = R"({"task_type": "echo", "payload": {"pad": ")" + std::string(8000, 'x') +
                     "\"}}";

  auto response = client_.Post("/submit_task", body);

  ExpectError(response, 413, "too_large");
  EXPECT_EQ(server_.RunCount(), 0u);
  // The server still serves new connections.
  EXPECT_EQ(server_.Client().Get("/health").value().status, 200);
}

TEST_F(ApiServer, OversizedChunkedBodyIs413) {
  std::string chunk(3000, 'x');
  std::string request =
      "POST /submit_task HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) request += fmt::format("{:x}\r\n{}\r\n", chunk.size(), chunk);
  request += "0\r\n\r\n";

  std::string reply = RawExchange(server_.port(), request);

  EXPECT_THAT(reply, StartsWith("HTTP/1.1 413"));
  EXPECT_EQ(server_.RunCount(), 0u);
}

TEST_F(ApiServer, GarbageRequestIs400) {
  std::string reply = RawExchange(server_.port(), "NOT HTTP AT ALL\r\n\r\n");

  EXPECT_THAT(reply, StartsWith("HTTP/1.1 400"));
}

TEST_F(ApiServer, KeepAliveServesManyRequestsOnOneConnection) {
  std::string id = Submit({{"task_type", "echo"}});
  std::string one = "GET /task_status/" + id + " HTTP/1.1\r\nHost: t\r\n\r\n";

  std::string reply =
      RawExchange(server_.port(), one + one + "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");

  size_t count = 0;
  for (size_t pos = 0; (pos = reply.find("HTTP/1.1 200", pos)) != std::string::npos; ++pos) ++count;
  EXPECT_EQ(count, 3u);
}

TEST(ApiServerThreads, ManyConnectionsAreServedAtOnceAndStopEndsThemAll) {
  TestServer server(ServerOptions{.threads = 4});
  constexpr int kConnections = 12;
  std::vector<std::unique_ptr<http::Client>> clients;
  for (int i = 0; i < kConnections; ++i) {
    clients.push_back(std::make_unique<http::Client>(http::Endpoint{"127.0.0.1", server.port()}));
  }
  std::atomic<int> ok{0};

  std::vector<std::thread> threads;
  for (auto& client : clients) {
    threads.emplace_back([&ok, &client = *client] {
      for (int i = 0; i < 5; ++i) {
        auto submitted = client.Post("/submit_task", R"({"task_type": "echo"})");
        if (!submitted || submitted.value().status != 200) return;
        std::string id = Body(submitted.value())["task_id"];
        auto status = client.Get("/task_status/" + id);
        if (!status || status.value().status != 200) return;
      }
      ok.fetch_add(1);
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(ok.load(), kConnections);
  EXPECT_EQ(server.RunCount(), static_cast<size_t>(kConnections * 5));
  server.Stop();  // would hang if a worker kept one of the idle keep-alive connections open
}

// ---- logs and SSE ---------------------------------------------------------------------

TEST_F(ApiServer, LogsReturnTheLatestAttemptAsText) {
  std::string id = Submit({{"task_type", "echo"}});
  ExpectError(client_.Get("/runs/" + id + "/logs"), 404, "not_found");  // not started yet
  Claim();
  WriteFile(server_.RunDir(id) / "logs" / "attempt-1.log", "line one\nline two\n");

  auto latest = client_.Get("/runs/" + id + "/logs");
  auto first = client_.Get("/runs/" + id + "/logs?attempt=1");

  ASSERT_TRUE(latest && first);
  EXPECT_EQ(latest.value().status, 200);
  EXPECT_EQ(latest.value().body, "line one\nline two\n");
  EXPECT_THAT(latest.value().headers.at("content-type"), StartsWith("text/plain"));
  EXPECT_EQ(first.value().body, "line one\nline two\n");
  ExpectError(client_.Get("/runs/" + id + "/logs?attempt=2"), 404, "not_found");
  ExpectError(client_.Get("/runs/" + id + "/logs?attempt=x"), 422, "invalid_argument");
  ExpectError(client_.Get("/runs/" + id + "/logs?attempt=0"), 422, "invalid_argument");
}

// Collects a followed log's events on a thread of its own.
class Follower {
 public:
  Follower(int port, std::string target) {
    thread_ = std::thread([this, port, target] {
      auto result = testing::ReadEventStream(
          port, target, [this](std::string_view event, std::string_view data) {
            std::lock_guard lock(mutex_);
            events_.emplace_back(std::string(event), std::string(data));
            return true;
          });
      std::lock_guard lock(mutex_);
      status_ = result.status;
      done_ = true;
    });
  }
  ~Follower() {
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::pair<std::string, std::string>> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  bool done() {
    std::lock_guard lock(mutex_);
    return done_;
  }
  int status() {
    std::lock_guard lock(mutex_);
    return status_;
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<std::string, std::string>> events_;
  bool done_ = false;
  int status_ = 0;
  std::thread thread_;
};

TEST_F(ApiServer, FollowStreamsNewLinesAndEndsWhenTheRunFinishes) {
  std::string id = Submit({{"task_type", "echo"}});
  store::Lease lease = Claim();
  auto log = server_.RunDir(id) / "logs" / "attempt-1.log";
  WriteFile(log, "first\n");

  Follower follower(server_.port(), "/runs/" + id + "/logs?follow=1");
  ASSERT_TRUE(WaitUntil([&] { return follower.events().size() == 1; }));
  WriteFile(log, "second\nthird", /*append=*/true);
  ASSERT_TRUE(WaitUntil([&] { return follower.events().size() == 2; }));
  WriteFile(log, " part\n", /*append=*/true);
  ASSERT_TRUE(WaitUntil([&] { return follower.events().size() == 3; }));
  WriteFile(log, "last\n", /*append=*/true);
  ASSERT_TRUE(server_.store().Complete(id, lease.token, Json::object(), {}));
  ASSERT_TRUE(WaitUntil([&] { return follower.done(); }));

  using Event = std::pair<std::string, std::string>;
  EXPECT_EQ(follower.status(), 200);
  EXPECT_THAT(follower.events(),
              ElementsAre(Event{"message", "first"}, Event{"message", "second"},
                          Event{"message", "third part"}, Event{"message", "last"},
                          Event{"end", "completed"}));
}

TEST_F(ApiServer, FollowOfAFinishedRunSendsTheLogAndEnds) {
  std::string id = Submit({{"task_type", "echo"}});
  store::Lease lease = Claim();
  WriteFile(server_.RunDir(id) / "logs" / "attempt-1.log", "a\nb\n");
  ASSERT_TRUE(server_.store().Fail(id, lease.token, "boom", /*retryable=*/false));

  Follower follower(server_.port(), "/runs/" + id + "/logs?follow=1");
  ASSERT_TRUE(WaitUntil([&] { return follower.done(); }));

  using Event = std::pair<std::string, std::string>;
  EXPECT_THAT(follower.events(), ElementsAre(Event{"message", "a"}, Event{"message", "b"},
                                             Event{"end", "failed"}));
}

TEST_F(ApiServer, FollowEndsWhenTheServerStops) {
  std::string id = Submit({{"task_type", "echo"}});
  Claim();
  WriteFile(server_.RunDir(id) / "logs" / "attempt-1.log", "started\n");
  Follower follower(server_.port(), "/runs/" + id + "/logs?follow=1");
  ASSERT_TRUE(WaitUntil([&] { return follower.events().size() == 1; }));

  server_.Stop();  // returns only once Run has returned

  EXPECT_TRUE(WaitUntil([&] { return follower.done(); }));
}

TEST_F(ApiServer, FollowOfAnUnknownRunIs404) {
  Follower follower(server_.port(), "/runs/" + NewUuid() + "/logs?follow=1");
  ASSERT_TRUE(WaitUntil([&] { return follower.done(); }));

  EXPECT_EQ(follower.status(), 404);
}

// ---- files --------------------------------------------------------------------------------

TEST_F(ApiServer, FilesServesRunOutputsWithTheirType) {
  std::string id = Submit({{"task_type", "echo"}});
  WriteFile(server_.RunDir(id) / "out.txt", "hello");
  WriteFile(server_.RunDir(id) / "sub" / "a b.json", R"({"a": 1})");

  auto text = client_.Get("/runs/" + id + "/files/out.txt");
  auto nested = client_.Get("/runs/" + id + "/files/sub/a%20b.json");

  ASSERT_TRUE(text && nested);
  EXPECT_EQ(text.value().status, 200);
  EXPECT_EQ(text.value().body, "hello");
  EXPECT_THAT(text.value().headers.at("content-type"), StartsWith("text/plain"));
  EXPECT_EQ(nested.value().status, 200);
  EXPECT_EQ(nested.value().body, R"({"a": 1})");
  EXPECT_EQ(nested.value().headers.at("content-type"), "application/json");
  ExpectError(client_.Get("/runs/" + id + "/files/missing.png"), 404, "not_found");
  ExpectError(client_.Get("/runs/" + id + "/files/sub"), 404, "not_found");
}

TEST_F(ApiServer, FilesStreamsALargeFile) {
  std::string id = Submit({{"task_type", "echo"}});
  std::string big(5 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  WriteFile(server_.RunDir(id) / "big.bin", big);

  auto response = client_.Get("/runs/" + id + "/files/big.bin");

  ASSERT_TRUE(response);
  EXPECT_EQ(response.value().status, 200);
  EXPECT_EQ(response.value().headers.at("content-type"), "application/octet-stream");
  EXPECT_TRUE(response.value().body == big);
}

TEST_F(ApiServer, FilesRefusesPathsThatLeaveTheRunDir) {
  std::string id = Submit({{"task_type", "echo"}});
  WriteFile(server_.data_dir() / "secret.txt", "secret");
  WriteFile(server_.RunDir(id) / "ok.txt", "ok");
  std::filesystem::create_symlink(server_.data_dir() / "secret.txt", server_.RunDir(id) / "link");
  std::filesystem::create_directory_symlink(server_.data_dir(), server_.RunDir(id) / "up");

  for (const std::string& path : std::vector<std::string>{"../../secret.txt", "..%2F..%2Fsecret.txt", "sub/../../x",
                           "%2Fetc%2Fpasswd", "/etc/passwd", "link", "up/secret.txt",
                           "../" + id + "/ok.txt/../../../secret.txt"}) {
    SCOPED_TRACE(path);
    ExpectError(client_.Get("/runs/" + id + "/files/" + path), 422, "path_outside_run_dir");
  }
  EXPECT_EQ(client_.Get("/runs/" + id + "/files/sub/../ok.txt").value().body, "ok");
}

// ---- auth ---------------------------------------------------------------------------------

class ApiServerWithToken : public ::testing::Test {
 protected:
  TestServer server_{ServerOptions{.token = "s3cret"}};
  http::Client client_ = server_.Client();
};

TEST_F(ApiServerWithToken, RefusesMissingOrWrongTokenAndChangesNothing) {
  ExpectError(client_.Get("/runs"), 401, "unauthenticated");
  ExpectError(client_.Post("/submit_task", R"({"task_type": "echo"})"), 401, "unauthenticated");
  ExpectError(client_.Request("POST", "/submit_task", R"({"task_type": "echo"})",
                              "application/json", {{"Authorization", "Bearer wrong"}}),
              401, "unauthenticated");
  ExpectError(client_.Request("GET", "/runs", {}, {}, {{"Cookie", "gpuq_token=wrong"}}), 401,
              "unauthenticated");
  ExpectError(client_.Get("/nope"), 401, "unauthenticated");

  EXPECT_EQ(server_.RunCount(), 0u);
}

TEST_F(ApiServerWithToken, AcceptsBearerAndCookie) {
  auto bearer = client_.Request("POST", "/submit_task", R"({"task_type": "echo"})",
                                "application/json", {{"Authorization", "Bearer s3cret"}});
  auto cookie = client_.Request("GET", "/runs", {}, {}, {{"Cookie", "a=b; gpuq_token=s3cret"}});

  ASSERT_TRUE(bearer && cookie);
  EXPECT_EQ(bearer.value().status, 200) << bearer.value().body;
  EXPECT_EQ(cookie.value().status, 200) << cookie.value().body;
  EXPECT_EQ(Body(cookie.value())["runs"].size(), 1u);
}

TEST_F(ApiServerWithToken, HealthStaysOpen) {
  auto response = client_.Get("/health");

  ASSERT_TRUE(response);
  EXPECT_EQ(response.value().status, 200);
  EXPECT_EQ(Body(response.value())["status"], "healthy");
}

// ---- listen ---------------------------------------------------------------------------------

class ListenTest : public ::testing::Test {
 protected:
  gpuq::testing::TempDir dir_;
  ManualClock clock_;
  config::Config config_;
  connectors::ConnectorRegistry connectors_ = testing::TestConnectors();
  std::unique_ptr<store::SqliteStore> store_ =
      store::SqliteStore::Open(dir_.path() / "gpuq.db", clock_).value();
};

TEST_F(ListenTest, RefusesAPublicAddressWithoutAToken) {
  Server server({*store_, config_, connectors_});

  for (std::string host : {"0.0.0.0", "192.0.2.1", "::", "example.com"}) {
    auto port = server.Listen(host, 0);
    ASSERT_FALSE(port) << host;
    EXPECT_EQ(port.error().code, Errc::kInvalidArgument);
    EXPECT_EQ(port.error().message, "refusing to listen on " + host +
                                        " without a token: set --token or GPUQ_TOKEN");
  }
}

TEST_F(ListenTest, LoopbackNeedsNoToken) {
  Server server({*store_, config_, connectors_});

  auto port = server.Listen("localhost", 0);

  ASSERT_TRUE(port) << port.error().message;
  EXPECT_GT(port.value(), 0);
}

TEST_F(ListenTest, AnyAddressWithAToken) {
  config_.server.token = "t";
  Server server({*store_, config_, connectors_});

  auto port = server.Listen("0.0.0.0", 0);

  ASSERT_TRUE(port) << port.error().message;
  EXPECT_GT(port.value(), 0);
}

TEST_F(ListenTest, StopBeforeRunMakesRunReturn) {
  Server server({*store_, config_, connectors_});
  ASSERT_TRUE(server.Listen("127.0.0.1", 0));

  server.Stop();
  server.Run(2);  // returns at once
}

TEST_F(ListenTest, StopWithASubmitInFlightWaitsForTheStoreAndKeepsTheRun) {
  config_.task_types = testing::TestTaskTypes();
  testing::HeldSubmitStore held(*store_);
  auto server = std::make_unique<Server>(ServerDeps{held, config_, connectors_});
  int port = server->Listen("127.0.0.1", 0).value();
  std::atomic<bool> run_returned{false};
  std::thread runner([&] {
    server->Run(2);
    run_returned = true;
  });
  std::thread submitter([port] {
    http::Client client(http::Endpoint{"127.0.0.1", port});
    (void)client.Post("/submit_task", R"({"task_type": "echo"})");  // cut off by Stop
  });
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return held.held() == 1; }));

  server->Stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(run_returned);  // the submit still counts as work
  held.ReleaseSubmits();  // calls back on another thread, as a store's writer does
  runner.join();
  submitter.join();
  server.reset();

  store::RunFilter all;
  auto page = store_->List(all);
  ASSERT_TRUE(page);
  EXPECT_EQ(page.value().runs.size(), 1u);
}

TEST_F(ListenTest, StopEndsIdleKeepAliveConnections) {
  Server server({*store_, config_, connectors_});
  int port = server.Listen("127.0.0.1", 0).value();
  std::thread runner([&] { server.Run(2); });
  http::Client client(http::Endpoint{"127.0.0.1", port});
  ASSERT_EQ(client.Get("/health").value().status, 200);  // leaves the connection open

  server.Stop();
  runner.join();  // would hang on the idle connection if Stop did not close it
}

}  // namespace
}  // namespace gpuq::api
