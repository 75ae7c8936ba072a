#pragma once
// Time as the domain sees it. Logic takes a Clock& so tests can move time by hand.
#include <atomic>
#include <chrono>
#include <string>
#include <optional>

namespace gpuq {

using TimePoint = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>;
using Millis = std::chrono::milliseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;  // wall time, millisecond precision; thread-safe
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override;
};

// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint(std::chrono::milliseconds(1'790'000'000'000)))
      : now_ms_(start.time_since_epoch().count()) {}
  TimePoint Now() const override { return TimePoint(Millis(now_ms_.load())); }
  void Advance(Millis by) { now_ms_ += by.count(); }

 private:
  std::atomic<long long> now_ms_;
};

// "2026-11-23T06:00:00.123Z" (UTC, milliseconds), the wire format of every timestamp.
std::string FormatTime(TimePoint t);
// Parses FormatTime's output back; std::nullopt when it is not that shape.
std::optional<TimePoint> ParseTime(std::string_view text);
// Milliseconds since the Unix epoch, how stores keep time.
inline long long ToMillis(TimePoint t) { return t.time_since_epoch().count(); }
inline TimePoint FromMillis(long long ms) { return TimePoint(Millis(ms)); }

}  // namespace gpuq
