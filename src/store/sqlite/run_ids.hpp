#pragma once
// Run ids of the SQLite store. Each is an RFC 9562 version-4 UUID whose 122 random bits are
// the run's rowid encrypted under a secret key kept in the file: a Feistel network with
// SipHash-2-4 rounds, i.e. a block cipher in counter mode, the textbook pseudorandom
// generator. So ids look and behave like any UUIDv4 (unguessable, no time or order visible
// without the key) and are unique by construction, while a lookup by id decrypts it to the
// rowid and a new run needs no insert at a random place of an id index: that random page was
// most of what a submit wrote.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace gpuq::store::sqlite {

// SipHash-2-4 (Aumasson and Bernstein) of `size` bytes under the key (k0, k1).
uint64_t SipHash24(uint64_t k0, uint64_t k1, const unsigned char* data, size_t size);

class RunIds {
 public:
  struct Key {
    uint64_t k0 = 0;
    uint64_t k1 = 0;
  };
  // A new key from the OS's random source.
  static Key NewKey();
  // Rowids are below 2^61: the other 61 of the 122 bits are zero before encryption, which is
  // how RowidOf tells its own ids from any other text (a guess passes with odds 2^-61).
  static constexpr long long kMaxRowid = (1LL << 61) - 1;

  explicit RunIds(Key key) : key_(key) {}

  // The id of the run at `rowid` (1..kMaxRowid), canonical lowercase 8-4-4-4-12.
  std::string IdOf(long long rowid) const;
  // The rowid `id` was made from; nullopt for any other text: a random id of a file from
  // before schema 5, an id of another file, uppercase, a guess.
  std::optional<long long> RowidOf(std::string_view id) const;

 private:
  uint64_t Round(int round, uint64_t half) const;
  Key key_;
};

}  // namespace gpuq::store::sqlite
