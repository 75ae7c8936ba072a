// http::WebSocket against a loopback Beast server (tests/http/test_server.hpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "http/test_server.hpp"
#include "http/websocket.hpp"

namespace gpuq::http {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class WebSocketTest : public ::testing::Test {
 protected:
  Endpoint endpoint() const { return Endpoint{"127.0.0.1", server_.port()}; }

  std::unique_ptr<WebSocket> Open(std::string_view target) {
    auto ws = WebSocket::Connect(endpoint(), target, 10s);
    EXPECT_TRUE(ws) << ws.error().message;
    return ws ? std::move(ws.value()) : nullptr;
  }

  testing::TestServer server_;
};

TEST_F(WebSocketTest, ReadsTextLargeBinaryAndFragmentedMessagesThenTheClose) {
  auto ws = Open("/ws/messages?clientId=abc");
  ASSERT_TRUE(ws);
  auto text = ws->Read(10s);
  ASSERT_TRUE(text) << text.error().message;
  EXPECT_FALSE(text.value().binary);
  EXPECT_EQ(text.value().data, "hello");

  auto binary = ws->Read(10s);
  ASSERT_TRUE(binary) << binary.error().message;
  EXPECT_TRUE(binary.value().binary);
  ASSERT_EQ(binary.value().data.size(), testing::kBigBinary);
  bool same = true;
  for (size_t i = 0; i < testing::kBigBinary && same; ++i) {
    same = binary.value().data[i] == static_cast<char>(i * 7);
  }
  EXPECT_TRUE(same);

  auto fragmented = ws->Read(10s);
  ASSERT_TRUE(fragmented) << fragmented.error().message;
  EXPECT_FALSE(fragmented.value().binary);
  EXPECT_EQ(fragmented.value().data, "fragmented");

  ASSERT_TRUE(ws->Send("ping me"));
  auto echo = ws->Read(10s);
  ASSERT_TRUE(echo) << echo.error().message;
  EXPECT_EQ(echo.value().data, "echo:ping me");

  auto closed = ws->Read(10s);
  ASSERT_FALSE(closed);
  EXPECT_EQ(closed.error().code, Errc::kUnavailable);
  EXPECT_THAT(closed.error().message, HasSubstr("closed by server: bye now"));
  // Every later call says the same.
  auto again = ws->Read(1s);
  ASSERT_FALSE(again);
  EXPECT_THAT(again.error().message, HasSubstr("closed by server"));
  EXPECT_FALSE(ws->Send("anyone?"));
}

TEST_F(WebSocketTest, TimeoutKeepsThePartialMessageAndTheSocketUsable) {
  auto ws = Open("/ws/half");
  ASSERT_TRUE(ws);
  // Half a frame arrived: no whole message yet.
  auto early = ws->Read(300ms);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, Errc::kTimeout);
  ASSERT_TRUE(ws->Send("go"));  // the server sends the rest of the frame, then "got:go"
  auto whole = ws->Read(10s);
  ASSERT_TRUE(whole) << whole.error().message;
  EXPECT_EQ(whole.value().data, "helloworld");
  auto reply = ws->Read(10s);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply.value().data, "got:go");
}

TEST_F(WebSocketTest, AMessageThatCompletesDuringSendIsTheNextRead) {
  auto ws = Open("/ws/half");
  ASSERT_TRUE(ws);
  ASSERT_FALSE(ws->Read(200ms));
  ASSERT_TRUE(ws->Send("go"));
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return server_.half_done.load(); }));
  // Both messages are here now: this Send likely completes the outstanding read on its way.
  ASSERT_TRUE(ws->Send("more"));
  auto whole = ws->Read(10s);
  ASSERT_TRUE(whole) << whole.error().message;
  EXPECT_EQ(whole.value().data, "helloworld");
  auto reply = ws->Read(10s);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply.value().data, "got:go");
}

TEST_F(WebSocketTest, RepeatedTimeoutsKeepTheSocketUsable) {
  auto ws = Open("/ws/stall");
  ASSERT_TRUE(ws);
  for (int i = 0; i < 2; ++i) {
    auto r = ws->Read(100ms);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kTimeout);
  }
  ASSERT_TRUE(ws->Send("still there"));
}

TEST_F(WebSocketTest, AbortFromAnotherThreadEndsABlockedReadAtOnce) {
  auto ws = Open("/ws/stall");
  ASSERT_TRUE(ws);
  std::atomic<bool> reading{false};
  std::optional<Result<WsMessage>> result;
  std::chrono::steady_clock::time_point returned;
  std::thread reader([&] {
    reading = true;
    result = ws->Read(60s);
    returned = std::chrono::steady_clock::now();
  });
  ASSERT_TRUE(gpuq::testing::WaitUntil([&] { return reading.load(); }));
  std::this_thread::sleep_for(100ms);  // let Read block (Abort before it must work as well)
  auto aborted_at = std::chrono::steady_clock::now();
  ws->Abort();
  reader.join();
  EXPECT_LT(returned - aborted_at, 1s);
  ASSERT_FALSE(*result);
  EXPECT_EQ(result->error().code, Errc::kUnavailable);
  EXPECT_THAT(result->error().message, HasSubstr("aborted"));
  auto later = ws->Read(1s);
  ASSERT_FALSE(later);
  EXPECT_THAT(later.error().message, HasSubstr("aborted"));
  auto send = ws->Send("x");
  ASSERT_FALSE(send);
  EXPECT_THAT(send.error().message, HasSubstr("aborted"));
}

TEST_F(WebSocketTest, ConnectionDroppedWithoutCloseIsUnavailable) {
  auto ws = Open("/ws/drop");
  ASSERT_TRUE(ws);
  auto last = ws->Read(10s);
  ASSERT_TRUE(last) << last.error().message;
  EXPECT_EQ(last.value().data, "last");
  auto gone = ws->Read(10s);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::kUnavailable);
}

TEST_F(WebSocketTest, RefusedUpgradeNamesTheStatus) {
  auto ws = WebSocket::Connect(endpoint(), "/not-a-socket", 10s);
  ASSERT_FALSE(ws);
  EXPECT_EQ(ws.error().code, Errc::kUnavailable);
  EXPECT_THAT(ws.error().message, HasSubstr("404"));
}

TEST_F(WebSocketTest, HandshakeWithoutAnswerTimesOut) {
  auto start = std::chrono::steady_clock::now();
  auto ws = WebSocket::Connect(endpoint(), "/ws/stall-handshake", 300ms);
  ASSERT_FALSE(ws);
  EXPECT_EQ(ws.error().code, Errc::kTimeout);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(WebSocketTest, RefusedConnectionIsUnavailable) {
  Endpoint closed = endpoint();
  {
    testing::TestServer other;  // a port that was just free: nothing listens once it is gone
    closed.port = other.port();
  }
  auto ws = WebSocket::Connect(closed, "/ws", 5s);
  ASSERT_FALSE(ws);
  EXPECT_EQ(ws.error().code, Errc::kUnavailable);
}

}  // namespace
}  // namespace gpuq::http
