#pragma once
// A small blocking WebSocket client (RFC 6455 over plain TCP) for connectors that follow a
// server's event stream (ComfyUI's /ws). Beast stays in websocket.cpp. One thread reads and
// sends; Abort() may come from any thread (a std::stop_callback).
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "http/client.hpp"

namespace gpuq::http {

struct WsMessage {
  bool binary = false;
  std::string data;  // a whole message (fragments joined); binary frames of several MB are fine
};

class WebSocket {
 public:
  // Connects and completes the upgrade handshake for `target` ("/ws?clientId=abc") within
  // `timeout`. kUnavailable when the server cannot be reached or refuses the upgrade (the
  // message names the HTTP status it answered), kTimeout past the deadline.
  static Result<std::unique_ptr<WebSocket>> Connect(const Endpoint& endpoint,
                                                    std::string_view target,
                                                    std::chrono::milliseconds timeout);
  ~WebSocket();
  WebSocket(const WebSocket&) = delete;
  WebSocket& operator=(const WebSocket&) = delete;

  // The next message, waiting at most `timeout`: kTimeout when none came in time (the socket
  // stays usable: call again), kUnavailable when the server closed the socket or it broke
  // ("closed by server: <reason>", "connection reset"), or after Abort().
  Result<WsMessage> Read(std::chrono::milliseconds timeout);

  // Sends one text message. kUnavailable when the socket is gone.
  Result<void> Send(std::string_view text);

  // Thread-safe: a blocked Read or Send returns kUnavailable "aborted" at once; so does every
  // later call.
  void Abort();

 private:
  WebSocket();
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace gpuq::http
