#pragma once
// Reads a text/event-stream as it arrives (each event as soon as its blank line is in).
// Beast stays in sse_reader.cpp.
#include <functional>
#include <string>
#include <string_view>

namespace gpuq::api::testing {

struct StreamResult {
  int status = 0;     // the response status; -1 when the connection failed
  std::string body;   // for a non-200 answer
};

// GETs `target` from 127.0.0.1:port and calls on_event(event, data) per event ("message" when
// unnamed; data lines joined by \n) until the stream ends or on_event returns false. Each read
// gives up after 60 s of silence.
StreamResult ReadEventStream(int port, const std::string& target,
                             const std::function<bool(std::string_view event,
                                                      std::string_view data)>& on_event);

}  // namespace gpuq::api::testing
