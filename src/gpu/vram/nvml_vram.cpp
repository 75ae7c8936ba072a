#include "gpu/vram/nvml_vram.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdint>
#include <vector>

namespace gpuq::gpu {

// The few NVML types we use, declared here so the build needs no nvml.h (protocols.md 7).
namespace nvml {
using Device = struct nvmlDevice_st*;
using Return = int;
struct Memory {  // v1, 24 bytes
  unsigned long long total, free, used;
};
struct MemoryV2 {  // 40 bytes; `version` must be set before the call
  unsigned int version;
  unsigned long long total, reserved, free, used;
};
struct ProcessInfoV1 {  // 16 bytes: what the unversioned GetComputeRunningProcesses takes
  unsigned int pid;
  unsigned long long usedGpuMemory;
};
struct ProcessInfo {  // v2 == v3, 24 bytes
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId, computeInstanceId;
};
static_assert(sizeof(Memory) == 24 && sizeof(MemoryV2) == 40);
static_assert(sizeof(ProcessInfoV1) == 16 && sizeof(ProcessInfo) == 24);

constexpr unsigned int kMemoryV2Version = sizeof(MemoryV2) | (2u << 24);  // 0x02000028
constexpr unsigned long long kValueNotAvailable = ~0ULL;
constexpr unsigned int kBufferSize = 96;  // NVML_DEVICE_{NAME,UUID}_V2_BUFFER_SIZE

constexpr Return kSuccess = 0;
constexpr Return kNotSupported = 3;
constexpr Return kNoPermission = 4;
constexpr Return kInsufficientSize = 7;
constexpr Return kFunctionNotFound = 13;
constexpr Return kArgumentVersionMismatch = 25;
}  // namespace nvml

struct NvmlVram::Api {
  nvml::Return (*init)() = nullptr;
  nvml::Return (*shutdown)() = nullptr;
  const char* (*error_string)(nvml::Return) = nullptr;
  nvml::Return (*get_count)(unsigned int*) = nullptr;
  nvml::Return (*get_handle)(unsigned int, nvml::Device*) = nullptr;
  nvml::Return (*memory_v2)(nvml::Device, nvml::MemoryV2*) = nullptr;
  nvml::Return (*memory_v1)(nvml::Device, nvml::Memory*) = nullptr;
  nvml::Return (*get_name)(nvml::Device, char*, unsigned int) = nullptr;
  nvml::Return (*get_uuid)(nvml::Device, char*, unsigned int) = nullptr;
  // Either of these, never both: they take structs of different sizes.
  nvml::Return (*processes)(nvml::Device, unsigned int*, nvml::ProcessInfo*) = nullptr;
  nvml::Return (*processes_v1)(nvml::Device, unsigned int*, nvml::ProcessInfoV1*) = nullptr;

  std::string Describe(nvml::Return rc) const {
    const char* text = error_string ? error_string(rc) : nullptr;
    return text ? std::string(text) : fmt::format("NVML error {}", rc);
  }
};

namespace {

constexpr unsigned long long kMiB = 1024ull * 1024ull;

int FloorMb(unsigned long long bytes) { return static_cast<int>(bytes / kMiB); }
int CeilMb(unsigned long long bytes) { return static_cast<int>((bytes + kMiB - 1) / kMiB); }

// The first of `names` the library exports, or nullptr.
template <class Fn>
Fn Resolve(void* handle, std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (void* symbol = ::dlsym(handle, name)) return reinterpret_cast<Fn>(symbol);
  }
  return nullptr;
}

// The compute processes on `device` with the count=0 / INSUFFICIENT_SIZE protocol. `Info` is
// the struct the resolved entry point takes. Processes come and go between the two calls, so
// the second call gets slack and the loop repeats while the list still does not fit.
template <class Info>
nvml::Return ListProcesses(nvml::Return (*fn)(nvml::Device, unsigned int*, Info*),
                           nvml::Device device, std::vector<ProcessMemory>& out) {
  unsigned int count = 0;
  nvml::Return rc = fn(device, &count, nullptr);
  if (rc == nvml::kSuccess) return rc;  // no processes
  std::vector<Info> infos;
  for (int attempt = 0; rc == nvml::kInsufficientSize && attempt < 16; ++attempt) {
    infos.assign(static_cast<size_t>(count) + 8, Info{});
    count = static_cast<unsigned int>(infos.size());
    rc = fn(device, &count, infos.data());
  }
  if (rc != nvml::kSuccess) return rc;
  for (unsigned int i = 0; i < count && i < infos.size(); ++i) {
    ProcessMemory process;
    process.pid = static_cast<int>(infos[i].pid);
    if (infos[i].usedGpuMemory != nvml::kValueNotAvailable) {
      process.used_mb = CeilMb(infos[i].usedGpuMemory);
    }
    out.push_back(process);
  }
  return rc;
}

}  // namespace

