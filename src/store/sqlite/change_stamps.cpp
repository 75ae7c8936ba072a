#include "store/sqlite/change_stamps.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace gpuq::store::sqlite {
namespace {

// The first 64 bytes: a magic word and the slot count, so a file of another layout is refused
// instead of being read with the wrong slots.
struct Header {
  uint64_t magic;  // kMagic's bytes
  uint64_t slots;
};
constexpr char kMagic[8] = {'g', 'p', 'u', 'q', 's', 't', 'm', '1'};
constexpr size_t kHeaderBytes = 64;
constexpr size_t kFileBytes = kHeaderBytes + ChangeStamps::kSlots * sizeof(uint64_t);

static_assert(std::atomic_ref<uint64_t>::is_always_lock_free,
              "the counters are shared between processes: they must be lock-free");

}  // namespace

std::unique_ptr<ChangeStamps> ChangeStamps::Open(const std::filesystem::path& database) {
  std::filesystem::path path = database;
  path += "-stamps";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    spdlog::warn("store run cache off: cannot open {}: {}", path.string(), std::strerror(errno));
    return nullptr;
  }
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0;
  // Two processes may create the file at once: growing it is idempotent, and a file of zeros
  // is a valid one (the header is written below by whoever maps it first).
  if (ok && static_cast<size_t>(st.st_size) < kFileBytes) ok = ::ftruncate(fd, kFileBytes) == 0;
  void* map = ok ? ::mmap(nullptr, kFileBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                 : MAP_FAILED;
  int error = errno;
  ::close(fd);
  if (map == MAP_FAILED) {
    spdlog::warn("store run cache off: cannot map {}: {}", path.string(), std::strerror(error));
    return nullptr;
  }
  // The magic word is one 8-byte store, written after the slot count: a process that maps
  // the file meanwhile sees either no magic (and writes the same two values) or all of it.
  auto* header = static_cast<Header*>(map);
  uint64_t magic = 0;
  std::memcpy(&magic, kMagic, sizeof magic);
  std::atomic_ref<uint64_t> stored(header->magic);
  if (stored.load() == 0) {
    std::atomic_ref<uint64_t>(header->slots).store(kSlots);
    stored.store(magic);
  }
  if (stored.load() != magic || std::atomic_ref<uint64_t>(header->slots).load() != kSlots) {
    spdlog::warn("store run cache off: {} has another layout", path.string());
    ::munmap(map, kFileBytes);
    return nullptr;
  }
  return std::unique_ptr<ChangeStamps>(new ChangeStamps(map, kFileBytes));
}

ChangeStamps::~ChangeStamps() { ::munmap(map_, size_); }

uint64_t* ChangeStamps::Slot(int64_t rowid) const {
  auto* slots = reinterpret_cast<uint64_t*>(static_cast<char*>(map_) + kHeaderBytes);
  return &slots[static_cast<uint64_t>(rowid) % kSlots];
}

uint64_t ChangeStamps::Load(int64_t rowid) const {
  return std::atomic_ref<uint64_t>(*Slot(rowid)).load(std::memory_order_acquire);
}

void ChangeStamps::Bump(int64_t rowid) {
  std::atomic_ref<uint64_t>(*Slot(rowid)).fetch_add(1, std::memory_order_release);
}

}  // namespace gpuq::store::sqlite
