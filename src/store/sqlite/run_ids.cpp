#include "store/sqlite/run_ids.hpp"

#include <random>

namespace gpuq::store::sqlite {
namespace {

constexpr int kRounds = 10;  // as FF1 (NIST SP 800-38G) does with 2 halves
constexpr uint64_t kHalfMask = (uint64_t{1} << 61) - 1;

uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

struct SipState {
  uint64_t v0, v1, v2, v3;
  void Round() {
    v0 += v1;
    v1 = Rotl(v1, 13);
    v1 ^= v0;
    v0 = Rotl(v0, 32);
    v2 += v3;
    v3 = Rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = Rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = Rotl(v1, 17);
    v1 ^= v2;
    v2 = Rotl(v2, 32);
  }
  void Absorb(uint64_t m) {
    v3 ^= m;
    Round();
    Round();
    v0 ^= m;
  }
};

uint64_t LoadLe(const unsigned char* p, size_t n) {
  uint64_t x = 0;
  for (size_t i = 0; i < n; ++i) x |= uint64_t{p[i]} << (8 * i);
  return x;
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase too: ids are stored lowercase and compared as text
}

}  // namespace

uint64_t SipHash24(uint64_t k0, uint64_t k1, const unsigned char* data, size_t size) {
  SipState s{k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL, k0 ^ 0x6c7967656e657261ULL,
             k1 ^ 0x7465646279746573ULL};
  size_t whole = size - size % 8;
  for (size_t i = 0; i < whole; i += 8) s.Absorb(LoadLe(data + i, 8));
  s.Absorb((uint64_t{size & 0xff} << 56) | LoadLe(data + whole, size % 8));
  s.v2 ^= 0xff;
  for (int i = 0; i < 4; ++i) s.Round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

RunIds::Key RunIds::NewKey() {
  std::random_device rd;  // getrandom(2)
  auto word = [&] { return (uint64_t{rd()} << 32) | rd(); };
  Key key;
  key.k0 = word();
  key.k1 = word();
  return key;
}

uint64_t RunIds::Round(int round, uint64_t half) const {
  unsigned char block[9];
  for (int i = 0; i < 8; ++i) block[i] = static_cast<unsigned char>(half >> (8 * i));
  block[8] = static_cast<unsigned char>(round);
  return SipHash24(key_.k0, key_.k1, block, sizeof block) & kHalfMask;
}

std::string RunIds::IdOf(long long rowid) const {
  uint64_t left = 0;
  uint64_t right = static_cast<uint64_t>(rowid) & kHalfMask;
  for (int i = 0; i < kRounds; ++i) {
    uint64_t next = left ^ Round(i, right);
    left = right;
    right = next;
  }
  // 122 bits around the version nibble (4) and the variant bits (10): 48 + 12 high, 62 low.
  unsigned __int128 bits = (static_cast<unsigned __int128>(left) << 61) | right;
  uint64_t high60 = static_cast<uint64_t>(bits >> 62);
  uint64_t low62 = static_cast<uint64_t>(bits) & ((uint64_t{1} << 62) - 1);
  uint64_t hi = ((high60 >> 12) << 16) | 0x4000 | (high60 & 0xfff);
  uint64_t lo = 0x8000000000000000ULL | low62;
  static constexpr char kHexDigits[] = "0123456789abcdef";
  std::string out(36, '-');
  int pos = 0;
  for (uint64_t word : {hi, lo}) {
    for (int i = 0; i < 16; ++i) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
      out[pos++] = kHexDigits[(word >> (60 - 4 * i)) & 0xf];
    }
  }
  return out;
}

std::optional<long long> RunIds::RowidOf(std::string_view id) const {
  if (id.size() != 36) return std::nullopt;
  uint64_t words[2] = {0, 0};
  int nibble = 0;
  for (size_t i = 0; i < id.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (id[i] != '-') return std::nullopt;
      continue;
    }
    int v = Hex(id[i]);
    if (v < 0) return std::nullopt;
    words[nibble / 16] = (words[nibble / 16] << 4) | static_cast<uint64_t>(v);
    ++nibble;
  }
  uint64_t hi = words[0];
  uint64_t lo = words[1];
  if (((hi >> 12) & 0xf) != 4 || (lo >> 62) != 2) return std::nullopt;
  uint64_t high60 = ((hi >> 16) << 12) | (hi & 0xfff);
  unsigned __int128 bits =
      (static_cast<unsigned __int128>(high60) << 62) | (lo & ((uint64_t{1} << 62) - 1));
  uint64_t left = static_cast<uint64_t>(bits >> 61) & kHalfMask;
  uint64_t right = static_cast<uint64_t>(bits) & kHalfMask;
  for (int i = kRounds - 1; i >= 0; --i) {
    uint64_t prev_right = left;
    left = right ^ Round(i, left);
    right = prev_right;
  }
  if (left != 0 || right == 0) return std::nullopt;
  return static_cast<long long>(right);
}

}  // namespace gpuq::store::sqlite
