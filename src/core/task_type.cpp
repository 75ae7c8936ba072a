#include "core/task_type.hpp"

namespace gpuq {

std::string CanonicalTaskType(std::string_view name) {
  if (name == "comfy") return "comfyui";
  return std::string(name);
}

}  // namespace gpuq
