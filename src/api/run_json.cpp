#include "api/run_json.hpp"

#include <fmt/format.h>

namespace gpuq::api {
namespace {

void AppendString(std::string_view text, std::string& out) {
  // Non-ASCII goes through nlohmann, which checks UTF-8 (and replaces bad bytes); the common
  // ASCII case is escaped here.
  for (unsigned char c : text) {
    if (c >= 0x80) {
      out += Json(std::string(text)).dump(-1, ' ', false, Json::error_handler_t::replace);
      return;
    }
  }
  out.push_back('"');
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<int>(c));
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

void AppendOptional(const std::optional<std::string>& text, std::string& out) {
  if (text) {
    AppendString(*text, out);
  } else {
    out += "null";
  }
}

void AppendTime(const std::optional<TimePoint>& t, std::string& out) {
  if (t) {
    out.push_back('"');
    out += FormatTime(*t);
    out.push_back('"');
  } else {
    out += "null";
  }
}

void AppendJson(const Json& value, std::string& out) {
  out += value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void AppendStrings(const std::vector<std::string>& items, std::string& out) {
  out.push_back('[');
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendString(items[i], out);
  }
  out.push_back(']');
}

void AppendInt(long long value, std::string& out) { fmt::format_to(std::back_inserter(out), "{}", value); }

}  // namespace

void AppendRunJson(const Run& run, std::string& out) {
  // Keys in ToJson's (alphabetical) order, so both spell the same document the same way.
  out += "{\"attempts\":";
  AppendInt(run.attempts, out);
  out += ",\"cancel_requested\":";
  out += run.cancel_requested ? "true" : "false";
  out += ",\"created_at\":";
  AppendTime(run.created_at, out);
  out += ",\"depends_on\":";
  AppendStrings(run.depends_on, out);
  out += ",\"error\":";
  AppendOptional(run.error, out);
  out += ",\"files\":";
  AppendStrings(run.files, out);
  out += ",\"finished_at\":";
  AppendTime(run.finished_at, out);
  out += ",\"gpu\":";
  AppendOptional(run.gpu, out);
  out += ",\"id\":";
  AppendString(run.id, out);
  out += ",\"log_path\":";
  if (run.attempts > 0) {
    AppendString(LogPath(run), out);
  } else {
    out += "null";
  }
  out += ",\"max_attempts\":";
  AppendInt(run.max_attempts, out);
  out += ",\"parent_run_id\":";
  AppendOptional(run.parent_run_id, out);
  out += ",\"payload\":";
  AppendJson(run.payload, out);
  out += ",\"priority\":";
  AppendInt(run.priority, out);
  out += ",\"progress\":{\"fraction\":";
  if (run.progress.fraction) {
    AppendJson(Json(*run.progress.fraction), out);
  } else {
    out += "null";
  }
  out += ",\"message\":";
  AppendString(run.progress.message, out);
  out += "},\"result\":";
  AppendJson(run.result, out);
  out += ",\"started_at\":";
  AppendTime(run.started_at, out);
  out += ",\"status\":\"";
  out += ToString(run.state);
  out += "\",\"task_id\":";
  AppendString(run.id, out);
  out += ",\"timeout_s\":";
  AppendInt(run.timeout_s, out);
  out += ",\"type\":";
  AppendString(run.type, out);
  out += ",\"waiting_reason\":";
  AppendOptional(run.waiting_reason, out);
  out += ",\"worker\":";
  AppendOptional(run.worker, out);
  out.push_back('}');
}

}  // namespace gpuq::api
