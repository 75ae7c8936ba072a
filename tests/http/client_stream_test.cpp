// http::Client::StreamBody against a loopback server (tests/http/test_server.hpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "http/client.hpp"
#include "http/test_server.hpp"

namespace gpuq::http {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class StreamBodyTest : public ::testing::Test {
 protected:
  Endpoint endpoint() const { return Endpoint{"127.0.0.1", server_.port()}; }

  testing::TestServer server_;
};

TEST_F(StreamBodyTest, HandsChunkedPiecesOverAsTheyArrive) {
  Client client(endpoint(), 30s);
  std::string seen;
  auto r = client.StreamBody("POST", "/chunks", R"({"a":1})", "application/json",
                             [&](std::string_view data) {
                               seen.append(data);
                               // The server sends the next piece only after we saw this one.
                               if (seen == "alpha") server_.pieces_seen = 1;
                               if (seen == "alphabeta") server_.pieces_seen = 2;
                               return true;
                             });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value().status, 200);
  EXPECT_EQ(r.value().body, "");
  EXPECT_EQ(r.value().headers.at("content-type"), "application/x-ndjson");
  EXPECT_EQ(seen, "alphabetagamma");
  EXPECT_FALSE(server_.gate_timed_out);
}

TEST_F(StreamBodyTest, ContentLengthBodyAndRequestBodyGoThrough) {
  Client client(endpoint(), 30s);
  std::string seen;
  auto r = client.StreamBody("PUT", "/echo", "payload", "text/plain", [&](std::string_view data) {
    seen.append(data);
    return true;
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(seen, "PUT payload");
}

TEST_F(StreamBodyTest, Non2xxBodyIsReadWholeAndOnDataNeverCalled) {
  Client client(endpoint(), 30s);
  bool called = false;
  auto r = client.StreamBody("POST", "/error", "{}", "application/json", [&](std::string_view) {
    called = true;
    return true;
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value().status, 500);
  EXPECT_EQ(r.value().body, R"({"error":"model exploded"})");
  EXPECT_FALSE(called);
}

TEST_F(StreamBodyTest, OnDataFalseStopsEarlyWithoutError) {
  Client client(endpoint(), 30s);
  int calls = 0;
  auto r = client.StreamBody("GET", "/big", {}, {}, [&](std::string_view data) {
    ++calls;
    EXPECT_FALSE(data.empty());
    return false;
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value().status, 200);
  EXPECT_EQ(calls, 1);
}

TEST_F(StreamBodyTest, ChunkedStreamWithoutTerminatingChunkIsCutOff) {
  Client client(endpoint(), 30s);
  std::string seen;
  auto r = client.StreamBody("GET", "/cut-chunked", {}, {}, [&](std::string_view data) {
    seen.append(data);
    return true;
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
  EXPECT_THAT(r.error().message, HasSubstr("reply cut off after 10 bytes"));
  EXPECT_EQ(seen, "helloworld");
}

TEST_F(StreamBodyTest, FewerBytesThanContentLengthIsCutOff) {
  Client client(endpoint(), 30s);
  auto r = client.StreamBody("GET", "/short", {}, {}, [](std::string_view) { return true; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
  EXPECT_THAT(r.error().message, HasSubstr("reply cut off after 10 bytes"));
}

TEST_F(StreamBodyTest, ResetIsCutOff) {
  Client client(endpoint(), 30s);
  auto r = client.StreamBody("GET", "/reset", {}, {}, [&](std::string_view data) {
    server_.pieces_seen = 1;  // lets the server reset the connection
    return true;
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
  EXPECT_THAT(r.error().message, HasSubstr("reply cut off after 3 bytes"));
}

TEST_F(StreamBodyTest, SilenceLongerThanTheTimeoutIsTimeout) {
  Client client(endpoint(), 300ms);
  std::string seen;
  auto r = client.StreamBody("GET", "/stall", {}, {}, [&](std::string_view data) {
    seen.append(data);
    return true;
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kTimeout);
  EXPECT_EQ(seen, "x");
}

// A plain Request waits at most the timeout for each read too (Asio's blocking reads ignore
// SO_RCVTIMEO, so this needs the polled read).
TEST_F(StreamBodyTest, RequestToASilentServerTimesOut) {
  Client client(endpoint(), 300ms);
  auto began = std::chrono::steady_clock::now();

  auto r = client.Get("/silent");

  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kTimeout) << r.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - began, 5s);
}

TEST_F(StreamBodyTest, AbortFromAnotherThreadEndsABlockedReadAtOnce) {
  Client client(endpoint(), 60s);
  std::atomic<bool> started{false};
  std::optional<Result<Response>> result;
  std::chrono::steady_clock::time_point returned;
  std::thread reader([&] {
    result = client.StreamBody("GET", "/stall", {}, {}, [&](std::string_view) {
      started = true;
      return true;
    });
    returned = std::chrono::steady_clock::now();
  });
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return started.load(); }));
  auto aborted_at = std::chrono::steady_clock::now();
  client.Abort();
  reader.join();
  EXPECT_LT(returned - aborted_at, 1s);
  ASSERT_FALSE(*result);
  EXPECT_EQ(result->error().code, Errc::kUnavailable);
  EXPECT_THAT(result->error().message, HasSubstr("aborted"));
}

// Stream (SSE) shares its reading with StreamBody.
TEST_F(StreamBodyTest, StreamSplitsServerSentEvents) {
  Client client(endpoint(), 30s);
  std::vector<std::string> events;
  auto r = client.Stream("/sse", [&](std::string_view event, std::string_view data) {
    events.push_back(fmt::format("{}={}", event, data));
    return true;
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value().status, 200);
  EXPECT_THAT(events, ::testing::ElementsAre("progress={\"a\":1}", "message=x\ny"));
}

TEST_F(StreamBodyTest, RefusedConnectionIsUnavailable) {
  Endpoint closed = endpoint();
  {
    testing::TestServer other;  // a port that was just free: nothing listens once it is gone
    closed.port = other.port();
  }
  Client client(closed, 5s);
  auto r = client.StreamBody("GET", "/chunks", {}, {}, [](std::string_view) { return true; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
}

}  // namespace
}  // namespace gpuq::http
