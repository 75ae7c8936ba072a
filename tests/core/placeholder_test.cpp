#include "core/placeholder.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gpuq {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

json Values() {
  return json{{"text", "hello"},
              {"n", 42},
              {"f", 0.5},
              {"flag", true},
              {"nothing", nullptr},
              {"list", {1, 2, 3}},
              {"obj", {{"a", 1}}},
              {"parent", {{"outputs", {{"image", "out.png"}, {"paths", {"a", "b"}}}}}},
              {"dotted.key", "whole"}};
}

struct FillCase {
  std::string name;
  std::string text;
  json want;
};

class FillStringTest : public ::testing::TestWithParam<FillCase> {};

TEST_P(FillStringTest, FillsAsDesignSays) {
  auto got = FillString(GetParam().text, Values());

  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got.value(), GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(
    Placeholder, FillStringTest,
    ::testing::Values(FillCase{"PlainText", "no placeholders", json("no placeholders")},
                      FillCase{"Empty", "", json("")},
                      FillCase{"WholeString", "{{text}}", json("hello")},
                      FillCase{"WholeInt", "{{n}}", json(42)},
                      FillCase{"WholeDouble", "{{f}}", json(0.5)},
                      FillCase{"WholeBool", "{{flag}}", json(true)},
                      FillCase{"WholeNull", "{{nothing}}", json(nullptr)},
                      FillCase{"WholeArray", "{{list}}", json({1, 2, 3})},
                      FillCase{"WholeObject", "{{obj}}", json({{"a", 1}})},
                      FillCase{"SpacesInside", "{{ n }}", json(42)},
                      FillCase{"InsideText", "say {{text}}!", json("say hello!")},
                      FillCase{"IntInsideText", "n={{n}}", json("n=42")},
                      FillCase{"ObjectInsideText", "o={{obj}}", json("o={\"a\":1}")},
                      FillCase{"TwoPlaceholders", "{{text}}{{n}}", json("hello42")},
                      FillCase{"DottedPath", "{{parent.outputs.image}}", json("out.png")},
                      FillCase{"ArrayIndex", "{{parent.outputs.paths.1}}", json("b")},
                      FillCase{"DottedTopLevelKey", "{{dotted.key}}", json("whole")},
                      FillCase{"EscapedOpen", "{{{{text}}", json("{{text}}")},
                      FillCase{"EscapedClose", "a}}}}b", json("a}}b")},
                      FillCase{"EscapedBoth", "{{{{text}}}}", json("{{text}}")},
                      FillCase{"EscapeNextToPlaceholder", "{{{{{{n}}", json("{{42")},
                      FillCase{"SingleBracesLiteral", "{a} {b}", json("{a} {b}")},
                      FillCase{"LoneCloseLiteral", "a}}b", json("a}}b")}),
    [](const auto& info) { return info.param.name; });

struct ErrorCase {
  std::string name;
  std::string text;
  std::string mentions;
};

class FillStringErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(FillStringErrorTest, IsInvalidArgumentNamingTheProblem) {
  auto got = FillString(GetParam().text, Values());

  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(got.error().message, HasSubstr(GetParam().mentions));
}

INSTANTIATE_TEST_SUITE_P(Placeholder, FillStringErrorTest,
                         ::testing::Values(ErrorCase{"UnknownName", "{{missing}}", "missing"},
                                           ErrorCase{"UnknownInText", "a {{who}} b", "who"},
                                           ErrorCase{"MissingPathStep", "{{parent.outputs.video}}",
                                                     "parent.outputs.video"},
                                           ErrorCase{"IndexOutOfRange", "{{list.3}}", "list.3"},
                                           ErrorCase{"PathThroughScalar", "{{n.x}}", "n.x"},
                                           ErrorCase{"Unterminated", "abc {{text", "unterminated"},
                                           ErrorCase{"EmptyName", "{{}}", "invalid placeholder"},
                                           ErrorCase{"BadPath", "{{a..b}}", "invalid placeholder"}),
                         [](const auto& info) { return info.param.name; });

TEST(Placeholder, NamesListsEveryPlaceholderInOrder) {
  auto names = PlaceholderNames("{{a}} {{{{x}}}} {{b.c}} {{a}}");

  ASSERT_TRUE(names);
  EXPECT_THAT(names.value(), ElementsAre("a", "b.c", "a"));
}

TEST(Placeholder, NamesRejectsUnterminated) {
  auto names = PlaceholderNames("{{a");

  ASSERT_FALSE(names);
  EXPECT_EQ(names.error().code, Errc::kInvalidArgument);
}

TEST(Placeholder, FillTextRendersNonStringsAsJson) {
  EXPECT_EQ(FillText("{{n}}", Values()).value(), "42");
  EXPECT_EQ(FillText("{{text}}", Values()).value(), "hello");
  EXPECT_EQ(FillText("{{list}}", Values()).value(), "[1,2,3]");
  EXPECT_EQ(FillText("x{{flag}}", Values()).value(), "xtrue");
}

TEST(Placeholder, FillTextFailsOnMissingName) {
  auto got = FillText("{{nope}}", Values());

  ASSERT_FALSE(got);
  EXPECT_THAT(got.error().message, HasSubstr("nope"));
}

TEST(Placeholder, FillTemplateFillsValuesNotKeys) {
  json tmpl = {{"{{text}}", "{{n}}"},
               {"nested", {{"list", {"{{text}}", "x{{n}}", 7}}, {"flag", "{{flag}}"}}},
               {"keep", 1.5}};

  auto got = FillTemplate(tmpl, Values());

  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(got.value(), (json{{"{{text}}", 42},
                               {"nested", {{"list", {"hello", "x42", 7}}, {"flag", true}}},
                               {"keep", 1.5}}));
}

TEST(Placeholder, FillTemplateFailsOnAnyMissingName) {
  json tmpl = {{"a", {{"b", {"ok", "{{gone}}"}}}}};

  auto got = FillTemplate(tmpl, Values());

  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, Errc::kInvalidArgument);
  EXPECT_THAT(got.error().message, HasSubstr("gone"));
}

TEST(Placeholder, LookupWalksObjectsAndArrays) {
  json values = Values();

  EXPECT_EQ(*LookupPlaceholder(values, "parent.outputs.paths.0"), json("a"));
  EXPECT_EQ(LookupPlaceholder(values, "parent.nope"), nullptr);
  EXPECT_EQ(LookupPlaceholder(values, "list.x"), nullptr);
  EXPECT_EQ(LookupPlaceholder(values, ""), nullptr);
  EXPECT_EQ(LookupPlaceholder(json(5), "a"), nullptr);
}

}  // namespace
}  // namespace gpuq
