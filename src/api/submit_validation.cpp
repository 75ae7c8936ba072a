#include "api/submit_validation.hpp"

#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/ids.hpp"

namespace gpuq::api {
namespace {

constexpr size_t kMaxIdempotencyKey = 256;

Error Invalid(std::string message) { return Error{Errc::kInvalidArgument, std::move(message)}; }

Result<Json> ParseObject(std::string_view body) {
  Json json = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return Error{Errc::kMalformed, "the request body is not valid JSON"};
  }
  if (!json.is_object()) return Invalid("the request body must be a JSON object");
  return json;
}

const char* TypeName(const Json& value) { return value.type_name(); }

// An integer field within [min, max]; nullopt when absent (or null).
Result<std::optional<int>> OptionalInt(const Json& body, const char* field, long long min,
                                       long long max) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::optional<int>();
  if (!it->is_number_integer()) {
    return Invalid(fmt::format("{} must be an integer, not {}", field, TypeName(*it)));
  }
  long long value = it->is_number_unsigned()
                        ? static_cast<long long>(std::min<unsigned long long>(
                              it->get<unsigned long long>(),
                              static_cast<unsigned long long>(std::numeric_limits<long long>::max())))
                        : it->get<long long>();
  if (value < min || value > max) {
    return Invalid(fmt::format("{} must be between {} and {}, not {}", field, min, max, value));
  }
  return std::optional<int>(static_cast<int>(value));
}

Result<std::optional<std::string>> OptionalString(const Json& body, const char* field) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) {
    return Invalid(fmt::format("{} must be a string, not {}", field, TypeName(*it)));
  }
  return std::optional<std::string>(it->get<std::string>());
}

std::string KnownTypes(const std::map<std::string, TaskType>& types) {
  std::string names;
  for (const auto& [name, type] : types) {
    if (!names.empty()) names += ", ";
    names += name;
  }
  return names.empty() ? std::string("none") : names;
}

// The part both routes share once the fields are extracted.
struct Fields {
  std::string type_field;  // field name, for messages
  std::optional<std::string> type;
  Json payload;  // object
  std::optional<int> priority, timeout_s, max_attempts;
  std::optional<std::string> idempotency_key, parent_run_id;
};

Result<store::NewRun> Build(Fields fields, std::string_view idempotency_header,
                            const SubmitRules& rules) {
  if (!fields.type || fields.type->empty()) {
    return Invalid(fmt::format("{} is required; known task types: {}", fields.type_field,
                               KnownTypes(rules.task_types)));
  }
  std::string canonical = CanonicalTaskType(*fields.type);
  auto type_it = rules.task_types.find(canonical);
  if (type_it == rules.task_types.end()) {
    return Invalid(fmt::format("unknown task type \"{}\"; known task types: {}", *fields.type,
                               KnownTypes(rules.task_types)));
  }
  const TaskType& type = type_it->second;

  std::optional<std::string> key = std::move(fields.idempotency_key);
  if (!idempotency_header.empty()) {
    if (key && *key != idempotency_header) {
      return Invalid("idempotency_key and the Idempotency-Key header differ");
    }
    if (!key) key = std::string(idempotency_header);
  }
  if (key && (key->empty() || key->size() > kMaxIdempotencyKey)) {
    return Invalid(fmt::format("idempotency_key must be 1 to {} characters", kMaxIdempotencyKey));
  }
  if (fields.parent_run_id && !IsUuid(*fields.parent_run_id)) {
    return Invalid("parent_run_id must be a run id (a UUID)");
  }

  const connectors::Connector* connector = rules.connectors.Find(type.connector);
  if (connector == nullptr) {
    return Invalid(fmt::format("task type \"{}\" names connector \"{}\", which this build lacks",
                               type.name, type.connector));
  }
  if (auto valid = connector->Validate(type, fields.payload); !valid) {
    return Invalid(fmt::format("invalid payload for task type \"{}\": {}", type.name,
                               valid.error().message));
  }

  store::NewRun run;
  run.type = std::move(canonical);
  run.priority = fields.priority.value_or(type.priority);
  run.payload = std::move(fields.payload);
  run.max_attempts = fields.max_attempts.value_or(type.max_attempts);
  run.timeout_s = fields.timeout_s.value_or(type.timeout_s);
  run.idempotency_key = std::move(key);
  run.parent_run_id = std::move(fields.parent_run_id);
  return run;
}

Result<Json> PayloadField(const Json& body, const char* field) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Json::object();
  if (!it->is_object()) {
    return Invalid(fmt::format("{} must be a JSON object, not {}", field, TypeName(*it)));
  }
  return *it;
}

constexpr long long kMaxPriority = 1'000'000;

}  // namespace

Result<store::NewRun> ParseSubmitTask(std::string_view body, std::string_view idempotency_header,
                                      const SubmitRules& rules) {
  BOOST_OUTCOME_TRY(Json json, ParseObject(body));
  Fields fields;
  fields.type_field = "task_type";
  BOOST_OUTCOME_TRY(fields.type, OptionalString(json, "task_type"));
  BOOST_OUTCOME_TRY(fields.payload, PayloadField(json, "payload"));
  BOOST_OUTCOME_TRY(fields.priority, OptionalInt(json, "priority", -kMaxPriority, kMaxPriority));
  BOOST_OUTCOME_TRY(fields.timeout_s, OptionalInt(json, "timeout_s", 1, 30LL * 24 * 3600));
  BOOST_OUTCOME_TRY(fields.max_attempts, OptionalInt(json, "max_attempts", 1, 100));
  BOOST_OUTCOME_TRY(fields.idempotency_key, OptionalString(json, "idempotency_key"));
  BOOST_OUTCOME_TRY(fields.parent_run_id, OptionalString(json, "parent_run_id"));
  return Build(std::move(fields), idempotency_header, rules);
}

Result<store::NewRun> ParseTaskSubmit(std::string_view body, std::string_view idempotency_header,
                                      const SubmitRules& rules) {
  BOOST_OUTCOME_TRY(Json json, ParseObject(body));
  Fields fields;
  fields.type_field = "type";
  BOOST_OUTCOME_TRY(fields.type, OptionalString(json, "type"));
  BOOST_OUTCOME_TRY(fields.payload, PayloadField(json, "params"));
  BOOST_OUTCOME_TRY(fields.priority, OptionalInt(json, "priority", -kMaxPriority, kMaxPriority));
  return Build(std::move(fields), idempotency_header, rules);
}

}  // namespace gpuq::api
