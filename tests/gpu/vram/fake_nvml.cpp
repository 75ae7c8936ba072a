// A fake libnvidia-ml.so.1 for tests, built three times with a different set of exports:
//   FAKE_NVML_MODERN: every versioned symbol (_v2 init/count/handle/memory, processes _v3 and
//                     _v2) plus the unversioned ones, as a current driver does;
//   FAKE_NVML_V2:     _v2 init/count/handle and processes, v1 memory only;
//   FAKE_NVML_LEGACY: only the unversioned symbols, with the 16-byte v1 process struct.
// What it reports comes from the file named by FAKE_NVML_SCRIPT, read again on every call so a
// test can change memory between queries. One directive per line:
//   init <rc>                          nvmlInit returns rc (e.g. 9 DRIVER_NOT_LOADED)
//   gpu <uuid> <total> <free> <reserved> <name...>   bytes; one line per GPU, in index order
//   proc <gpu> <pid> <bytes|na>        a compute process ("na": NVML_VALUE_NOT_AVAILABLE)
//   understate <n>                     the count=0 probe reports n processes fewer
//   memory_v2 <rc>                     nvmlDeviceGetMemoryInfo_v2 returns rc
//   processes <rc>                     the process calls return rc
//   handle <index> <rc>                GetHandleByIndex returns rc for that index
// Every exported call appends its name to the file named by FAKE_NVML_LOG, if set.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Gpu {
  std::string uuid, name;
  unsigned long long total = 0, free = 0, reserved = 0;
};
struct Proc {
  unsigned int gpu = 0, pid = 0;
  unsigned long long bytes = 0;
};
struct Script {
  int init_rc = 0, memory_v2_rc = 0, processes_rc = 0;
  unsigned int understate = 0;
  std::vector<Gpu> gpus;
  std::vector<Proc> procs;
  std::vector<std::pair<unsigned int, int>> handle_rc;
};

Script Load() {
  Script script;
  const char* path = std::getenv("FAKE_NVML_SCRIPT");
  if (!path) return script;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string kind;
    words >> kind;
    if (kind == "init") {
      words >> script.init_rc;
    } else if (kind == "memory_v2") {
      words >> script.memory_v2_rc;
    } else if (kind == "processes") {
      words >> script.processes_rc;
    } else if (kind == "understate") {
      words >> script.understate;
    } else if (kind == "handle") {
      std::pair<unsigned int, int> entry;
      words >> entry.first >> entry.second;
      script.handle_rc.push_back(entry);
    } else if (kind == "gpu") {
      Gpu gpu;
      words >> gpu.uuid >> gpu.total >> gpu.free >> gpu.reserved >> std::ws;
      std::getline(words, gpu.name);
      script.gpus.push_back(gpu);
    } else if (kind == "proc") {
      Proc proc;
      std::string bytes;
      words >> proc.gpu >> proc.pid >> bytes;
      proc.bytes = bytes == "na" ? ~0ULL : std::stoull(bytes);
      script.procs.push_back(proc);
    }
  }
  return script;
}

void Log(const char* name) {
  const char* path = std::getenv("FAKE_NVML_LOG");
  if (!path) return;
  if (FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s\n", name);
    std::fclose(f);
  }
}

char devices[64];  // a handle is a pointer into this array

bool DeviceIndex(const Script& script, void* device, unsigned int* index) {
  auto* p = static_cast<char*>(device);
  if (p < devices || p >= devices + sizeof devices) return false;
  *index = static_cast<unsigned int>(p - devices);
  return *index < script.gpus.size();
}

int Count(unsigned int* count) {
  if (!count) return 2;
  *count = static_cast<unsigned int>(Load().gpus.size());
  return 0;
}

int Handle(unsigned int index, void** device) {
  Script script = Load();
  for (auto [i, rc] : script.handle_rc) {
    if (i == index) return rc;
  }
  if (index >= script.gpus.size() || !device) return 2;
  *device = &devices[index];
  return 0;
}

struct ProcessInfoV1 {
  unsigned int pid;
  unsigned long long usedGpuMemory;
};
struct ProcessInfo {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId, computeInstanceId;
};
static_assert(sizeof(ProcessInfoV1) == 16 && sizeof(ProcessInfo) == 24);

struct Memory {
  unsigned long long total, free, used;
};
struct MemoryV2 {
  unsigned int version;
  unsigned long long total, reserved, free, used;
};

// Info is the 16-byte v1 or the 24-byte v2/v3 struct: the caller must pass the right one.
template <class Info>
int Processes(void* device, unsigned int* count, Info* infos) {
  Script script = Load();
  unsigned int index = 0;
  if (!DeviceIndex(script, device, &index) || !count) return 2;
  if (script.processes_rc != 0) return script.processes_rc;
  std::vector<Proc> mine;
  for (const auto& proc : script.procs) {
    if (proc.gpu == index) mine.push_back(proc);
  }
  auto real = static_cast<unsigned int>(mine.size());
  if (*count == 0 && !infos) {
    if (real == 0) return 0;
    *count = real > script.understate ? real - script.understate : 1;
    return 7;
  }
  if (*count < real) {
    *count = real;
    return 7;
  }
  for (unsigned int i = 0; i < real; ++i) {
    Info info{};
    info.pid = mine[i].pid;
    info.usedGpuMemory = mine[i].bytes;
    if constexpr (sizeof(Info) == sizeof(ProcessInfo)) {
      info.gpuInstanceId = 0xFFFFFFFF;  // MIG off
      info.computeInstanceId = 0xFFFFFFFF;
    }
    infos[i] = info;
  }
  *count = real;
  return 0;
}