Result<std::unique_ptr<NvmlVram>> NvmlVram::Open(const std::string& library) {
  // RTLD_LOCAL: NVML's symbols must not satisfy anyone else's lookups (or a fake's, in tests).
  void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = ::dlerror();
    return Error{Errc::kUnavailable, fmt::format("NVML unavailable: {}", why ? why : library)};
  }
  auto api = std::make_unique<Api>();
  api->init = Resolve<decltype(api->init)>(handle, {"nvmlInit_v2", "nvmlInit"});
  api->shutdown = Resolve<decltype(api->shutdown)>(handle, {"nvmlShutdown"});
  api->error_string = Resolve<decltype(api->error_string)>(handle, {"nvmlErrorString"});
  api->get_count =
      Resolve<decltype(api->get_count)>(handle, {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"});
  api->get_handle = Resolve<decltype(api->get_handle)>(
      handle, {"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"});
  api->memory_v2 = Resolve<decltype(api->memory_v2)>(handle, {"nvmlDeviceGetMemoryInfo_v2"});
  api->memory_v1 = Resolve<decltype(api->memory_v1)>(handle, {"nvmlDeviceGetMemoryInfo"});
  api->get_name = Resolve<decltype(api->get_name)>(handle, {"nvmlDeviceGetName"});
  api->get_uuid = Resolve<decltype(api->get_uuid)>(handle, {"nvmlDeviceGetUUID"});
  api->processes = Resolve<decltype(api->processes)>(
      handle,
      {"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"});
  if (!api->processes) {
    api->processes_v1 =
        Resolve<decltype(api->processes_v1)>(handle, {"nvmlDeviceGetComputeRunningProcesses"});
  }

  std::vector<const char*> missing;
  if (!api->init) missing.push_back("nvmlInit");
  if (!api->shutdown) missing.push_back("nvmlShutdown");
  if (!api->get_count) missing.push_back("nvmlDeviceGetCount");
  if (!api->get_handle) missing.push_back("nvmlDeviceGetHandleByIndex");
  if (!api->memory_v2 && !api->memory_v1) missing.push_back("nvmlDeviceGetMemoryInfo");
  if (!api->get_name) missing.push_back("nvmlDeviceGetName");
  if (!api->get_uuid) missing.push_back("nvmlDeviceGetUUID");
  if (!missing.empty()) {
    ::dlclose(handle);
    return Error{Errc::kUnavailable,
                 fmt::format("NVML unavailable: {} lacks {}", library, fmt::join(missing, ", "))};
  }
  nvml::Return rc = api->init();
  if (rc != nvml::kSuccess) {
    Error error{Errc::kUnavailable, "NVML: " + api->Describe(rc)};
    ::dlclose(handle);
    return error;
  }
  return std::unique_ptr<NvmlVram>(new NvmlVram(handle, std::move(api)));
}

NvmlVram::NvmlVram(void* handle, std::unique_ptr<Api> api)
    : handle_(handle), api_(std::move(api)) {}

NvmlVram::~NvmlVram() {
  api_->shutdown();  // init is reference-counted: exactly one shutdown for our one init
  ::dlclose(handle_);
}

Result<std::vector<GpuMemory>> NvmlVram::Query() {
  std::lock_guard lock(mutex_);
  const Api& api = *api_;
  auto fail = [&](unsigned int index, nvml::Return rc) {
    return Error{Errc::kUnavailable, fmt::format("NVML: GPU {}: {}", index, api.Describe(rc))};
  };
  unsigned int count = 0;
  nvml::Return rc = api.get_count(&count);
  if (rc != nvml::kSuccess) return Error{Errc::kUnavailable, "NVML: " + api.Describe(rc)};

  std::vector<GpuMemory> gpus;
  for (unsigned int index = 0; index < count; ++index) {
    nvml::Device device = nullptr;
    rc = api.get_handle(index, &device);
    // GetCount_v2 also counts devices we may not talk to; they are not ours to plan on.
    if (rc == nvml::kNoPermission) continue;
    if (rc != nvml::kSuccess) return fail(index, rc);

    GpuMemory gpu;
    gpu.index = static_cast<int>(index);
    char buffer[nvml::kBufferSize] = {};
    rc = api.get_name(device, buffer, sizeof buffer);
    if (rc != nvml::kSuccess) return fail(index, rc);
    gpu.name = buffer;
    char uuid[nvml::kBufferSize] = {};
    rc = api.get_uuid(device, uuid, sizeof uuid);
    if (rc != nvml::kSuccess) return fail(index, rc);
    gpu.uuid = uuid;

    unsigned long long total = 0, free = 0;
    rc = nvml::kFunctionNotFound;
    if (api.memory_v2) {
      nvml::MemoryV2 memory{};
      memory.version = nvml::kMemoryV2Version;
      rc = api.memory_v2(device, &memory);
      total = memory.total;
      free = memory.free;
    }
    // An old driver may export _v2 yet not know this struct version: v1 then.
    if (api.memory_v1 && (rc == nvml::kFunctionNotFound || rc == nvml::kNotSupported ||
                          rc == nvml::kArgumentVersionMismatch)) {
      nvml::Memory memory{};
      rc = api.memory_v1(device, &memory);
      total = memory.total;
      free = memory.free;
    }
    if (rc != nvml::kSuccess) return fail(index, rc);
    // v2's `used` leaves out what the driver reserves, v1's does not; total - free is the
    // same on both and is what planning needs.
    gpu.total_mb = FloorMb(total);
    gpu.free_mb = FloorMb(free);
    gpu.used_mb = gpu.total_mb - gpu.free_mb;

    // The process list is a bonus: never fail the query over it (containers, permissions).
    if (api.processes) {
      rc = ListProcesses(api.processes, device, gpu.processes);
    } else if (api.processes_v1) {
      rc = ListProcesses(api.processes_v1, device, gpu.processes);
    } else {
      rc = nvml::kFunctionNotFound;
    }
    gpu.processes_known = rc == nvml::kSuccess;
    if (!gpu.processes_known) gpu.processes.clear();
    gpus.push_back(std::move(gpu));
  }
  return gpus;
}

}  // namespace gpuq::gpu
