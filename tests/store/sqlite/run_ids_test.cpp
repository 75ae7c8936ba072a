#include "store/sqlite/run_ids.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <set>

#include "core/ids.hpp"

namespace gpuq::store::sqlite {
namespace {

constexpr RunIds::Key kKey{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};

TEST(SipHash24, MatchesThePapersTestVector) {
  // Appendix A of "SipHash: a fast short-input PRF": key 00..0f, message 00..0e.
  unsigned char message[15];
  for (int i = 0; i < 15; ++i) message[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(SipHash24(kKey.k0, kKey.k1, message, sizeof message), 0xa129ca6149be45e5ULL);
  // The reference implementation's vectors.c, messages of 0 and 8 bytes.
  EXPECT_EQ(SipHash24(kKey.k0, kKey.k1, message, 0), 0x726fdb47dd0e0e31ULL);
  EXPECT_EQ(SipHash24(kKey.k0, kKey.k1, message, 8), 0x93f5f5799a932462ULL);
}

TEST(RunIds, AreCanonicalVersion4UuidsThatDecryptToTheirRowid) {
  RunIds ids(kKey);
  for (long long rowid : {1LL, 2LL, 3LL, 1000LL, 123456789LL, RunIds::kMaxRowid}) {
    std::string id = ids.IdOf(rowid);
    ASSERT_TRUE(IsUuid(id)) << id;
    EXPECT_EQ(id[14], '4') << id;                                          // version
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;  // variant 10
    for (char c : id) EXPECT_FALSE(c >= 'A' && c <= 'F') << id;
    EXPECT_EQ(ids.RowidOf(id), rowid) << id;
  }
}

TEST(RunIds, ConsecutiveRowidsGiveDistinctIdsWithNoVisibleOrder) {
  RunIds ids(kKey);
  constexpr int kCount = 20'000;
  std::set<std::string> seen;
  int ones[128] = {};
  int ascending = 0;
  std::string previous;
  for (long long rowid = 1; rowid <= kCount; ++rowid) {
    std::string id = ids.IdOf(rowid);
    ASSERT_TRUE(seen.insert(id).second) << "repeated id " << id;
    if (id > previous) ++ascending;
    previous = id;
    int bit = 0;
    for (char c : id) {
      if (c == '-') continue;
      int v = c <= '9' ? c - '0' : c - 'a' + 10;
      for (int b = 3; b >= 0; --b) ones[bit++] += (v >> b) & 1;
    }
  }
  // Each of the 122 free bits is set in about half the ids (sd 0.35%), and the text order of
  // consecutive ids is a coin toss: an ordered or counter-like id would fail both by far.
  for (int bit = 0; bit < 128; ++bit) {
    bool fixed = (bit >= 48 && bit < 52) || bit == 64 || bit == 65;
    if (fixed) continue;
    EXPECT_NEAR(ones[bit], kCount / 2, kCount / 20) << "bit " << bit;
  }
  EXPECT_NEAR(ascending, kCount / 2, kCount / 20);
}

TEST(RunIds, TellTheirOwnIdsFromAnyOtherText) {
  RunIds ids(kKey);
  RunIds other(RunIds::Key{1, 2});
  std::string id = ids.IdOf(42);
  EXPECT_EQ(other.RowidOf(id), std::nullopt);
  EXPECT_EQ(ids.RowidOf(other.IdOf(42)), std::nullopt);
  std::string upper = id;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(ids.RowidOf(upper), std::nullopt);
  EXPECT_EQ(ids.RowidOf(id.substr(1)), std::nullopt);
  EXPECT_EQ(ids.RowidOf(id + "0"), std::nullopt);
  EXPECT_EQ(ids.RowidOf("not-a-uuid"), std::nullopt);
  for (int i = 0; i < 2000; ++i) {
    std::string random = NewUuid();
    EXPECT_EQ(ids.RowidOf(random), std::nullopt) << random;
  }
  // Flipping any one hex digit of the 122 bits yields text that is not an id of this key.
  for (size_t i = 0; i < id.size(); ++i) {
    if (id[i] == '-' || i == 14 || i == 19) continue;
    std::string changed = id;
    changed[i] = changed[i] == '0' ? '1' : '0';
    EXPECT_EQ(ids.RowidOf(changed), std::nullopt) << changed;
  }
}

TEST(RunIds, NewKeysDiffer) {
  auto a = RunIds::NewKey();
  auto b = RunIds::NewKey();
  EXPECT_FALSE(a.k0 == b.k0 && a.k1 == b.k1);
  EXPECT_NE(RunIds(a).IdOf(1), RunIds(b).IdOf(1));
}

}  // namespace
}  // namespace gpuq::store::sqlite