int CopyString(const std::string& text, char* buffer, unsigned int length) {
  if (!buffer || length < text.size() + 1) return 7;
  std::memcpy(buffer, text.c_str(), text.size() + 1);
  return 0;
}

}  // namespace

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

FAKE_EXPORT const char* nvmlErrorString(int rc) {
  switch (rc) {
    case 0:
      return "Success";
    case 2:
      return "Invalid Argument";
    case 3:
      return "Not Supported";
    case 4:
      return "Insufficient Permissions";
    case 7:
      return "Insufficient Size";
    case 9:
      return "Driver Not Loaded";
    case 15:
      return "GPU is lost";
    case 25:
      return "Argument version mismatch";
    default:
      return "Unknown Error";
  }
}

FAKE_EXPORT int nvmlShutdown() {
  Log("nvmlShutdown");
  return 0;
}

FAKE_EXPORT int nvmlDeviceGetName(void* device, char* name, unsigned int length) {
  Log("nvmlDeviceGetName");
  Script script = Load();
  unsigned int index = 0;
  if (!DeviceIndex(script, device, &index)) return 2;
  return CopyString(script.gpus[index].name, name, length);
}

FAKE_EXPORT int nvmlDeviceGetUUID(void* device, char* uuid, unsigned int length) {
  Log("nvmlDeviceGetUUID");
  Script script = Load();
  unsigned int index = 0;
  if (!DeviceIndex(script, device, &index)) return 2;
  return CopyString(script.gpus[index].uuid, uuid, length);
}

FAKE_EXPORT int nvmlInit() {
  Log("nvmlInit");
  return Load().init_rc;
}
FAKE_EXPORT int nvmlDeviceGetCount(unsigned int* count) {
  Log("nvmlDeviceGetCount");
  return Count(count);
}
FAKE_EXPORT int nvmlDeviceGetHandleByIndex(unsigned int index, void** device) {
  Log("nvmlDeviceGetHandleByIndex");
  return Handle(index, device);
}
FAKE_EXPORT int nvmlDeviceGetMemoryInfo(void* device, Memory* memory) {
  Log("nvmlDeviceGetMemoryInfo");
  Script script = Load();
  unsigned int index = 0;
  if (!DeviceIndex(script, device, &index) || !memory) return 2;
  const Gpu& gpu = script.gpus[index];
  *memory = Memory{gpu.total, gpu.free, gpu.total - gpu.free};  // v1: used includes reserved
  return 0;
}
FAKE_EXPORT int nvmlDeviceGetComputeRunningProcesses(void* device, unsigned int* count,
                                                     ProcessInfoV1* infos) {
  Log("nvmlDeviceGetComputeRunningProcesses");
  return Processes(device, count, infos);
}

#if defined(FAKE_NVML_MODERN) || defined(FAKE_NVML_V2)
FAKE_EXPORT int nvmlInit_v2() {
  Log("nvmlInit_v2");
  return Load().init_rc;
}
FAKE_EXPORT int nvmlDeviceGetCount_v2(unsigned int* count) {
  Log("nvmlDeviceGetCount_v2");
  return Count(count);
}
FAKE_EXPORT int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void** device) {
  Log("nvmlDeviceGetHandleByIndex_v2");
  return Handle(index, device);
}
FAKE_EXPORT int nvmlDeviceGetComputeRunningProcesses_v2(void* device, unsigned int* count,
                                                        ProcessInfo* infos) {
  Log("nvmlDeviceGetComputeRunningProcesses_v2");
  return Processes(device, count, infos);
}
#endif

#if defined(FAKE_NVML_MODERN)
FAKE_EXPORT int nvmlDeviceGetMemoryInfo_v2(void* device, MemoryV2* memory) {
  Log("nvmlDeviceGetMemoryInfo_v2");
  Script script = Load();
  unsigned int index = 0;
  if (!DeviceIndex(script, device, &index) || !memory) return 2;
  if (memory->version != (sizeof(MemoryV2) | (2u << 24))) return 25;
  if (script.memory_v2_rc != 0) return script.memory_v2_rc;
  const Gpu& gpu = script.gpus[index];
  memory->total = gpu.total;
  memory->reserved = gpu.reserved;
  memory->free = gpu.free;
  memory->used = gpu.total - gpu.free - gpu.reserved;
  return 0;
}
FAKE_EXPORT int nvmlDeviceGetComputeRunningProcesses_v3(void* device, unsigned int* count,
                                                        ProcessInfo* infos) {
  Log("nvmlDeviceGetComputeRunningProcesses_v3");
  return Processes(device, count, infos);
}
#endif
