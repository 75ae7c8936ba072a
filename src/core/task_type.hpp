#pragma once
// Task types own the routing: which connector runs a type and what it needs.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpuq {

struct TaskType {
  std::string name;       // "echo", "render"
  std::string connector;  // "echo" | "command" | later "comfyui", ...
  std::string service;    // empty: runs on the host's CPU worker pool
  std::vector<std::string> argv;  // command: argv template with {{placeholders}}
  std::map<std::string, std::string> env;  // command: extra environment (values are templates)
  std::string endpoint = "/";  // http: path POSTed on the service (template)
  int timeout_s = 3600;   // default per-run timeout
  int max_attempts = 3;   // default attempts before `failed`
  int priority = 50;      // default priority when the submit names none
  std::string description;
  // The connector's own keys of [task_types.NAME] (templates_dir, sample_rate, image, ...), as
  // JSON. String values of keys ending in _dir, _path or _file are absolute (relative ones are
  // resolved against the config file's folder). The connector checks them (CheckSettings).
  nlohmann::json settings = nlohmann::json::object();
};

// The notes' aliases: "comfy" means "comfyui". Returns the canonical name.
std::string CanonicalTaskType(std::string_view name);

}  // namespace gpuq
